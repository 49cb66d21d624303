#include "controller/controller_metrics.h"

#include <mutex>
#include <set>
#include <vector>

#include "controller/instance_details.h"
#include "metrics/registry.h"

namespace serve::controller {
namespace {

using Tags = std::vector<std::string>;

metrics::GaugeFamily& LoopGauge(const char* name, const char* help) {
  // One family per name, created on first use; the map outlives every caller.
  static std::mutex mu;
  static auto* families = new std::map<std::string, std::unique_ptr<metrics::GaugeFamily>>();
  std::lock_guard lock(mu);
  auto& f = (*families)[name];
  if (!f) f = std::make_unique<metrics::GaugeFamily>(name, help, Tags{});
  return *f;
}

// Ray's ApplicationStatus proto numbers.
int StatusNumber(AppStatus s) {
  switch (s) {
    case AppStatus::kDeploying:
      return 0;
    case AppStatus::kRunning:
      return 1;
    case AppStatus::kDeployFailed:
      return 2;
    case AppStatus::kDeleting:
      return 3;
    case AppStatus::kNotStarted:
      return 5;
    case AppStatus::kUnhealthy:
      return 6;
  }
  return -1;
}

}  // namespace

void RecordControlLoop(const LoopTimes& t, int64_t num_loops) {
  if (!metrics::Enabled()) return;
  LoopGauge("serve_controller_control_loop_duration_s", "The duration of one control loop step.")
      .With({})
      .Set(t.loop_s);
  LoopGauge("serve_controller_deployment_state_update_duration_s",
            "The time the deployment state manager took in one control loop step.")
      .With({})
      .Set(t.deployment_s);
  LoopGauge("serve_controller_application_state_update_duration_s",
            "The time the application state manager took in one control loop step.")
      .With({})
      .Set(t.application_s);
  LoopGauge("serve_controller_proxy_state_update_duration_s",
            "The time the proxy state manager took in one control loop step.")
      .With({})
      .Set(t.proxy_s);
  LoopGauge("serve_controller_node_update_duration_s",
            "The time the per-node inputs (autoscaling metrics upkeep) took in one control loop "
            "step.")
      .With({})
      .Set(t.node_s);
  static auto& loops = *new metrics::GaugeFamily(
      "serve_controller_num_control_loops", "The number of control loops the controller has run.",
      {"actor_id"});
  loops.With({"controller"}).Set(static_cast<double>(num_loops));
}

void RecordControlLoopSleep(double seconds) {
  if (!metrics::Enabled()) return;
  LoopGauge("serve_controller_sleep_duration_s", "The time the controller slept between steps.")
      .With({})
      .Set(seconds);
}

void RecordLongPollTransmission(const std::string& key) {
  if (!metrics::Enabled()) return;
  static auto& f = *new metrics::CounterFamily("serve_long_poll_host_transmission_counter",
                                               "The number of long-poll updates sent, per key.",
                                               {"namespace_or_state"});
  f.With({key}).Increment();
}

void RecordStateGauges(const ApplicationStateManager& apps,
                       const DeploymentStateManager& deployments) {
  if (!metrics::Enabled()) return;
  static auto& healthy = *new metrics::GaugeFamily(
      "serve_deployment_replica_healthy",
      "Whether this deployment replica is healthy. 1 means healthy, 0 unhealthy.",
      {"deployment", "replica", "application"});
  static auto& app_status = *new metrics::GaugeFamily(
      "serve_application_status",
      "The application's status: DEPLOYING=0, RUNNING=1, DEPLOY_FAILED=2, DELETING=3, "
      "NOT_STARTED=5, UNHEALTHY=6.",
      {"application"});
  static auto& target = *new metrics::GaugeFamily(
      "serve_autoscaling_target_replicas", "The number of replicas the controller drives towards.",
      {"deployment", "application"});
  static auto& running = *new metrics::GaugeFamily(
      "serve_deployment_running_replicas", "The number of RUNNING replicas of the deployment.",
      {"deployment", "application"});
  static std::mutex mu;
  static std::set<Tags> last_replicas, last_deployments, last_apps;
  std::lock_guard lock(mu);
  std::set<Tags> replicas, deps, app_tags;
  for (const auto& [id, d] : deployments.deployments()) {
    int n_running = 0;
    for (const auto& [rid, r] : d.replicas) {
      bool ok = r.state == ReplicaState::kRunning && r.health_failures == 0;
      n_running += r.state == ReplicaState::kRunning ? 1 : 0;
      Tags tags = {id.name, rid, id.app};
      healthy.With(tags).Set(ok ? 1 : 0);
      replicas.insert(std::move(tags));
    }
    Tags dt = {id.name, id.app};
    target.With(dt).Set(d.target_num_replicas);
    running.With(dt).Set(n_running);
    deps.insert(std::move(dt));
  }
  for (const auto& [name, app] : apps.apps()) {
    std::string message;
    app_status.With({name}).Set(StatusNumber(ApplicationStatus(app, deployments, &message)));
    app_tags.insert({name});
  }
  for (const auto& t : last_replicas) {
    if (!replicas.count(t)) healthy.Remove(t);
  }
  for (const auto& t : last_deployments) {
    if (!deps.count(t)) {
      target.Remove(t);
      running.Remove(t);
    }
  }
  for (const auto& t : last_apps) {
    if (!app_tags.count(t)) app_status.Remove(t);
  }
  last_replicas = std::move(replicas);
  last_deployments = std::move(deps);
  last_apps = std::move(app_tags);
}

}  // namespace serve::controller
