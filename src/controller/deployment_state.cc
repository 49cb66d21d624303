#include "controller/deployment_state.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace serve::controller {

using Json = nlohmann::json;

const char* ToString(ReplicaState s, bool updating, bool migrating) {
  if (migrating && s == ReplicaState::kRunning) return "PENDING_MIGRATION";
  if (updating && s == ReplicaState::kRunning) return "UPDATING";
  switch (s) {
    case ReplicaState::kStarting: return "STARTING";
    case ReplicaState::kRecovering: return "RECOVERING";
    case ReplicaState::kRunning: return "RUNNING";
    case ReplicaState::kStopping: return "STOPPING";
  }
  return "UNKNOWN";
}

double RestartBackoffS(int consecutive_failures) {
  if (consecutive_failures <= 1) return 0;
  return std::min(kRestartBackoffCapS,
                  kRestartBackoffBaseS * std::pow(2.0, consecutive_failures - 2));
}

DeploymentStateManager::DeploymentStateManager(const ControllerContext& context, Clock& clock,
                                               Random& random, Scheduler& scheduler)
    : context_(context), clock_(clock), random_(random), scheduler_(scheduler) {}

DeploymentState* DeploymentStateManager::Find(const DeploymentId& id) {
  auto it = deployments_.find(id);
  return it == deployments_.end() ? nullptr : &it->second;
}

const DeploymentState* DeploymentStateManager::Get(const DeploymentId& id) const {
  auto it = deployments_.find(id);
  return it == deployments_.end() ? nullptr : &it->second;
}

const DeploymentState* DeploymentStateManager::OwnerOf(const std::string& replica_id) const {
  auto it = replica_index_.find(replica_id);
  return it == replica_index_.end() ? nullptr : Get(it->second);
}

bool DeploymentStateManager::Recovering() const {
  for (auto& [id, d] : deployments_) {
    for (auto& [rid, r] : d.replicas) {
      if (r.state == ReplicaState::kRecovering) return true;
    }
  }
  return false;
}

void DeploymentStateManager::SetTargetCapacity(std::optional<double> target_capacity) {
  auto level = [](std::optional<double> tc) { return tc ? *tc : 100.0; };
  if (level(target_capacity) != level(target_capacity_)) {
    capacity_scaling_up_ = level(target_capacity) > level(target_capacity_);
  }
  target_capacity_ = target_capacity;
  ++generation_;
}

int DeploymentStateManager::TargetFor(const DeploymentState& d,
                                      const DeploymentState* previous) const {
  const auto& as = d.spec.cfg.autoscaling_config;
  if (!as) return config::ApplyTargetCapacity(d.spec.cfg.num_replicas, target_capacity_);
  bool was_autoscaling = previous != nullptr && previous->autoscaling();
  bool initial_changed =
      !was_autoscaling || previous->spec.cfg.autoscaling_config->initial_replicas != as->initial_replicas;
  std::optional<int> current;
  if (previous != nullptr && !previous->deleting) current = previous->target_num_replicas;
  return autoscaler::InitialTarget(*as, current, initial_changed, target_capacity_,
                                   capacity_scaling_up_);
}

void DeploymentStateManager::ApplyApp(const std::string& app,
                                      std::map<std::string, DeploymentSpec> incoming,
                                      const std::vector<std::string>& previous) {
  ++generation_;
  for (const std::string& old : previous) {
    if (!incoming.count(old)) Delete({app, old});
  }
  for (auto& [name, spec] : incoming) {
    DeploymentId id{app, name};
    DeploymentState d;
    d.id = id;
    d.spec = std::move(spec);
    DeploymentState* cur = Find(id);
    if (cur == nullptr || cur->deleting) {
      if (cur != nullptr) {
        d.replicas = std::move(cur->replicas);  // old ones keep stopping
        d.version = cur->version + 1;
        d.config_version = cur->config_version + 1;
      } else {
        d.version = 1;
        d.config_version = 1;
      }
      d.status = {DeploymentStatus::kUpdating, StatusTrigger::kConfigUpdateStarted};
      d.target_num_replicas = TargetFor(d, nullptr);
      deployments_[id] = std::move(d);
      continue;
    }
    d.replicas = std::move(cur->replicas);
    d.status = cur->status;
    d.message = cur->message;
    d.version_started = cur->version_started;
    d.version = cur->version;
    d.config_version = cur->config_version;
    d.target_num_replicas = TargetFor(d, cur);
    if (d.autoscaling() && cur->autoscaling()) {
      d.policy = cur->policy;
      d.policy_state = cur->policy_state;
      d.policy_in_flight = cur->policy_in_flight;
    }
    Json old_cfg = config::ToJson(cur->spec.cfg), new_cfg = config::ToJson(d.spec.cfg);
    old_cfg.erase("num_replicas");
    new_cfg.erase("num_replicas");
    if (cur->spec.fingerprint != d.spec.fingerprint) {
      // Code or resources changed: new version, replicas are rolled over.
      ++d.version;
      ++d.config_version;
      d.version_started = false;
      d.status = Transition(cur->status, DeploymentEvent::kConfigUpdate);
      spdlog::info("Deployment {}:{} changed code or resources; rolling out version {}.", app,
                   name, d.version);
    } else if (old_cfg != new_cfg) {
      if (cur->spec.config_fingerprint != d.spec.config_fingerprint) ++d.config_version;
      d.status = Transition(cur->status, DeploymentEvent::kConfigUpdate);
      spdlog::info("Deployment {}:{} options updated in place.", app, name);
    } else if (cur->target_num_replicas != d.target_num_replicas) {
      d.status = Transition(cur->status, d.target_num_replicas > cur->target_num_replicas
                                             ? DeploymentEvent::kManuallyIncrease
                                             : DeploymentEvent::kManuallyDecrease);
    }
    if (d.version != cur->version || d.config_version != cur->config_version ||
        cur->target_num_replicas != d.target_num_replicas) {
      d.terminally_failed = false;
      d.startup_failures = 0;
    } else {
      d.terminally_failed = cur->terminally_failed;
      d.startup_failures = cur->startup_failures;
    }
    *cur = std::move(d);
  }
}

void DeploymentStateManager::Delete(const DeploymentId& id) {
  DeploymentState* d = Find(id);
  if (d == nullptr || d->deleting) return;
  d->deleting = true;
  d->status = Transition(d->status, DeploymentEvent::kDelete);
  ++generation_;
}

std::vector<DeploymentId> DeploymentStateManager::Step(Actions& actions) {
  std::vector<DeploymentId> gone;
  for (auto& [id, dep] : deployments_) {
    Reconcile(dep, actions);
    if (dep.deleting && dep.replicas.empty()) gone.push_back(id);
  }
  for (auto& id : gone) {
    spdlog::info("Deployment {} deleted.", id.Key());
    deployments_.erase(id);
    ++generation_;
  }
  return gone;
}

void DeploymentStateManager::Reconcile(DeploymentState& dep, Actions& actions) {
  double now = clock_.Now();
  int target = dep.deleting ? 0 : dep.target_num_replicas;
  std::vector<ReplicaInfo*> active, outdated, migrating;
  int new_running = 0;
  for (auto& [id, r] : dep.replicas) {
    if (r.state == ReplicaState::kStopping) continue;
    if (r.scheduled && scheduler_.nodes().Draining(r.node_id)) {
      // On a draining node (spec §4.6): a replica not serving yet stops at once; a serving one
      // is PENDING_MIGRATION and does not count towards the target, so its replacement starts
      // elsewhere; it stops below once enough replacements run.
      if (r.state != ReplicaState::kRunning) {
        StopReplica(dep, r, actions);
        continue;
      }
      if (!r.migrating) {
        r.migrating = true;
        ++generation_;
        spdlog::info("Replica {} of {}:{} is PENDING_MIGRATION off draining node {}.", r.id,
                     dep.id.app, dep.id.name, r.node_id);
      }
      migrating.push_back(&r);
      continue;
    }
    active.push_back(&r);
    if (r.version != dep.version) {
      outdated.push_back(&r);
    } else if (r.state == ReplicaState::kRunning) {
      ++new_running;
    }
  }
  // Rolling update (spec §4.3): at most rollout_size old replicas stop at a time; the scale-up
  // below starts their replacements.
  if (!outdated.empty() && target > 0) {
    int rollout = std::max(static_cast<int>(0.2 * target), 1);
    int pending = target - new_running - static_cast<int>(outdated.size());
    int max_to_stop = std::max(rollout - pending, 0);
    std::stable_sort(outdated.begin(), outdated.end(), [](ReplicaInfo* a, ReplicaInfo* b) {
      return a->state == ReplicaState::kStarting && b->state != ReplicaState::kStarting;
    });
    for (int i = 0; i < max_to_stop && i < static_cast<int>(outdated.size()); ++i) {
      StopReplica(dep, *outdated[i], actions);
    }
    std::erase_if(active, [](ReplicaInfo* r) { return r->state == ReplicaState::kStopping; });
  }
  int delta = target - static_cast<int>(active.size());
  if (delta > 0 && !dep.terminally_failed && now >= dep.next_start_s) {
    for (int i = 0; i < delta; ++i) StartReplica(dep);
  } else if (delta < 0) {
    // Downscale order (spec §4.1): replicas waiting for a node and outdated ones, then those
    // not serving yet, then running ones.
    std::stable_sort(active.begin(), active.end(), [&](ReplicaInfo* a, ReplicaInfo* b) {
      auto rank = [&](ReplicaInfo* r) {
        if (!r->scheduled || r->version != dep.version) return 0;  // pending or outdated
        return r->state == ReplicaState::kRunning ? 2 : 1;
      };
      return rank(a) < rank(b);
    });
    for (int i = 0; i < -delta; ++i) StopReplica(dep, *active[i], actions);
  }
  // Migrating replicas stop once enough replacements run (earliest drain deadline first), or
  // at their node's deadline less the graceful shutdown timeout.
  if (!migrating.empty()) {
    int serving = 0;
    for (ReplicaInfo* r : active) {
      serving += r->state == ReplicaState::kRunning && r->version == dep.version ? 1 : 0;
    }
    auto deadline = [&](const ReplicaInfo* r) {
      const NodeInfo* n = scheduler_.nodes().Get(r->node_id);
      return n != nullptr && n->drain_deadline_s > 0 ? n->drain_deadline_s : 1e300;
    };
    std::stable_sort(migrating.begin(), migrating.end(),
                     [&](ReplicaInfo* a, ReplicaInfo* b) { return deadline(a) < deadline(b); });
    int excess = serving + static_cast<int>(migrating.size()) - target;
    for (ReplicaInfo* r : migrating) {
      bool due = now >= deadline(r) - dep.spec.cfg.graceful_shutdown_timeout_s;
      if (excess <= 0 && !due) continue;
      --excess;
      StopReplica(dep, *r, actions);
    }
  }
  // Pending replicas asked to stop have no process: they just go.
  std::vector<std::string> dropped;
  for (auto& [id, r] : dep.replicas) {
    if (!r.scheduled && r.state == ReplicaState::kStopping) dropped.push_back(id);
  }
  for (const std::string& id : dropped) RemoveReplica(dep, id);
  ScheduleReplicas(dep, actions);
  for (auto& [id, r] : dep.replicas) {
    if (r.state == ReplicaState::kRecovering && !r.health_in_flight) {
      // Adopted after a controller restart: serving again once a health check passes.
      r.health_in_flight = true;
      r.last_health_s = now;
      actions.push_back(
          CheckHealthAction{dep.id, r.id, r.control_address, dep.spec.cfg.health_check_timeout_s});
      continue;
    }
    if (r.state != ReplicaState::kRunning) continue;
    // In-place update of reconfigurable options (user_config, max_ongoing_requests,
    // logging_config).
    if (!dep.deleting && r.version == dep.version && r.config_version != dep.config_version &&
        !r.updating) {
      r.updating = true;
      ReconfigureAction a{dep.id, r.id, r.control_address, dep.config_version, {}};
      if (dep.spec.cfg.user_config) {
        a.request.set_has_user_config(true);
        a.request.set_user_config_json(dep.spec.cfg.user_config->dump());
      }
      a.request.set_max_ongoing_requests(dep.spec.cfg.max_ongoing_requests);
      if (dep.spec.cfg.logging_config) {
        a.request.set_logging_config_json(dep.spec.cfg.logging_config->dump());
      }
      actions.push_back(std::move(a));
    }
    // Health checks (spec §4.5): period × U(0.9, 1.1) after the last one started.
    if (r.health_in_flight) continue;
    if (now - r.last_health_s < dep.spec.cfg.health_check_period_s * random_.Uniform(0.9, 1.1)) {
      continue;
    }
    r.health_in_flight = true;
    r.last_health_s = now;
    actions.push_back(
        CheckHealthAction{dep.id, r.id, r.control_address, dep.spec.cfg.health_check_timeout_s});
  }
  if (dep.deleting) return;
  int running = 0, transitional = 0;
  for (auto& [id, r] : dep.replicas) {
    if (r.state == ReplicaState::kRunning && r.version == dep.version &&
        r.config_version == dep.config_version && !r.updating) {
      ++running;
    } else {
      ++transitional;
    }
  }
  if (transitional == 0 && running == target && !dep.terminally_failed) {
    DeploymentStatusInfo next = Transition(dep.status, DeploymentEvent::kHealthy);
    if (!(next == dep.status)) {
      dep.status = next;
      dep.message.clear();
      ++generation_;
      dep.startup_failures = 0;
      spdlog::info("Deployment {}:{} is {}.", dep.id.app, dep.id.name, ToString(next.status));
    }
  }
}

void DeploymentStateManager::StartReplica(DeploymentState& dep) {
  ReplicaInfo r;
  r.id = random_.Id(8);
  r.deployment = dep.id;
  r.scheduled = false;
  r.version = dep.version;
  r.config_version = dep.config_version;
  r.start_time_s = clock_.UnixNow();
  ++generation_;
  r.last_health_s = clock_.Now();
  replica_index_[r.id] = dep.id;
  dep.replicas.Add(std::move(r));
}

void DeploymentStateManager::StopReplica(DeploymentState& dep, ReplicaInfo& r, Actions& actions) {
  bool graceful = r.state == ReplicaState::kRunning;
  r.state = ReplicaState::kStopping;
  ++generation_;
  if (r.pid == 0) return;  // not started yet; stopped once the agent answers (or never placed)
  actions.push_back(StopProcessAction{r.pid, graceful ? dep.spec.cfg.graceful_shutdown_timeout_s : 0,
                                      r.node_id});
}

void DeploymentStateManager::RemoveReplica(DeploymentState& dep, const std::string& replica_id) {
  dep.replicas.Erase(replica_id);
  scheduler_.Release(replica_id);
  dep.multiplexed_model_ids.erase(replica_id);
  replica_index_.erase(replica_id);
  ++generation_;
}

void DeploymentStateManager::BackOff(DeploymentState& dep, bool crash_loop) {
  dep.consecutive_failures = crash_loop ? dep.consecutive_failures + 1 : 1;
  double wait = RestartBackoffS(dep.consecutive_failures);
  dep.next_start_s = clock_.Now() + wait;
  if (wait > 0) {
    spdlog::warn("{}:{} failed {} times in a row; the next replica starts in {:.1f} s.",
                 dep.id.app, dep.id.name, dep.consecutive_failures, wait);
  }
}

void DeploymentStateManager::OnStartupFailure(DeploymentState& dep, const std::string& error) {
  ++dep.startup_failures;
  ++generation_;
  BackOff(dep);
  int threshold = std::min(kMaxConstructorRetries,
                           std::max(1, dep.target_num_replicas) * kMaxPerReplicaRetries);
  spdlog::error("A replica of {}:{} failed to start: {}", dep.id.app, dep.id.name, error);
  if (dep.version_started) {
    dep.message = "A replica failed to start with exception. Retrying.\n" + error;
    return;
  }
  if (dep.startup_failures >= threshold) {
    dep.terminally_failed = true;
    dep.status = Transition(dep.status, DeploymentEvent::kReplicaStartupFailed);
    dep.message = "The deployment failed to start " + std::to_string(dep.startup_failures) +
                  " times in a row. This may be due to a problem with its constructor or "
                  "initial health check failing. See controller logs for details. Error:\n" +
                  error;
  } else {
    dep.message = "A replica failed to start with exception. Retrying " +
                  std::to_string(threshold - dep.startup_failures) + " more time(s).\n" + error;
  }
}

void DeploymentStateManager::OnMultiplexedModelIds(const std::string& replica_id,
                                                   std::vector<std::string> model_ids) {
  auto idx = replica_index_.find(replica_id);
  if (idx == replica_index_.end()) return;
  DeploymentState& dep = deployments_.at(idx->second);
  const ReplicaInfo* r = dep.replicas.Find(replica_id);
  if (r == nullptr || r->state == ReplicaState::kStopping) return;
  std::sort(model_ids.begin(), model_ids.end());
  model_ids.erase(std::unique(model_ids.begin(), model_ids.end()), model_ids.end());
  auto it = dep.multiplexed_model_ids.find(replica_id);
  if (it != dep.multiplexed_model_ids.end() ? it->second == model_ids : model_ids.empty()) return;
  if (model_ids.empty()) {
    dep.multiplexed_model_ids.erase(replica_id);
  } else {
    dep.multiplexed_model_ids[replica_id] = std::move(model_ids);
  }
  ++generation_;  // routers see the new set with the next broadcast
}

void DeploymentStateManager::OnReplicaStarted(const v1::ReplicaStarted& msg) {
  auto idx = replica_index_.find(msg.replica_id());
  if (idx == replica_index_.end()) return;
  DeploymentState& dep = deployments_.at(idx->second);
  ReplicaInfo* r = dep.replicas.Find(msg.replica_id());
  if (r == nullptr || r->state != ReplicaState::kStarting || !r->scheduled) return;
  if (msg.pid() > 0) r->pid = msg.pid();  // else the agent's report stands
  r->log_file = msg.log_file_path();
  ++generation_;
  if (!msg.ok()) {
    RemoveReplica(dep, msg.replica_id());
    OnStartupFailure(dep, msg.error());
    return;
  }
  r->state = ReplicaState::kRunning;
  r->data_address = msg.data_address();
  r->control_address = msg.control_address();
  r->last_health_s = clock_.Now();
  r->running_since_s = r->last_health_s;
  if (r->version == dep.version) dep.version_started = true;
  spdlog::info("Replica {} of {}:{} is RUNNING at {}.", r->id, dep.id.app, dep.id.name,
               r->data_address);
}

void DeploymentStateManager::OnReplicaProcessStarted(const std::string& replica_id,
                                                     const std::string& node_id,
                                                     const absl::StatusOr<int>& pid,
                                                     Actions& actions) {
  auto idx = replica_index_.find(replica_id);
  if (idx == replica_index_.end()) {
    // Forgotten meanwhile (its deployment was dropped): it must not linger.
    if (pid.ok()) actions.push_back(StopProcessAction{*pid, 0, node_id});
    return;
  }
  DeploymentState& dep = deployments_.at(idx->second);
  ReplicaInfo* r = dep.replicas.Find(replica_id);
  if (r == nullptr) return;
  if (!pid.ok()) {
    RemoveReplica(dep, replica_id);
    OnStartupFailure(dep, "cannot start the replica process: " + std::string(pid.status().message()));
    return;
  }
  if (r->pid == 0) {
    r->pid = *pid;
    ++generation_;
  }
  if (r->state == ReplicaState::kStopping) actions.push_back(StopProcessAction{*pid, 0, r->node_id});
}

void DeploymentStateManager::OnReplicaExit(const std::string& replica_id, int exit_code) {
  auto idx = replica_index_.find(replica_id);
  if (idx == replica_index_.end()) return;
  DeploymentState& dep = deployments_.at(idx->second);
  ReplicaInfo* r = dep.replicas.Find(replica_id);
  if (r == nullptr) return;
  ++generation_;
  std::string how = exit_code < 0 ? "was killed by signal " + std::to_string(-exit_code)
                                  : "exited with code " + std::to_string(exit_code);
  if (r->state == ReplicaState::kStarting) {
    RemoveReplica(dep, replica_id);
    OnStartupFailure(dep, "replica process " + how + " before it was ready");
  } else if (r->state == ReplicaState::kRunning) {
    spdlog::warn("Replica {} of {}:{} {} unexpectedly; starting a replacement.", replica_id,
                 dep.id.app, dep.id.name, how);
    dep.status = Transition(dep.status, DeploymentEvent::kHealthCheckFailed);
    dep.message = "Replica " + replica_id + " " + how + " unexpectedly.";
    bool crash_loop = clock_.Now() - r->running_since_s < kStableRunS;
    RemoveReplica(dep, replica_id);
    BackOff(dep, crash_loop);
  } else {
    RemoveReplica(dep, replica_id);
  }
}

void DeploymentStateManager::OnHealthResult(const DeploymentId& id, const std::string& replica_id,
                                            const absl::Status& result, Actions& actions) {
  DeploymentState* dep = Find(id);
  if (dep == nullptr) return;
  ReplicaInfo* r = dep->replicas.Find(replica_id);
  if (r == nullptr) return;
  r->health_in_flight = false;
  std::string error(result.message());
  if (r->state == ReplicaState::kRecovering) {
    ++generation_;
    if (result.ok()) {
      r->state = ReplicaState::kRunning;
      spdlog::info("Replica {} recovered (adopted, pid {}).", replica_id, r->pid);
    } else {
      spdlog::warn("Replica {} did not answer after the controller restart ({}); replacing it.",
                   replica_id, error);
      actions.push_back(StopProcessAction{r->pid, 0, r->node_id});
      RemoveReplica(*dep, replica_id);
    }
    return;
  }
  if (result.ok()) {
    r->health_failures = 0;
    dep->consecutive_failures = 0;  // a replica survived a health period: not a crash loop
    return;
  }
  ++r->health_failures;
  spdlog::warn("Health check for replica {} failed ({} in a row): {}", replica_id,
               r->health_failures, error);
  if (r->health_failures >= kHealthFailureThreshold && r->state == ReplicaState::kRunning) {
    ++generation_;
    dep->status = Transition(dep->status, DeploymentEvent::kHealthCheckFailed);
    dep->message = "Replica " + replica_id + " failed health checks " +
                   std::to_string(r->health_failures) + " times in a row: " + error;
    StopReplica(*dep, *r, actions);
  }
}

void DeploymentStateManager::OnReconfigureResult(const DeploymentId& id,
                                                 const std::string& replica_id, int config_version,
                                                 const absl::Status& result, Actions& actions) {
  DeploymentState* dep = Find(id);
  if (dep == nullptr) return;
  ReplicaInfo* r = dep->replicas.Find(replica_id);
  if (r == nullptr) return;
  r->updating = false;
  ++generation_;
  if (result.ok()) {
    r->config_version = config_version;
    spdlog::info("Replica {} reconfigured.", replica_id);
    return;
  }
  std::string error(result.message());
  spdlog::error("Reconfiguring replica {} failed: {}; replacing it.", replica_id, error);
  dep->message = "reconfigure() failed on replica " + replica_id + ": " + error;
  StopReplica(*dep, *r, actions);
}

void DeploymentStateManager::Restore(DeploymentState state) {
  DeploymentId id = state.id;
  ResourceSet demand = DemandFromActorOptions(state.spec.cfg.ray_actor_options);
  for (auto& [rid, r] : state.replicas) {
    replica_index_[rid] = id;
    scheduler_.Reserve(rid, id.Key(), r.node_id, demand, r.gpu_ids);
  }
  ++generation_;
  deployments_[id] = std::move(state);
}

void DeploymentStateManager::Clear() {
  ++generation_;
  deployments_.clear();
  replica_index_.clear();
}

}  // namespace serve::controller
