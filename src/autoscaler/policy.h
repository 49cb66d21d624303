#pragma once

// The autoscaling decision (spec §6.3) as pure functions: no clocks, no I/O. The controller
// passes its own monotonic time in and keeps one PolicyState per autoscaling deployment.

#include <functional>
#include <optional>

#include "config/deployment_config.h"

namespace serve::autoscaler {

/// What one decision sees. `config` is not owned and must be non-null for a decision.
struct PolicyInput {
  double now_s = 0;           ///< a monotonic time in seconds (the controller's clock)
  int running_replicas = 0;   ///< R: replicas RUNNING (any version)
  int target_replicas = 0;    ///< T: the current target
  double total_requests = 0;  ///< total load, spec §6.2
  const config::AutoscalingConfig* config = nullptr;
  std::optional<double> target_capacity;  ///< percent; nullopt = 100
  bool capacity_scaling_up = false;       ///< target_capacity direction is UP
};

/// Per-deployment memory of the default policy: the delay "counter", kept as a direction and
/// the time it started, so delays are in seconds however often the loop runs.
struct PolicyState {
  int direction = 0;   ///< +1: wanting more than T; -1: wanting fewer; 0: neither
  double since_s = 0;  ///< when `direction` began
};

/// Inclusive replica-count bounds.
struct Bounds {
  int lower = 0;
  int upper = 0;
};

/// lower = capacity-adjusted initial_replicas when `capacity_scaling_up` and initial_replicas
/// is set, else capacity-adjusted min_replicas; upper = capacity-adjusted max_replicas.
Bounds ScalingBounds(const config::AutoscalingConfig& c, std::optional<double> target_capacity,
                     bool capacity_scaling_up);

/// `n` clamped to `b`.
int ApplyBounds(int n, const Bounds& b);

/// Target at registration (first deploy, or a config change): initial_replicas when set and
/// `first_or_initial_changed`, else `current_target` (0 when none); clamped to ScalingBounds.
int InitialTarget(const config::AutoscalingConfig& c, std::optional<int> current_target,
                  bool first_or_initial_changed, std::optional<double> target_capacity,
                  bool capacity_scaling_up);

/// The default policy (spec §6.3). Returns the new target, always within ScalingBounds, and
/// updates `state`.
/// - Cold start (R == 0): load > 0 gives max(ceil(upscaling factor), T) at once, else T; no
///   delay applies and `state` is reset.
/// - Otherwise desired = total / target_ongoing_requests; scaled = ceil(R + f * (desired - R))
///   with f the upscaling factor when desired > R, else the downscaling factor; when
///   ceil(desired) < R and scaled == R, scaled is R - 1; then clamped to ScalingBounds.
/// - Delays: a clamped value above T is applied once it has been wanted (direction +1) for
///   upscale_delay_s; below T once wanted (direction -1) for downscale_delay_s, or
///   downscale_to_zero_delay_s when set and T == 1. A downscale from T > 1 stops at 1 (zero
///   only from 1). Equal to T resets the state; applying a change resets it too.
int DefaultPolicy(const PolicyInput& in, PolicyState& state);

/// The library's wrapper around a custom policy's answer `wanted` (R > 0): clamped to
/// ScalingBounds, then subject to the same delays as DefaultPolicy. Returns the new target.
int ApplyCustomDecision(int wanted, const PolicyInput& in, PolicyState& state);

/// A custom policy: same contract as DefaultPolicy.
using PolicyFn = std::function<int(const PolicyInput&, PolicyState&)>;

}  // namespace serve::autoscaler
