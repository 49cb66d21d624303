#pragma once

// A ControlLoop on the controller unit tests' fakes (tests/unit/controller_fakes.h) for the
// controller benchmarks (controller_loop.cc, scheduler.cc): one thread, no sockets.

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include "config/schema.h"
#include "controller/control_loop.h"
#include "controller_fakes.h"

namespace serve::bench {

/// The loop with its fakes and a private session directory (removed on destruction). The head
/// node offers `head_resources_json` ("": every demand fits on it).
class FakeController {
 public:
  FakeController(const std::string& name, controller::Random& random,
                 const std::string& head_resources_json = "")
      : session(std::filesystem::temp_directory_path() /
                ("serve-bench-" + name + "-" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(session);
    controller::ControllerOptions co;
    co.session_dir = session.string();
    co.node_id = "node1";
    co.http_port = 0;
    co.head_resources_json = head_resources_json;
    loop = std::make_unique<controller::ControlLoop>(co, clock, random, agent, replicas, kv);
    loop->set_address("127.0.0.1:1");
    loop->Recover();
    loop->Step();
  }
  ~FakeController() {
    loop.reset();
    std::error_code ec;
    std::filesystem::remove_all(session, ec);
  }

  /// Deploys the config `doc` (declaratively), steps, and answers every build it started with
  /// the graph of `code` (ingress `ingress`). The step that applies the graph is the caller's.
  bool DeployAndAnswerBuilds(const nlohmann::json& doc, const std::vector<nlohmann::json>& code,
                             const std::string& ingress) {
    auto cfg = config::ParseServeDeployConfig(doc);
    if (!cfg.ok()) {
      std::fprintf(stderr, "config: %s\n", std::string(cfg.status().message()).c_str());
      return false;
    }
    size_t before = agent.started.size();
    if (auto st = loop->Deploy(*cfg, "declarative", ""); !st.ok()) {
      std::fprintf(stderr, "deploy: %s\n", std::string(st.message()).c_str());
      return false;
    }
    loop->Step();
    std::string graph = controller::testing::Graph(code, ingress);
    for (size_t i = before; i < agent.started.size(); ++i) {
      const auto& req = agent.started[i];
      if (req.tag().rfind("build:", 0) != 0) continue;
      v1::BuildResult result;
      for (int k = 0; k + 1 < req.args_size(); ++k) {
        if (req.args(k) == "--build-id") result.set_build_id(req.args(k + 1));
      }
      result.set_ok(true);
      result.set_graph_msgpack(graph);
      loop->OnBuildResult(result);
    }
    return true;
  }

  /// Reports every STARTING replica as started, with addresses made from its pid (the head
  /// agent's pid for it, else a made-up one).
  void ReportStarted() {
    std::vector<std::string> starting;
    for (auto& [id, d] : loop->deployments().deployments()) {
      for (auto& [rid, r] : d.replicas) {
        if (r.state == controller::ReplicaState::kStarting) starting.push_back(rid);
      }
    }
    for (const std::string& rid : starting) {
      auto it = agent.pid_by_tag.find("replica:" + rid);
      int pid = it != agent.pid_by_tag.end() ? it->second : ++made_up_pid_;
      v1::ReplicaStarted msg;
      msg.set_replica_id(rid);
      msg.set_ok(true);
      msg.set_pid(pid);
      msg.set_data_address("127.0.0.1:" + std::to_string(20000 + pid % 20000));
      msg.set_control_address("127.0.0.1:" + std::to_string(40000 + pid % 20000));
      loop->OnReplicaStarted(msg);
    }
  }

  std::filesystem::path session;
  controller::testing::FakeClock clock;
  controller::testing::FakeAgent agent;
  controller::testing::FakeReplicaClient replicas;
  controller::testing::MemoryKvStore kv;
  std::unique_ptr<controller::ControlLoop> loop;

 private:
  int made_up_pid_ = 100000;
};

/// Logs to a null sink at info level: messages are formatted, nothing is written.
inline void QuietLogging() {
  auto logger = spdlog::null_logger_mt("bench");
  logger->set_level(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace serve::bench
