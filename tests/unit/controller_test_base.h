#pragma once

// A ControlLoop wired to fakes, with helpers to deploy, build and bring replicas up.

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "config/schema.h"
#include "controller/control_loop.h"
#include "controller_fakes.h"

namespace serve::controller::testing {

class ControllerTest : public ::testing::Test {
 protected:
  using Json = nlohmann::json;

  void SetUp() override {
    session_ = std::filesystem::temp_directory_path() /
               ("serve-controller-test-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(session_);
    loop_ = MakeLoop();
    loop_->Recover();
    loop_->Step();
  }
  void TearDown() override {
    loop_.reset();
    std::error_code ec;
    std::filesystem::remove_all(session_, ec);
  }

  std::unique_ptr<ControlLoop> MakeLoop() {
    ControllerOptions o;
    o.session_dir = session_.string();
    o.node_id = "node1";
    o.http_port = 0;
    o.head_resources_json = head_resources_json_;
    o.proxy_location = proxy_location_;
    auto loop = std::make_unique<ControlLoop>(o, clock_, random_, agent_, replicas_, kv_);
    loop->set_address("127.0.0.1:1");
    return loop;
  }

  /// Deploys application "app" (declaratively) with `overrides` (DeploymentSchema entries)
  /// and `args`; when the build is started, answers it with a graph of `code` deployments.
  /// `code_version` changes the factory keys (a code change).
  absl::Status Deploy(const std::vector<Json>& code, const Json& overrides = Json::array(),
                      const Json& args = Json::object(), const std::string& code_version = "",
                      std::optional<double> target_capacity = std::nullopt) {
    Json doc = {{"applications",
                 {{{"name", "app"},
                   {"route_prefix", "/"},
                   {"import_path", "m:app"},
                   {"args", args},
                   {"deployments", overrides}}}}};
    if (target_capacity) doc["target_capacity"] = *target_capacity;
    return DeployDoc(code, doc, code_version);
  }

  /// Deploys the config document `doc` (declaratively) with `code` as its built graph.
  absl::Status DeployDoc(const std::vector<Json>& code, const Json& doc,
                         const std::string& code_version = "") {
    auto cfg = config::ParseServeDeployConfig(doc);
    if (!cfg.ok()) return cfg.status();
    size_t builds = agent_.StartedTags("build:").size();
    absl::Status st = loop_->Deploy(*cfg, "declarative", "");
    if (!st.ok()) return st;
    loop_->Step();
    if (agent_.StartedTags("build:").size() > builds) {
      const auto& req = agent_.started.back();
      std::string build_id;
      for (int i = 0; i + 1 < req.args_size(); ++i) {
        if (req.args(i) == "--build-id") build_id = req.args(i + 1);
      }
      v1::BuildResult result;
      result.set_build_id(build_id);
      result.set_ok(true);
      result.set_graph_msgpack(Graph(code, code.empty() ? "" : code[0].value("name", ""),
                                     code_version));
      loop_->OnBuildResult(result);
    }
    loop_->Step();
    return absl::OkStatus();
  }

  const DeploymentState& Dep(const std::string& name = "D") {
    const DeploymentState* d = loop_->deployments().Get({"app", name});
    EXPECT_NE(d, nullptr) << name;
    static DeploymentState empty;
    return d ? *d : empty;
  }
  std::vector<std::string> Replicas(ReplicaState state, const std::string& name = "D") {
    std::vector<std::string> ids;
    for (auto& [id, r] : Dep(name).replicas) {
      if (r.state == state) ids.push_back(id);
    }
    return ids;
  }
  int CountState(ReplicaState state, const std::string& name = "D") {
    return static_cast<int>(Replicas(state, name).size());
  }
  /// Reports every STARTING replica of `name` as started (ok) or failed.
  void ReportStarted(const std::string& name = "D", bool ok = true,
                     const std::string& error = "boom") {
    for (const std::string& id : Replicas(ReplicaState::kStarting, name)) {
      v1::ReplicaStarted msg;
      msg.set_replica_id(id);
      msg.set_ok(ok);
      msg.set_error(error);
      msg.set_pid(agent_.pid_by_tag["replica:" + id]);
      msg.set_data_address("127.0.0.1:7" + id.substr(1));
      msg.set_control_address("127.0.0.1:8" + id.substr(1));
      loop_->OnReplicaStarted(msg);
    }
    loop_->Step();
  }
  /// Steps until `name` has no transitional replica (answering reconfigures), at most 20 times.
  void Settle(const std::string& name = "D") {
    for (int i = 0; i < 20; ++i) {
      ReportStarted(name);
      replicas_.AnswerReconfigure(absl::OkStatus());
      loop_->Step();
      if (CountState(ReplicaState::kStarting, name) == 0 && replicas_.reconfigures.empty()) break;
    }
  }
  void Exit(int pid, const std::string& tag, int code = -9) {
    v1::ProcessExit msg;
    msg.set_node_id("node1");
    msg.set_pid(pid);
    msg.set_tag(tag);
    msg.set_exit_code(code);
    loop_->OnProcessExit(msg);
  }
  /// Makes every replica that was asked to stop exit.
  void ExitStopped() {
    for (auto& [pid, grace] : agent_.stopped) {
      for (auto& [tag, p] : agent_.pid_by_tag) {
        if (p == pid && exited_.insert(pid).second) Exit(pid, tag, 0);
      }
    }
    loop_->Step();
  }
  void PushLoad(const std::string& name, double queued,
                std::map<std::string, double> running = {}) {
    v1::HandleMetricsBatch batch;
    auto* r = batch.add_reports();
    r->set_deployment_key("app#" + name);
    r->set_handle_id("h1");
    r->set_source("proxy:node1");
    r->set_queued_requests(queued);
    for (auto& [k, v] : running) (*r->mutable_running_requests())[k] = v;
    r->set_timestamp_s(clock_.UnixNow() + (++pushes_) * 1e-3);
    loop_->RecordHandleMetrics(batch);
  }

  std::filesystem::path session_;
  std::string head_resources_json_;  ///< "" : the head fits every demand
  std::string proxy_location_ = "EveryNode";
  FakeClock clock_;
  FakeRandom random_;
  FakeAgent agent_;
  FakeReplicaClient replicas_;
  MemoryKvStore kv_;
  std::unique_ptr<ControlLoop> loop_;
  std::set<int> exited_;
  int pushes_ = 0;
};

}  // namespace serve::controller::testing
