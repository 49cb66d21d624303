#pragma once

// The controller's checkpoint: the goal state and the replica inventory, as msgpack of a
// versioned JSON document (spec §1: saved before replicas start or stop).

#include <map>
#include <string>
#include <vector>

#include "controller/actions.h"
#include "controller/application_state.h"
#include "controller/deployment_state.h"
#include "controller/node_state.h"
#include "controller/proxy_state.h"

namespace serve::controller {

inline constexpr char kCheckpointKey[] = "serve-controller-checkpoint";

/// What a node's agent reports it runs: pid -> tag. `listed` false: the agent could not be
/// asked, so that node's checkpointed processes are adopted unverified (health checks decide).
struct NodeProcesses {
  bool listed = false;
  std::map<int, std::string> processes;
};

/// Encodes the managers' state and the worker nodes (not the head, not dead ones). Replicas
/// the agent has not started yet (pid 0) are left out: scaling recreates them.
std::string EncodeCheckpoint(const ApplicationStateManager& apps,
                             const DeploymentStateManager& deployments,
                             const ProxyStateManager& proxies, const NodeTable& nodes);

/// The worker nodes of `blob` (ALIVE or DRAINING when saved). Throws std::exception when
/// `blob` is malformed.
std::vector<NodeInfo> CheckpointedNodes(const std::string& blob);

/// Restores `blob` into empty managers, reconciled with `alive` (by node id; a replica with no
/// node id is the head's, `head_node_id`): a replica whose node is not in `alive` or whose
/// process is gone is dropped (and replaced by scaling), a STOPPING or never-ready one is
/// stopped, a ready one is adopted as RECOVERING; a proxy whose process is gone is dropped; a
/// build that died is started again. Throws std::exception when `blob` is malformed.
void RestoreCheckpoint(const std::string& blob, const std::string& head_node_id,
                       const std::map<std::string, NodeProcesses>& alive,
                       ApplicationStateManager& apps, DeploymentStateManager& deployments,
                       ProxyStateManager& proxies, Actions& actions);

}  // namespace serve::controller
