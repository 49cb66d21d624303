#pragma once

// Host side of custom autoscaling policies: replicas run them on the controller's behalf.

#include <string>

#include <serve/autoscaling.h>

namespace serve::sdk {

/// Runs the policy registered as `policy` ("name" or "module:name"). Throws
/// std::invalid_argument when none is registered, and whatever the policy throws.
SERVE_EXPORT AutoscalingDecision RunAutoscalingPolicy(const std::string& policy,
                                                      const AutoscalingContext& context);

}  // namespace serve::sdk
