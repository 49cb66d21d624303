#pragma once

// Custom autoscaling policies (Ray Serve's `autoscaling_config.policy`).
//
//   serve::AutoscalingDecision scale_by_queue(const serve::AutoscalingContext& ctx) {
//     return {static_cast<int>(std::ceil(ctx.total_num_requests / 4))};
//   }
//   SERVE_AUTOSCALING_POLICY(scale_by_queue);
//
// and in the deployment's options or config file: `autoscaling_config: {policy: scale_by_queue,
// min_replicas: 1, max_replicas: 8}` ("module:scale_by_queue" also works).
//
// Where it runs: inside a RUNNING replica of the deployment (user code never runs in the
// controller), on the replica's control thread, at most once per control-loop step and never
// twice at once for one deployment. With no replica running, the built-in cold start applies
// (any queued request brings up one replica). The answer is clamped to min/max_replicas
// (capacity-adjusted) and subject to upscale_delay_s / downscale_delay_s, as for the default
// policy. A policy that throws keeps the current target; the error shows in the deployment's
// status message.

#include <functional>
#include <string>

#include <serve/json.h>
#include <serve/version.h>

namespace serve {

/// What a policy sees (Ray's AutoscalingContext).
struct AutoscalingContext {
  std::string app_name;
  std::string deployment_name;
  int current_num_replicas = 0;   ///< RUNNING replicas
  int target_num_replicas = 0;    ///< the current target
  double total_num_requests = 0;  ///< queued + ongoing, averaged over look_back_period_s
  int capacity_adjusted_min_replicas = 0;
  int capacity_adjusted_max_replicas = 0;
  double target_ongoing_requests = 0;
  Json policy_state = Json::object();  ///< what this policy returned last time
};

struct AutoscalingDecision {
  int num_replicas = 0;
  Json policy_state = Json::object();  ///< handed back in the next context
};

using AutoscalingPolicy = std::function<AutoscalingDecision(const AutoscalingContext&)>;

/// Registers `policy` under `name` in this process (done by SERVE_AUTOSCALING_POLICY when the
/// application library loads). Returns true.
SERVE_EXPORT bool RegisterAutoscalingPolicy(const std::string& name, AutoscalingPolicy policy);

SERVE_EXPORT void to_json(Json& j, const AutoscalingContext& c);
SERVE_EXPORT void from_json(const Json& j, AutoscalingContext& c);

}  // namespace serve

/// Registers the function `fn` as the autoscaling policy named "fn".
#define SERVE_AUTOSCALING_POLICY(fn)                              \
  [[maybe_unused]] static const bool serve_autoscaling_policy_##fn = \
      ::serve::RegisterAutoscalingPolicy(#fn, fn)
