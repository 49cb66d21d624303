#pragma once

// A ControlLoop on fakes with a 4-CPU head and worker nodes that join through Join(), one
// FakeAgent per node (scheduling, draining and proxy placement tests).

#include <map>
#include <string>
#include <vector>

#include "controller_test_base.h"

namespace serve::controller::testing {

using Json = nlohmann::json;

/// The loop owns its worker agents' clients; this one forwards to a FakeAgent the test keeps.
class ForwardingAgent final : public AgentClient {
 public:
  explicit ForwardingAgent(FakeAgent& target) : target_(target) {}
  void StartProcess(const v1::StartProcessRequest& request,
                    std::function<void(absl::StatusOr<int>)> done) override {
    target_.StartProcess(request, std::move(done));
  }
  void StopProcess(int pid, double grace_s, std::function<void()> done) override {
    target_.StopProcess(pid, grace_s, std::move(done));
  }
  absl::StatusOr<std::map<int, std::string>> ListProcesses() override {
    return target_.ListProcesses();
  }
  void Shutdown() override { target_.Shutdown(); }

 private:
  FakeAgent& target_;
};

inline Json Options(int replicas, Json actor_options, Json extra = Json::object()) {
  Json o = {{"name", "D"}, {"num_replicas", replicas}, {"ray_actor_options", actor_options}};
  o.update(extra);
  return o;
}

inline std::string Env(const v1::StartProcessRequest& req, const std::string& key) {
  for (auto& kv : req.env()) {
    if (kv.key() == key) return kv.value();
  }
  return "<unset>";
}

class ClusterTest : public ControllerTest {
 protected:
  void SetUp() override {
    head_resources_json_ = R"({"CPU": 4, "memory": 1e9})";
    ControllerTest::SetUp();
    loop_->set_agent_factory([this](const std::string& address) {
      return std::make_unique<ForwardingAgent>(workers_[address]);
    });
  }
  /// Registers worker `id` whose agent address is "agent-<id>".
  absl::Status Join(const std::string& id, Json resources) {
    v1::RegisterNodeRequest req;
    req.set_node_id(id);
    req.set_node_ip("10.0.0." + std::to_string(workers_.size() + 2));
    req.set_agent_address("agent-" + id);
    for (auto& [k, v] : resources.items()) (*req.mutable_resources())[k] = v.get<double>();
    absl::Status st = loop_->RegisterNode(req);
    loop_->Step();
    return st;
  }
  FakeAgent& Worker(const std::string& id) { return workers_["agent-" + id]; }
  /// Replicas of D per node id.
  std::map<std::string, int> PerNode() {
    std::map<std::string, int> out;
    for (auto& [id, r] : Dep().replicas) {
      if (r.scheduled && r.state != ReplicaState::kStopping) ++out[r.node_id];
    }
    return out;
  }
  /// Every replica start request, head and workers.
  std::vector<v1::StartProcessRequest> ReplicaStarts() {
    std::vector<v1::StartProcessRequest> out;
    auto add = [&](FakeAgent& a) {
      for (auto& r : a.started) {
        if (r.tag().rfind("replica:", 0) == 0) out.push_back(r);
      }
    };
    add(agent_);
    for (auto& [addr, a] : workers_) add(a);
    return out;
  }

  std::map<std::string, FakeAgent> workers_;  ///< by agent address
};

}  // namespace serve::controller::testing
