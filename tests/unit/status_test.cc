// Unit tests of the deployment status transition table and the derived application status
// (spec §3.1 and §3.2).

#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "controller/status.h"

namespace serve::controller {

// Readable failure output: "UPDATING/CONFIG_UPDATE_STARTED".
void PrintTo(const DeploymentStatusInfo& info, std::ostream* os) {
  *os << ToString(info.status) << "/" << ToString(info.trigger);
}

namespace {

using S = DeploymentStatus;
using T = StatusTrigger;
using E = DeploymentEvent;

constexpr S kAllStatuses[] = {S::kUpdating,  S::kHealthy,   S::kUnhealthy,
                              S::kDeployFailed, S::kUpscaling, S::kDownscaling};
constexpr T kAllTriggers[] = {T::kUnspecified,         T::kConfigUpdateStarted,
                              T::kConfigUpdateCompleted, T::kUpscaleCompleted,
                              T::kDownscaleCompleted,  T::kAutoscaling,
                              T::kReplicaStartupFailed, T::kHealthCheckFailed,
                              T::kInternalError,       T::kDeleting};

DeploymentStatusInfo I(S s, T t) { return {s, t}; }

TEST(DeploymentStatusTest, InitialStateIsUpdatingConfigUpdateStarted) {
  EXPECT_EQ(DeploymentStatusInfo{}, I(S::kUpdating, T::kConfigUpdateStarted));
}

TEST(DeploymentStatusTest, UpdatingTransitions) {
  const auto cur = I(S::kUpdating, T::kConfigUpdateStarted);
  EXPECT_EQ(Transition(cur, E::kHealthy), I(S::kHealthy, T::kConfigUpdateCompleted));
  EXPECT_EQ(Transition(cur, E::kConfigUpdate), I(S::kUpdating, T::kConfigUpdateStarted));
  EXPECT_EQ(Transition(cur, E::kAutoscaleUp), I(S::kUpscaling, T::kAutoscaling));
  EXPECT_EQ(Transition(cur, E::kAutoscaleDown), I(S::kDownscaling, T::kAutoscaling));
  EXPECT_EQ(Transition(cur, E::kManuallyIncrease), cur);
  EXPECT_EQ(Transition(cur, E::kManuallyDecrease), cur);
  EXPECT_EQ(Transition(cur, E::kHealthCheckFailed), I(S::kDeployFailed, T::kHealthCheckFailed));
  EXPECT_EQ(Transition(cur, E::kReplicaStartupFailed),
            I(S::kDeployFailed, T::kReplicaStartupFailed));
}

TEST(DeploymentStatusTest, HealthyTransitions) {
  const auto cur = I(S::kHealthy, T::kConfigUpdateCompleted);
  EXPECT_EQ(Transition(cur, E::kHealthy), cur);
  EXPECT_EQ(Transition(cur, E::kConfigUpdate), I(S::kUpdating, T::kConfigUpdateStarted));
  EXPECT_EQ(Transition(cur, E::kManuallyIncrease), I(S::kUpscaling, T::kConfigUpdateStarted));
  EXPECT_EQ(Transition(cur, E::kManuallyDecrease), I(S::kDownscaling, T::kConfigUpdateStarted));
  EXPECT_EQ(Transition(cur, E::kAutoscaleUp), I(S::kUpscaling, T::kAutoscaling));
  EXPECT_EQ(Transition(cur, E::kAutoscaleDown), I(S::kDownscaling, T::kAutoscaling));
  EXPECT_EQ(Transition(cur, E::kHealthCheckFailed), I(S::kUnhealthy, T::kHealthCheckFailed));
}

// Spec §3.2 lists only HEALTH_CHECK_FAILED as a failure for HEALTHY ("unlisted combinations keep
// the current state"); Ray's DeploymentStatusInfo.handle_transition ignores REPLICA_STARTUP_FAILED
// there too.
TEST(DeploymentStatusTest, HealthyIgnoresReplicaStartupFailed) {
  const auto cur = I(S::kHealthy, T::kConfigUpdateCompleted);
  EXPECT_EQ(Transition(cur, E::kReplicaStartupFailed), cur);
}

TEST(DeploymentStatusTest, UnhealthyTransitions) {
  const auto cur = I(S::kUnhealthy, T::kHealthCheckFailed);
  EXPECT_EQ(Transition(cur, E::kHealthy), I(S::kHealthy, T::kUnspecified));
  EXPECT_EQ(Transition(cur, E::kConfigUpdate), I(S::kUpdating, T::kConfigUpdateStarted));
  EXPECT_EQ(Transition(cur, E::kHealthCheckFailed), I(S::kUnhealthy, T::kHealthCheckFailed));
  EXPECT_EQ(Transition(cur, E::kReplicaStartupFailed),
            I(S::kUnhealthy, T::kReplicaStartupFailed));
  EXPECT_EQ(Transition(cur, E::kAutoscaleUp), cur);
  EXPECT_EQ(Transition(cur, E::kAutoscaleDown), cur);
  EXPECT_EQ(Transition(cur, E::kManuallyIncrease), cur);
  EXPECT_EQ(Transition(cur, E::kManuallyDecrease), cur);
}

TEST(DeploymentStatusTest, DeployFailedTransitions) {
  const auto cur = I(S::kDeployFailed, T::kReplicaStartupFailed);
  EXPECT_EQ(Transition(cur, E::kHealthy), I(S::kHealthy, T::kUnspecified));
  EXPECT_EQ(Transition(cur, E::kConfigUpdate), I(S::kUpdating, T::kConfigUpdateStarted));
  EXPECT_EQ(Transition(cur, E::kHealthCheckFailed), I(S::kDeployFailed, T::kHealthCheckFailed));
  EXPECT_EQ(Transition(cur, E::kReplicaStartupFailed),
            I(S::kDeployFailed, T::kReplicaStartupFailed));
  EXPECT_EQ(Transition(cur, E::kAutoscaleUp), cur);
  EXPECT_EQ(Transition(cur, E::kManuallyDecrease), cur);
}

TEST(DeploymentStatusTest, AutoscalingUpscalingTransitions) {
  const auto cur = I(S::kUpscaling, T::kAutoscaling);
  EXPECT_EQ(Transition(cur, E::kHealthy), I(S::kHealthy, T::kUpscaleCompleted));
  EXPECT_EQ(Transition(cur, E::kConfigUpdate), I(S::kUpdating, T::kConfigUpdateStarted));
  EXPECT_EQ(Transition(cur, E::kHealthCheckFailed), I(S::kUnhealthy, T::kHealthCheckFailed));
  EXPECT_EQ(Transition(cur, E::kReplicaStartupFailed),
            I(S::kUnhealthy, T::kReplicaStartupFailed));
  EXPECT_EQ(Transition(cur, E::kAutoscaleUp), I(S::kUpscaling, T::kAutoscaling));
  EXPECT_EQ(Transition(cur, E::kAutoscaleDown), I(S::kDownscaling, T::kAutoscaling));
  EXPECT_EQ(Transition(cur, E::kManuallyIncrease), I(S::kUpscaling, T::kConfigUpdateStarted));
  EXPECT_EQ(Transition(cur, E::kManuallyDecrease), I(S::kDownscaling, T::kConfigUpdateStarted));
}

TEST(DeploymentStatusTest, AutoscalingDownscalingTransitions) {
  const auto cur = I(S::kDownscaling, T::kAutoscaling);
  EXPECT_EQ(Transition(cur, E::kHealthy), I(S::kHealthy, T::kDownscaleCompleted));
  EXPECT_EQ(Transition(cur, E::kAutoscaleUp), I(S::kUpscaling, T::kAutoscaling));
  EXPECT_EQ(Transition(cur, E::kAutoscaleDown), I(S::kDownscaling, T::kAutoscaling));
  EXPECT_EQ(Transition(cur, E::kManuallyIncrease), I(S::kUpscaling, T::kConfigUpdateStarted));
  EXPECT_EQ(Transition(cur, E::kHealthCheckFailed), I(S::kUnhealthy, T::kHealthCheckFailed));
}

TEST(DeploymentStatusTest, ManualScalingTransitions) {
  const auto up = I(S::kUpscaling, T::kConfigUpdateStarted);
  const auto down = I(S::kDownscaling, T::kConfigUpdateStarted);
  // Manual changes flip direction; autoscaling events leave a manual scale alone.
  EXPECT_EQ(Transition(up, E::kManuallyDecrease), down);
  EXPECT_EQ(Transition(down, E::kManuallyIncrease), up);
  EXPECT_EQ(Transition(up, E::kManuallyIncrease), up);
  EXPECT_EQ(Transition(up, E::kAutoscaleDown), up);
  EXPECT_EQ(Transition(down, E::kAutoscaleUp), down);
  EXPECT_EQ(Transition(up, E::kHealthy), I(S::kHealthy, T::kUpscaleCompleted));
  EXPECT_EQ(Transition(down, E::kHealthy), I(S::kHealthy, T::kDownscaleCompleted));
  EXPECT_EQ(Transition(down, E::kReplicaStartupFailed),
            I(S::kUnhealthy, T::kReplicaStartupFailed));
}

TEST(DeploymentStatusTest, DeleteFromAnyStateIsUpdatingDeleting) {
  for (S s : kAllStatuses) {
    for (T t : kAllTriggers) {
      EXPECT_EQ(Transition(I(s, t), E::kDelete), I(S::kUpdating, T::kDeleting))
          << ToString(s) << "/" << ToString(t);
    }
  }
}

TEST(DeploymentStatusTest, InternalErrorFromAnyStateIsUnhealthy) {
  for (S s : kAllStatuses) {
    for (T t : kAllTriggers) {
      EXPECT_EQ(Transition(I(s, t), E::kInternalError), I(S::kUnhealthy, T::kInternalError))
          << ToString(s) << "/" << ToString(t);
    }
  }
}

TEST(DeploymentStatusTest, FullDeployLifecycle) {
  DeploymentStatusInfo st;
  st = Transition(st, E::kHealthy);
  EXPECT_EQ(st, I(S::kHealthy, T::kConfigUpdateCompleted));
  st = Transition(st, E::kHealthCheckFailed);
  EXPECT_EQ(st, I(S::kUnhealthy, T::kHealthCheckFailed));
  st = Transition(st, E::kHealthy);
  EXPECT_EQ(st, I(S::kHealthy, T::kUnspecified));
  st = Transition(st, E::kManuallyIncrease);
  EXPECT_EQ(st, I(S::kUpscaling, T::kConfigUpdateStarted));
  st = Transition(st, E::kHealthy);
  EXPECT_EQ(st, I(S::kHealthy, T::kUpscaleCompleted));
  st = Transition(st, E::kDelete);
  EXPECT_EQ(st, I(S::kUpdating, T::kDeleting));
}

TEST(DeploymentStatusTest, ToStringNames) {
  EXPECT_STREQ(ToString(S::kUpdating), "UPDATING");
  EXPECT_STREQ(ToString(S::kHealthy), "HEALTHY");
  EXPECT_STREQ(ToString(S::kUnhealthy), "UNHEALTHY");
  EXPECT_STREQ(ToString(S::kDeployFailed), "DEPLOY_FAILED");
  EXPECT_STREQ(ToString(S::kUpscaling), "UPSCALING");
  EXPECT_STREQ(ToString(S::kDownscaling), "DOWNSCALING");
  EXPECT_STREQ(ToString(T::kUnspecified), "UNSPECIFIED");
  EXPECT_STREQ(ToString(T::kConfigUpdateStarted), "CONFIG_UPDATE_STARTED");
  EXPECT_STREQ(ToString(T::kConfigUpdateCompleted), "CONFIG_UPDATE_COMPLETED");
  EXPECT_STREQ(ToString(T::kUpscaleCompleted), "UPSCALE_COMPLETED");
  EXPECT_STREQ(ToString(T::kDownscaleCompleted), "DOWNSCALE_COMPLETED");
  EXPECT_STREQ(ToString(T::kAutoscaling), "AUTOSCALING");
  EXPECT_STREQ(ToString(T::kReplicaStartupFailed), "REPLICA_STARTUP_FAILED");
  EXPECT_STREQ(ToString(T::kHealthCheckFailed), "HEALTH_CHECK_FAILED");
  EXPECT_STREQ(ToString(T::kInternalError), "INTERNAL_ERROR");
  EXPECT_STREQ(ToString(T::kDeleting), "DELETING");
  EXPECT_STREQ(ToString(AppStatus::kNotStarted), "NOT_STARTED");
  EXPECT_STREQ(ToString(AppStatus::kDeploying), "DEPLOYING");
  EXPECT_STREQ(ToString(AppStatus::kDeployFailed), "DEPLOY_FAILED");
  EXPECT_STREQ(ToString(AppStatus::kRunning), "RUNNING");
  EXPECT_STREQ(ToString(AppStatus::kUnhealthy), "UNHEALTHY");
  EXPECT_STREQ(ToString(AppStatus::kDeleting), "DELETING");
}

// ---- DeriveAppStatus ----------------------------------------------------------------------

using Deps = std::vector<std::pair<std::string, DeploymentStatusInfo>>;

TEST(AppStatusTest, AllHealthyIsRunning) {
  std::string msg = "stale";
  EXPECT_EQ(DeriveAppStatus({{"A", I(S::kHealthy, T::kConfigUpdateCompleted)},
                             {"B", I(S::kHealthy, T::kUpscaleCompleted)}},
                            &msg),
            AppStatus::kRunning);
  EXPECT_EQ(msg, "");
}

TEST(AppStatusTest, AutoscalingCountsAsRunning) {
  std::string msg;
  EXPECT_EQ(DeriveAppStatus({{"A", I(S::kUpscaling, T::kAutoscaling)},
                             {"B", I(S::kDownscaling, T::kAutoscaling)}},
                            &msg),
            AppStatus::kRunning);
}

TEST(AppStatusTest, UpdatingOrManualScalingIsDeploying) {
  std::string msg;
  EXPECT_EQ(DeriveAppStatus({{"A", I(S::kHealthy, T::kConfigUpdateCompleted)},
                             {"B", I(S::kUpdating, T::kConfigUpdateStarted)}},
                            &msg),
            AppStatus::kDeploying);
  EXPECT_EQ(msg, "");
  EXPECT_EQ(DeriveAppStatus({{"A", I(S::kUpscaling, T::kConfigUpdateStarted)}}, &msg),
            AppStatus::kDeploying);
  EXPECT_EQ(DeriveAppStatus({{"A", I(S::kDownscaling, T::kConfigUpdateStarted)}}, &msg),
            AppStatus::kDeploying);
}

TEST(AppStatusTest, DeployFailedBeatsUnhealthyAndDeploying) {
  std::string msg;
  Deps deps = {{"U", I(S::kUpdating, T::kConfigUpdateStarted)},
               {"B", I(S::kUnhealthy, T::kHealthCheckFailed)},
               {"A", I(S::kDeployFailed, T::kReplicaStartupFailed)},
               {"H", I(S::kHealthy, T::kConfigUpdateCompleted)}};
  EXPECT_EQ(DeriveAppStatus(deps, &msg), AppStatus::kDeployFailed);
  EXPECT_EQ(msg, "Failed to update the deployments ['A'].");
}

TEST(AppStatusTest, UnhealthyBeatsDeploying) {
  std::string msg;
  Deps deps = {{"U", I(S::kUpdating, T::kConfigUpdateStarted)},
               {"B", I(S::kUnhealthy, T::kHealthCheckFailed)},
               {"H", I(S::kHealthy, T::kConfigUpdateCompleted)}};
  EXPECT_EQ(DeriveAppStatus(deps, &msg), AppStatus::kUnhealthy);
  EXPECT_EQ(msg, "The deployments ['B'] are UNHEALTHY.");
}

TEST(AppStatusTest, MessagesListEveryFailingDeploymentInOrder) {
  std::string msg;
  EXPECT_EQ(DeriveAppStatus({{"A", I(S::kDeployFailed, T::kHealthCheckFailed)},
                             {"C", I(S::kDeployFailed, T::kReplicaStartupFailed)}},
                            &msg),
            AppStatus::kDeployFailed);
  EXPECT_EQ(msg, "Failed to update the deployments ['A', 'C'].");
  EXPECT_EQ(DeriveAppStatus({{"B", I(S::kUnhealthy, T::kHealthCheckFailed)},
                             {"D", I(S::kUnhealthy, T::kInternalError)}},
                            &msg),
            AppStatus::kUnhealthy);
  EXPECT_EQ(msg, "The deployments ['B', 'D'] are UNHEALTHY.");
}

TEST(AppStatusTest, NoDeploymentsIsRunning) {
  std::string msg = "stale";
  EXPECT_EQ(DeriveAppStatus({}, &msg), AppStatus::kRunning);
  EXPECT_EQ(msg, "");
}

}  // namespace
}  // namespace serve::controller
