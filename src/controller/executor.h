#pragma once

// Performs the managers' actions against the agent and the replicas, without blocking: every
// call is asynchronous, and its outcome comes back through ActionResults.

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/ids.h"
#include "controller/actions.h"
#include "controller/clients.h"

namespace serve::controller {

/// Receives the outcome of actions (called from client threads, or inline from fakes).
class ActionResults {
 public:
  virtual ~ActionResults() = default;
  virtual void OnReplicaProcessStarted(const std::string& replica_id, const std::string& node_id,
                                       const absl::StatusOr<int>& pid) = 0;
  virtual void OnBuildProcessStarted(const std::string& app, const std::string& build_id,
                                     const absl::StatusOr<int>& pid) = 0;
  virtual void OnProxyProcessStarted(const std::string& node_id,
                                     const absl::StatusOr<int>& pid) = 0;
  virtual void OnHealthResult(const DeploymentId& deployment, const std::string& replica_id,
                              const absl::Status& result) = 0;
  virtual void OnReconfigureResult(const DeploymentId& deployment, const std::string& replica_id,
                                   int config_version, const absl::Status& result) = 0;
  virtual void OnPolicyResult(const DeploymentId& deployment,
                              const absl::StatusOr<v1::PolicyReply>& reply) = 0;
};

/// The agent of a node ("" = the head node); nullptr when the node is unknown or dead.
using AgentResolver = std::function<AgentClient*(const std::string& node_id)>;

class ActionExecutor {
 public:
  ActionExecutor(AgentResolver agents, ReplicaClient& replicas, ActionResults& results)
      : agents_(std::move(agents)), agent_(*agents_("")), replicas_(replicas), results_(results) {}

  /// Issues every action; returns without waiting for any of them.
  void Execute(Actions actions);

 private:
  AgentResolver agents_;
  AgentClient& agent_;  ///< the head node's
  ReplicaClient& replicas_;
  ActionResults& results_;
};

}  // namespace serve::controller
