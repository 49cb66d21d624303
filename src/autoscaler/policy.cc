#include "autoscaler/policy.h"

#include <algorithm>
#include <cmath>

namespace serve::autoscaler {

Bounds ScalingBounds(const config::AutoscalingConfig& c, std::optional<double> target_capacity,
                     bool capacity_scaling_up) {
  int lower_base = capacity_scaling_up && c.initial_replicas ? *c.initial_replicas : c.min_replicas;
  return Bounds{config::ApplyTargetCapacity(lower_base, target_capacity),
                config::ApplyTargetCapacity(c.max_replicas, target_capacity)};
}

int ApplyBounds(int n, const Bounds& b) { return std::max(b.lower, std::min(b.upper, n)); }

int InitialTarget(const config::AutoscalingConfig& c, std::optional<int> current_target,
                  bool first_or_initial_changed, std::optional<double> target_capacity,
                  bool capacity_scaling_up) {
  int target = first_or_initial_changed && c.initial_replicas ? *c.initial_replicas
                                                              : current_target.value_or(0);
  return ApplyBounds(target, ScalingBounds(c, target_capacity, capacity_scaling_up));
}

namespace {

/// Desired count after the scaling factors, before bounds.
int ApplyFactors(double desired, int running, const config::AutoscalingConfig& c) {
  double delta = desired - running;
  double factor = delta > 0 ? c.UpscalingFactor() : c.DownscalingFactor();
  // Kept well inside int range; bounds clamp it further.
  int scaled = static_cast<int>(std::clamp(std::ceil(running + factor * delta), -1e9, 1e9));
  // A small downscaling factor must not leave the count stuck at R.
  if (std::ceil(desired) < running && scaled == running) --scaled;
  return scaled;
}

/// Applies `wanted` only once it has been wanted in the same direction for the delay.
int ApplyDelay(int wanted, const PolicyInput& in, PolicyState& state) {
  const config::AutoscalingConfig& c = *in.config;
  const int target = in.target_replicas;
  int direction = wanted > target ? 1 : wanted < target ? -1 : 0;
  if (direction == 0) {
    state = PolicyState{};
    return target;
  }
  if (state.direction != direction) state = PolicyState{direction, in.now_s};
  double delay_s = c.upscale_delay_s;
  if (direction < 0) {
    if (target == 1 && c.downscale_to_zero_delay_s) {
      delay_s = *c.downscale_to_zero_delay_s;
    } else {
      delay_s = c.downscale_delay_s;
    }
    // Only 1 -> 0 reaches zero; larger targets stop at 1 first.
    if (target != 1) wanted = std::max(1, wanted);
  }
  if (in.now_s - state.since_s >= delay_s) {
    state = PolicyState{};
    return wanted;
  }
  return target;
}

}  // namespace

int DefaultPolicy(const PolicyInput& in, PolicyState& state) {
  if (in.config == nullptr) return in.target_replicas;
  const config::AutoscalingConfig& c = *in.config;
  const Bounds bounds = ScalingBounds(c, in.target_capacity, in.capacity_scaling_up);
  const int running = in.running_replicas;
  const int target = in.target_replicas;

  if (running <= 0) {
    state = PolicyState{};
    int decision = target;
    if (in.total_requests > 0) {
      decision = std::max(static_cast<int>(std::ceil(1 * c.UpscalingFactor())), target);
    }
    return ApplyBounds(decision, bounds);
  }

  double desired = in.total_requests / c.target_ongoing_requests;
  if (!(desired >= 0)) desired = 0;  // negative or NaN load counts as none
  int wanted = ApplyBounds(ApplyFactors(desired, running, c), bounds);
  return ApplyBounds(ApplyDelay(wanted, in, state), bounds);
}

int ApplyCustomDecision(int wanted, const PolicyInput& in, PolicyState& state) {
  if (in.config == nullptr) return in.target_replicas;
  const Bounds bounds = ScalingBounds(*in.config, in.target_capacity, in.capacity_scaling_up);
  return ApplyBounds(ApplyDelay(ApplyBounds(wanted, bounds), in, state), bounds);
}

}  // namespace serve::autoscaler
