#pragma once

// What the long-poll host publishes (spec §7): the route table of the applications' ingress
// deployments, and each deployment's running replicas, and each proxy's draining state. Pure functions of manager state.

#include <map>
#include <string>

#include "controller/application_state.h"
#include "controller/deployment_state.h"
#include "controller/node_state.h"
#include "controller/proxy_state.h"
#include "serve/v1/controller.pb.h"

namespace serve::controller {

/// ROUTE_TABLE: routed applications (not deleting, with a prefix and an ingress).
v1::Update RouteTableObject(const std::map<std::string, AppState>& apps);
/// DEPLOYMENT_TARGETS:<key>: RUNNING replicas only (stopping ones have left routing), plus
/// availability, max_queued_requests and, for autoscaling deployments, the metrics settings.
v1::Update TargetsObject(const DeploymentState& dep, const NodeTable& nodes);
/// PROXY_STATE:<node id>: per proxy, whether it is draining.
/// Every object above by key.
std::map<std::string, v1::Update> LongPollObjects(const ApplicationStateManager& apps,
                                                  const DeploymentStateManager& deployments,
                                                  const NodeTable& nodes,
                                                  const ProxyStateManager& proxies);

}  // namespace serve::controller
