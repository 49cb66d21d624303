#pragma once

// What the managers decide, as data. One executor (executor.h) performs them against the
// agent and the replicas; results come back as events to the control loop.

#include <string>
#include <variant>
#include <vector>

#include "common/ids.h"
#include "serve/v1/agent.pb.h"
#include "serve/v1/replica.pb.h"

namespace serve::controller {

struct StartReplicaAction {
  std::string replica_id;
  v1::StartProcessRequest request;
  std::string node_id;  ///< whose agent starts it; empty: the head node
};
struct StartBuildAction {
  std::string app;
  std::string build_id;
  v1::StartProcessRequest request;
};
struct StartProxyAction {
  std::string node_id;
  v1::StartProcessRequest request;
};
struct StopProcessAction {
  int pid = 0;
  double grace_s = 0;
  std::string node_id;  ///< whose agent stops it; empty: the head node
};
struct CheckHealthAction {
  DeploymentId deployment;
  std::string replica_id;
  std::string address;
  double timeout_s = 0;
};
struct ReconfigureAction {
  DeploymentId deployment;
  std::string replica_id;
  std::string address;
  int config_version = 0;
  v1::ReconfigureRequest request;
};
/// Asks a replica of `deployment` to run its custom autoscaling policy.
struct RunPolicyAction {
  DeploymentId deployment;
  std::string address;  ///< the replica's control address
  v1::PolicyRequest request;
};
/// Stops the proxies, then the node agent (after `serve shutdown` deleted everything).
struct ShutdownNodeAction {
  std::vector<int> proxy_pids;
  std::vector<std::string> worker_nodes;  ///< their agents are shut down too
};

using Action = std::variant<StartReplicaAction, StartBuildAction, StartProxyAction,
                            StopProcessAction, CheckHealthAction, ReconfigureAction,
                            RunPolicyAction, ShutdownNodeAction>;
using Actions = std::vector<Action>;

}  // namespace serve::controller
