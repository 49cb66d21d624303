// DeploymentStateManager's autoscaling: the default policy each step, and custom policies
// asked of a replica and applied when they answer (spec §6.3).

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "config/limits.h"
#include "controller/deployment_state.h"

namespace serve::controller {

using Json = nlohmann::json;

void DeploymentStateManager::Autoscale(const autoscaler::MetricsStore& metrics,
                                       Actions& actions) {
  double now = clock_.Now();
  for (auto& [id, dep] : deployments_) {
    if (dep.deleting || !dep.autoscaling() || dep.terminally_failed) continue;
    std::vector<std::string> running;
    int running_at_version = 0;
    for (auto& [rid, r] : dep.replicas) {
      if (r.state != ReplicaState::kRunning) continue;
      running.push_back(rid);
      running_at_version += r.version == dep.version ? 1 : 0;
    }
    const config::AutoscalingConfig& cfg = *dep.spec.cfg.autoscaling_config;
    autoscaler::PolicyInput in;
    in.now_s = now;
    in.running_replicas = static_cast<int>(running.size());
    in.target_replicas = dep.target_num_replicas;
    in.total_requests = metrics.TotalRequests(id.Key(), running);
    in.config = &cfg;
    in.target_capacity = target_capacity_;
    in.capacity_scaling_up = capacity_scaling_up_;
    int decision;
    if (cfg.policy.empty() || running.empty()) {
      decision = autoscaler::DefaultPolicy(in, dep.policy);  // also the cold start
    } else {
      decision = dep.policy_answer
                     ? autoscaler::ApplyCustomDecision(*dep.policy_answer, in, dep.policy)
                     : dep.target_num_replicas;
      dep.policy_answer.reset();
      if (!dep.policy_in_flight) {
        dep.policy_in_flight = true;
        actions.push_back(PolicyCall(dep, in, running.front()));
      }
    }
    if (decision == dep.target_num_replicas) continue;
    spdlog::info("Autoscaling {}:{} from {} to {} replica(s) (load {:.2f}, {} running).", id.app,
                 id.name, dep.target_num_replicas, decision, in.total_requests, running.size());
    ++generation_;
    bool upscale = decision > dep.target_num_replicas;
    dep.target_num_replicas = decision;
    // The status moves only once the deployment is not still rolling out its version.
    auto bounds = autoscaler::ScalingBounds(cfg, target_capacity_, capacity_scaling_up_);
    if (running_at_version >= bounds.lower && running_at_version <= bounds.upper) {
      dep.status = Transition(dep.status, upscale ? DeploymentEvent::kAutoscaleUp
                                                  : DeploymentEvent::kAutoscaleDown);
    }
  }
}

RunPolicyAction DeploymentStateManager::PolicyCall(const DeploymentState& dep,
                                                   const autoscaler::PolicyInput& in,
                                                   const std::string& replica_id) const {
  const config::AutoscalingConfig& cfg = *dep.spec.cfg.autoscaling_config;
  auto bounds = autoscaler::ScalingBounds(cfg, in.target_capacity, in.capacity_scaling_up);
  Json context = {{"app_name", dep.id.app},
                  {"deployment_name", dep.id.name},
                  {"current_num_replicas", in.running_replicas},
                  {"target_num_replicas", in.target_replicas},
                  {"total_num_requests", in.total_requests},
                  {"capacity_adjusted_min_replicas", bounds.lower},
                  {"capacity_adjusted_max_replicas", bounds.upper},
                  {"target_ongoing_requests", cfg.target_ongoing_requests},
                  {"policy_state", dep.policy_state}};
  RunPolicyAction a;
  a.deployment = dep.id;
  a.address = dep.replicas.Find(replica_id)->control_address;
  a.request.set_policy(cfg.policy);
  a.request.set_context_json(context.dump());
  return a;
}

void DeploymentStateManager::OnPolicyResult(const DeploymentId& id,
                                            const absl::StatusOr<v1::PolicyReply>& reply) {
  DeploymentState* dep = Find(id);
  if (dep == nullptr) return;
  dep->policy_in_flight = false;
  bool ok = reply.ok() && reply->ok();
  std::string error;
  if (!reply.ok()) {
    error = reply.status().ToString();  // never empty, unlike some transports' messages
  } else if (!reply->ok()) {
    error = reply->error().empty() ? "the policy failed without a message" : reply->error();
  }
  if (ok) {
    dep->policy_answer = reply->num_replicas();
    // Bounded like every document that enters (a deep one is dropped, as invalid JSON is).
    Json state = config::limits::ParseBoundedJson(reply->policy_state_json());
    dep->policy_state = state.is_object() ? state : Json::object();
    if (!dep->policy_error.empty()) {
      dep->message.clear();
      ++generation_;
    }
    dep->policy_error.clear();
    return;
  }
  if (error != dep->policy_error) {
    spdlog::error("The autoscaling policy of {}:{} failed: {}", id.app, id.name, error);
  }
  dep->policy_error = error;
  ++generation_;
  dep->message = "The custom autoscaling policy '" + dep->spec.cfg.autoscaling_config->policy +
                 "' failed; keeping " + std::to_string(dep->target_num_replicas) +
                 " replica(s): " + error;
}

}  // namespace serve::controller
