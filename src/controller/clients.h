#pragma once

// The controller's view of the processes it commands. Production implementations speak gRPC
// (grpc_clients.h); unit tests use fakes. Every call is asynchronous unless it says otherwise:
// the callback runs later on some other thread (or inline, in fakes), never with the caller's
// lock assumed held.

#include <functional>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "serve/v1/agent.pb.h"
#include "serve/v1/replica.pb.h"

namespace serve::controller {

/// The node agent: starts, stops and lists processes.
class AgentClient {
 public:
  virtual ~AgentClient() = default;
  /// Starts a process; `done` gets its pid or the error.
  virtual void StartProcess(const v1::StartProcessRequest& request,
                            std::function<void(absl::StatusOr<int>)> done) = 0;
  /// Asks the agent to stop `pid` (SIGTERM, SIGKILL after `grace_s`); `done` may be null.
  virtual void StopProcess(int pid, double grace_s, std::function<void()> done) = 0;
  /// Blocking: pid -> tag of the processes the agent supervises (used once, at recovery).
  virtual absl::StatusOr<std::map<int, std::string>> ListProcesses() = 0;
  /// Stops the agent and everything it runs.
  virtual void Shutdown() = 0;
};

/// Control calls to one replica at its control address.
class ReplicaClient {
 public:
  virtual ~ReplicaClient() = default;
  /// OK when the replica answered healthy within `timeout_s`; else the reason.
  virtual void CheckHealth(const std::string& address, double timeout_s,
                           std::function<void(absl::Status)> done) = 0;
  /// Applies user_config / max_ongoing_requests in place; OK or the reason.
  virtual void Reconfigure(const std::string& address, const v1::ReconfigureRequest& request,
                           std::function<void(absl::Status)> done) = 0;
  /// Runs a custom autoscaling policy in the replica; the reply, or why none came.
  virtual void RunPolicy(const std::string& address, const v1::PolicyRequest& request,
                         std::function<void(absl::StatusOr<v1::PolicyReply>)> done) = 0;
};

}  // namespace serve::controller
