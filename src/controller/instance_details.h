#pragma once

// ServeInstanceDetails (spec §3.6): what `GET /api/serve/applications/` and `serve status`
// show, as a pure function of the managers' state.

#include <string>

#include <nlohmann/json.hpp>

#include "controller/application_state.h"
#include "controller/context.h"
#include "controller/deployment_state.h"
#include "controller/proxy_state.h"
#include "controller/scheduler.h"

namespace serve::controller {

/// The status `app` shows (spec §3.1); `message` receives its message.
AppStatus ApplicationStatus(const AppState& app, const DeploymentStateManager& deployments,
                            std::string* message);

/// `api_type`: "" (every application), "imperative" or "declarative".
nlohmann::json InstanceDetails(const ControllerContext& context, const ProxyStateManager& proxies,
                               const ApplicationStateManager& apps,
                               const DeploymentStateManager& deployments,
                               const std::string& api_type, const NodeTable& nodes,
                               const Scheduler& scheduler);

}  // namespace serve::controller
