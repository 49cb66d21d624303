#include <serve/autoscaling.h>

#include <map>
#include <mutex>
#include <stdexcept>

#include "sdk/policy_registry.h"

namespace serve {
namespace {

std::mutex& Mu() {
  static std::mutex mu;
  return mu;
}
std::map<std::string, AutoscalingPolicy>& Policies() {
  static std::map<std::string, AutoscalingPolicy> policies;
  return policies;
}

}  // namespace

bool RegisterAutoscalingPolicy(const std::string& name, AutoscalingPolicy policy) {
  std::lock_guard lock(Mu());
  Policies()[name] = std::move(policy);
  return true;
}

void to_json(Json& j, const AutoscalingContext& c) {
  j = {{"app_name", c.app_name},
       {"deployment_name", c.deployment_name},
       {"current_num_replicas", c.current_num_replicas},
       {"target_num_replicas", c.target_num_replicas},
       {"total_num_requests", c.total_num_requests},
       {"capacity_adjusted_min_replicas", c.capacity_adjusted_min_replicas},
       {"capacity_adjusted_max_replicas", c.capacity_adjusted_max_replicas},
       {"target_ongoing_requests", c.target_ongoing_requests},
       {"policy_state", c.policy_state}};
}

void from_json(const Json& j, AutoscalingContext& c) {
  c.app_name = j.value("app_name", "");
  c.deployment_name = j.value("deployment_name", "");
  c.current_num_replicas = j.value("current_num_replicas", 0);
  c.target_num_replicas = j.value("target_num_replicas", 0);
  c.total_num_requests = j.value("total_num_requests", 0.0);
  c.capacity_adjusted_min_replicas = j.value("capacity_adjusted_min_replicas", 0);
  c.capacity_adjusted_max_replicas = j.value("capacity_adjusted_max_replicas", 0);
  c.target_ongoing_requests = j.value("target_ongoing_requests", 0.0);
  c.policy_state = j.value("policy_state", Json::object());
}

namespace sdk {

AutoscalingDecision RunAutoscalingPolicy(const std::string& policy,
                                         const AutoscalingContext& context) {
  // "module:function" names the function; the module is the library already loaded.
  std::string name = policy.substr(policy.rfind(':') + 1);
  AutoscalingPolicy fn;
  {
    std::lock_guard lock(Mu());
    auto it = Policies().find(name);
    if (it == Policies().end()) {
      std::string known;
      for (auto& [n, p] : Policies()) known += (known.empty() ? "" : ", ") + n;
      throw std::invalid_argument("no autoscaling policy named '" + name +
                                  "' is registered by the application (registered: " +
                                  (known.empty() ? "none" : known) +
                                  "); use SERVE_AUTOSCALING_POLICY(" + name + ")");
    }
    fn = it->second;
  }
  return fn(context);
}

}  // namespace sdk
}  // namespace serve
