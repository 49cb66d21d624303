#pragma once

// The controller's checkpoint: the goal state and the replica inventory, as msgpack of a
// versioned JSON document (spec §1: saved before replicas start or stop).

#include <map>
#include <string>

#include "controller/actions.h"
#include "controller/application_state.h"
#include "controller/deployment_state.h"
#include "controller/proxy_state.h"

namespace serve::controller {

inline constexpr char kCheckpointKey[] = "serve-controller-checkpoint";

/// Encodes the managers' state. Replicas the agent has not started yet (pid 0) are left out:
/// scaling recreates them.
std::string EncodeCheckpoint(const ApplicationStateManager& apps,
                             const DeploymentStateManager& deployments,
                             const ProxyStateManager& proxies);

/// Restores `blob` into empty managers, reconciled with `alive` (pid -> tag of the processes
/// the agent reports): a replica whose process is gone is dropped (and replaced by scaling),
/// a STOPPING or never-ready one is stopped, a ready one is adopted as RECOVERING; a build
/// that died is started again. Throws std::exception when `blob` is malformed.
void RestoreCheckpoint(const std::string& blob, const std::map<int, std::string>& alive,
                       ApplicationStateManager& apps, DeploymentStateManager& deployments,
                       ProxyStateManager& proxies, Actions& actions);

}  // namespace serve::controller
