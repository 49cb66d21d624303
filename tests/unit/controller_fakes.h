#pragma once

// Fakes for driving the controller's ControlLoop in one thread: a settable clock, a
// deterministic random source, an agent and replica clients that record calls and complete
// them when the test says, and an in-memory KvStore.

#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "controller/clients.h"
#include "controller/clock.h"
#include "controller/storage/kv_store.h"

namespace serve::controller::testing {

class FakeClock final : public Clock {
 public:
  double Now() override { return now_; }
  double UnixNow() override { return 1.7e9 + now_; }
  void Advance(double s) { now_ += s; }
  void Set(double s) { now_ = s; }

 private:
  double now_ = 1000;
};

/// Ids "r1", "r2", ...; Uniform returns the middle of its range (no jitter).
class FakeRandom final : public Random {
 public:
  double Uniform(double lo, double hi) override { return (lo + hi) / 2; }
  std::string Id(size_t) override { return "r" + std::to_string(++next_); }

 private:
  int next_ = 0;
};

class FakeAgent final : public AgentClient {
 public:
  struct Start {
    v1::StartProcessRequest request;
    std::function<void(absl::StatusOr<int>)> done;
  };
  /// When true, StartProcess answers at once with a fresh pid; else calls wait in `pending`.
  bool auto_complete = true;
  std::vector<v1::StartProcessRequest> started;  ///< every request, in order
  std::deque<Start> pending;
  std::vector<std::pair<int, double>> stopped;  ///< (pid, grace_s)
  std::map<int, std::string> alive;             ///< what ListProcesses reports
  int shutdowns = 0;
  int next_pid = 100;
  std::map<std::string, int> pid_by_tag;

  void StartProcess(const v1::StartProcessRequest& request,
                    std::function<void(absl::StatusOr<int>)> done) override {
    started.push_back(request);
    if (!auto_complete) {
      pending.push_back({request, std::move(done)});
      return;
    }
    int pid = ++next_pid;
    pid_by_tag[request.tag()] = pid;
    done(pid);
  }
  void StopProcess(int pid, double grace_s, std::function<void()> done) override {
    stopped.emplace_back(pid, grace_s);
    if (done) done();
  }
  absl::StatusOr<std::map<int, std::string>> ListProcesses() override { return alive; }
  void Shutdown() override { ++shutdowns; }

  /// Tags of started processes with `prefix` ("replica:", "build:", "proxy").
  std::vector<std::string> StartedTags(const std::string& prefix) const {
    std::vector<std::string> out;
    for (auto& r : started) {
      if (r.tag().rfind(prefix, 0) == 0) out.push_back(r.tag());
    }
    return out;
  }
};

class FakeReplicaClient final : public ReplicaClient {
 public:
  struct Call {
    std::string address;
    std::function<void(absl::Status)> done;
  };
  std::deque<Call> health_checks;
  std::deque<Call> reconfigures;
  std::vector<v1::ReconfigureRequest> reconfigure_requests;  ///< every one sent, in order
  struct PolicyCall {
    std::string address;
    v1::PolicyRequest request;
    std::function<void(absl::StatusOr<v1::PolicyReply>)> done;
  };
  std::deque<PolicyCall> policy_calls;

  void CheckHealth(const std::string& address, double,
                   std::function<void(absl::Status)> done) override {
    health_checks.push_back({address, std::move(done)});
  }
  void Reconfigure(const std::string& address, const v1::ReconfigureRequest& request,
                   std::function<void(absl::Status)> done) override {
    reconfigures.push_back({address, std::move(done)});
    reconfigure_requests.push_back(request);
  }
  void RunPolicy(const std::string& address, const v1::PolicyRequest& request,
                 std::function<void(absl::StatusOr<v1::PolicyReply>)> done) override {
    policy_calls.push_back({address, request, std::move(done)});
  }
  /// Answers every pending health check with `status`; returns how many.
  int AnswerHealth(const absl::Status& status) {
    int n = 0;
    while (!health_checks.empty()) {
      auto c = std::move(health_checks.front());
      health_checks.pop_front();
      c.done(status);
      ++n;
    }
    return n;
  }
  int AnswerReconfigure(const absl::Status& status) {
    int n = 0;
    while (!reconfigures.empty()) {
      auto c = std::move(reconfigures.front());
      reconfigures.pop_front();
      c.done(status);
      ++n;
    }
    return n;
  }
};

class MemoryKvStore final : public KvStore {
 public:
  absl::Status Put(std::string_view key, std::string_view value) override {
    std::lock_guard lock(mu_);
    data_[std::string(key)] = std::string(value);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Get(std::string_view key) override {
    std::lock_guard lock(mu_);
    auto it = data_.find(std::string(key));
    if (it == data_.end()) return absl::NotFoundError("no such key");
    return it->second;
  }
  absl::Status Delete(std::string_view key) override {
    std::lock_guard lock(mu_);
    data_.erase(std::string(key));
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<std::string>> Keys(std::string_view prefix) override {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (auto& [k, v] : data_) {
      if (k.rfind(prefix, 0) == 0) out.push_back(k);
    }
    return out;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> data_;
};

/// The msgpack application graph a build process reports: one entry per deployment with its
/// options (DeploymentSchema JSON) and factory key.
inline std::string Graph(const std::vector<nlohmann::json>& deployment_options,
                         const std::string& ingress, const std::string& factory_suffix = "") {
  nlohmann::json graph = {{"library_path", "/nonexistent/libapp.so"}, {"ingress", ingress}};
  graph["deployments"] = nlohmann::json::array();
  for (const auto& o : deployment_options) {
    graph["deployments"].push_back({{"options", o},
                                    {"factory", o.value("name", "") + factory_suffix},
                                    {"init_args", nlohmann::json::array()}});
  }
  std::vector<std::uint8_t> packed = nlohmann::json::to_msgpack(graph);
  return std::string(packed.begin(), packed.end());
}

}  // namespace serve::controller::testing
