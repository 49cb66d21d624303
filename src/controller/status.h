#pragma once

// Ray Serve's status model (spec §3): deployment status + trigger transitions and the
// application status derived from its deployments. Pure functions, unit tested.

#include <string>
#include <vector>

namespace serve::controller {

enum class DeploymentStatus { kUpdating, kHealthy, kUnhealthy, kDeployFailed, kUpscaling, kDownscaling };
enum class StatusTrigger {
  kUnspecified, kConfigUpdateStarted, kConfigUpdateCompleted, kUpscaleCompleted,
  kDownscaleCompleted, kAutoscaling, kReplicaStartupFailed, kHealthCheckFailed, kInternalError,
  kDeleting
};
enum class DeploymentEvent {
  kHealthy, kConfigUpdate, kAutoscaleUp, kAutoscaleDown, kManuallyIncrease, kManuallyDecrease,
  kReplicaStartupFailed, kHealthCheckFailed, kInternalError, kDelete
};
enum class AppStatus { kNotStarted, kDeploying, kDeployFailed, kRunning, kUnhealthy, kDeleting };

struct DeploymentStatusInfo {
  DeploymentStatus status = DeploymentStatus::kUpdating;
  StatusTrigger trigger = StatusTrigger::kConfigUpdateStarted;
  friend bool operator==(const DeploymentStatusInfo&, const DeploymentStatusInfo&) = default;
};

/// Applies `event` per the transition table of spec §3.2 (unlisted pairs keep the state).
DeploymentStatusInfo Transition(DeploymentStatusInfo current, DeploymentEvent event);

/// Application status from its deployments' statuses (lowest rank wins, spec §3.1). `message`
/// receives Ray's text naming the failing deployments.
AppStatus DeriveAppStatus(const std::vector<std::pair<std::string, DeploymentStatusInfo>>& deps,
                          std::string* message);

const char* ToString(DeploymentStatus s);
const char* ToString(StatusTrigger t);
const char* ToString(AppStatus s);

}  // namespace serve::controller
