#pragma once

// The controller's metrics (spec §10, controller and autoscaling; docs/metrics.md). Every
// function records nothing when metrics are disabled. Thread-safe.

#include <string>

#include "controller/application_state.h"
#include "controller/deployment_state.h"

namespace serve::controller {

/// Durations of one control-loop step and its parts, in seconds.
struct LoopTimes {
  double loop_s = 0;
  double deployment_s = 0;
  double application_s = 0;
  double proxy_s = 0;
  double node_s = 0;  ///< autoscaling metrics upkeep (the per-node inputs of the step)
};
void RecordControlLoop(const LoopTimes& times, int64_t num_loops);
void RecordControlLoopSleep(double seconds);

/// One long-poll update of `key` sent to a listener.
void RecordLongPollTransmission(const std::string& key);

/// Replica health, application status and autoscaling gauges from the managers' state; series
/// of replicas, deployments and applications that are gone are removed.
void RecordStateGauges(const ApplicationStateManager& apps,
                       const DeploymentStateManager& deployments);

}  // namespace serve::controller
