#include "controller/status.h"

namespace serve::controller {

using S = DeploymentStatus;
using T = StatusTrigger;
using E = DeploymentEvent;

DeploymentStatusInfo Transition(DeploymentStatusInfo cur, DeploymentEvent e) {
  if (e == E::kInternalError) return {S::kUnhealthy, T::kInternalError};
  if (e == E::kDelete) return {S::kUpdating, T::kDeleting};
  switch (cur.status) {
    case S::kUpdating:
      switch (e) {
        case E::kHealthy: return {S::kHealthy, T::kConfigUpdateCompleted};
        case E::kConfigUpdate: return {S::kUpdating, T::kConfigUpdateStarted};
        case E::kAutoscaleUp: return {S::kUpscaling, T::kAutoscaling};
        case E::kAutoscaleDown: return {S::kDownscaling, T::kAutoscaling};
        case E::kHealthCheckFailed: return {S::kDeployFailed, T::kHealthCheckFailed};
        case E::kReplicaStartupFailed: return {S::kDeployFailed, T::kReplicaStartupFailed};
        default: return cur;
      }
    case S::kUpscaling:
    case S::kDownscaling:
      switch (e) {
        case E::kHealthCheckFailed: return {S::kUnhealthy, T::kHealthCheckFailed};
        case E::kReplicaStartupFailed: return {S::kUnhealthy, T::kReplicaStartupFailed};
        case E::kHealthy:
          return {S::kHealthy,
                  cur.status == S::kUpscaling ? T::kUpscaleCompleted : T::kDownscaleCompleted};
        case E::kConfigUpdate: return {S::kUpdating, T::kConfigUpdateStarted};
        case E::kAutoscaleUp:
          if (cur.trigger == T::kAutoscaling) return {S::kUpscaling, cur.trigger};
          return cur;
        case E::kAutoscaleDown:
          if (cur.trigger == T::kAutoscaling) return {S::kDownscaling, cur.trigger};
          return cur;
        case E::kManuallyIncrease:
          if (cur.trigger == T::kAutoscaling || cur.trigger == T::kConfigUpdateStarted) {
            return {S::kUpscaling, T::kConfigUpdateStarted};
          }
          return cur;
        case E::kManuallyDecrease:
          if (cur.trigger == T::kAutoscaling || cur.trigger == T::kConfigUpdateStarted) {
            return {S::kDownscaling, T::kConfigUpdateStarted};
          }
          return cur;
        default: return cur;
      }
    case S::kHealthy:
      switch (e) {
        case E::kHealthy: return cur;
        case E::kConfigUpdate: return {S::kUpdating, T::kConfigUpdateStarted};
        case E::kManuallyIncrease: return {S::kUpscaling, T::kConfigUpdateStarted};
        case E::kManuallyDecrease: return {S::kDownscaling, T::kConfigUpdateStarted};
        case E::kAutoscaleUp: return {S::kUpscaling, T::kAutoscaling};
        case E::kAutoscaleDown: return {S::kDownscaling, T::kAutoscaling};
        case E::kHealthCheckFailed: return {S::kUnhealthy, T::kHealthCheckFailed};
        default: return cur;
      }
    case S::kUnhealthy:
    case S::kDeployFailed:
      switch (e) {
        case E::kHealthy: return {S::kHealthy, T::kUnspecified};
        case E::kConfigUpdate: return {S::kUpdating, T::kConfigUpdateStarted};
        case E::kHealthCheckFailed: return {cur.status, T::kHealthCheckFailed};
        case E::kReplicaStartupFailed: return {cur.status, T::kReplicaStartupFailed};
        default: return cur;
      }
  }
  return cur;
}

AppStatus DeriveAppStatus(const std::vector<std::pair<std::string, DeploymentStatusInfo>>& deps,
                          std::string* message) {
  std::vector<std::string> failed, unhealthy;
  bool deploying = false;
  for (const auto& [name, info] : deps) {
    switch (info.status) {
      case S::kDeployFailed: failed.push_back(name); break;
      case S::kUnhealthy: unhealthy.push_back(name); break;
      case S::kUpdating: deploying = true; break;
      case S::kUpscaling:
      case S::kDownscaling:
        if (info.trigger == T::kConfigUpdateStarted) deploying = true;
        break;
      case S::kHealthy: break;
    }
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", '" : "'") + v[i] + "'";
    return s + "]";
  };
  message->clear();
  if (!failed.empty()) {
    *message = "Failed to update the deployments " + join(failed) + ".";
    return AppStatus::kDeployFailed;
  }
  if (!unhealthy.empty()) {
    *message = "The deployments " + join(unhealthy) + " are UNHEALTHY.";
    return AppStatus::kUnhealthy;
  }
  return deploying ? AppStatus::kDeploying : AppStatus::kRunning;
}

const char* ToString(DeploymentStatus s) {
  switch (s) {
    case S::kUpdating: return "UPDATING";
    case S::kHealthy: return "HEALTHY";
    case S::kUnhealthy: return "UNHEALTHY";
    case S::kDeployFailed: return "DEPLOY_FAILED";
    case S::kUpscaling: return "UPSCALING";
    case S::kDownscaling: return "DOWNSCALING";
  }
  return "UNKNOWN";
}

const char* ToString(StatusTrigger t) {
  switch (t) {
    case T::kUnspecified: return "UNSPECIFIED";
    case T::kConfigUpdateStarted: return "CONFIG_UPDATE_STARTED";
    case T::kConfigUpdateCompleted: return "CONFIG_UPDATE_COMPLETED";
    case T::kUpscaleCompleted: return "UPSCALE_COMPLETED";
    case T::kDownscaleCompleted: return "DOWNSCALE_COMPLETED";
    case T::kAutoscaling: return "AUTOSCALING";
    case T::kReplicaStartupFailed: return "REPLICA_STARTUP_FAILED";
    case T::kHealthCheckFailed: return "HEALTH_CHECK_FAILED";
    case T::kInternalError: return "INTERNAL_ERROR";
    case T::kDeleting: return "DELETING";
  }
  return "UNSPECIFIED";
}

const char* ToString(AppStatus s) {
  switch (s) {
    case AppStatus::kNotStarted: return "NOT_STARTED";
    case AppStatus::kDeploying: return "DEPLOYING";
    case AppStatus::kDeployFailed: return "DEPLOY_FAILED";
    case AppStatus::kRunning: return "RUNNING";
    case AppStatus::kUnhealthy: return "UNHEALTHY";
    case AppStatus::kDeleting: return "DELETING";
  }
  return "UNKNOWN";
}

}  // namespace serve::controller
