#pragma once

// Deployments and their replicas (spec §4): versions, rolling updates, scaling, health checks,
// the start-up failure threshold and statuses. Decides only: every remote effect is returned
// as an Action. Not thread-safe; the control loop serializes calls.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autoscaler/metrics_store.h"
#include "autoscaler/policy.h"
#include "common/ids.h"
#include "config/deployment_config.h"
#include "controller/actions.h"
#include "controller/clock.h"
#include "controller/context.h"
#include "controller/replica_state.h"
#include "controller/scheduler.h"
#include "controller/status.h"
#include "serve/v1/controller.pb.h"

namespace serve::controller {

inline constexpr int kHealthFailureThreshold = 3;
inline constexpr int kMaxConstructorRetries = 20;
inline constexpr int kMaxPerReplicaRetries = 3;
/// Replacement backoff: the first replacement after a failure starts at once, later ones wait
/// kRestartBackoffBaseS × 2^(n−2) (n consecutive failures), at most kRestartBackoffCapS.
inline constexpr double kRestartBackoffBaseS = 0.5;
inline constexpr double kRestartBackoffCapS = 30;
/// A replica that dies after running this long is not part of a crash loop: its replacement
/// starts at once.
inline constexpr double kStableRunS = 1;

/// Seconds to wait before starting a replacement after `consecutive_failures` failures.
double RestartBackoffS(int consecutive_failures);

/// What an application's build says about one deployment.
struct DeploymentSpec {
  config::DeploymentConfig cfg;
  std::string factory_key;
  std::string init_args;  ///< msgpack
  std::string library_path;
  std::string app_dir;
  std::string working_dir;                 ///< replica cwd (runtime_env working_dir)
  std::map<std::string, std::string> env;  ///< runtime_env env_vars
  std::string fingerprint;         ///< what forces a restart when it changes
  std::string config_fingerprint;  ///< what needs a reconfigure() call on running replicas
  bool ingress = false;
};

struct DeploymentState {
  DeploymentId id;
  DeploymentSpec spec;
  int version = 0;
  int config_version = 0;
  bool deleting = false;
  DeploymentStatusInfo status;
  std::string message;
  int startup_failures = 0;
  bool version_started = false;  ///< a replica of the current version reached RUNNING
  bool terminally_failed = false;
  int target_num_replicas = 0;    ///< what reconciliation drives towards (0 while deleting)
  /// Start-up failures and unexpected deaths since a replica last passed a health check, and
  /// the earliest time a replacement may start (restart backoff).
  int consecutive_failures = 0;
  double next_start_s = 0;
  autoscaler::PolicyState policy;  ///< the autoscaling policy's memory (delays)
  // A custom policy (autoscaling_config.policy) runs in a replica: at most one call in flight;
  // its latest answer is applied at the next step.
  bool policy_in_flight = false;
  std::optional<int> policy_answer;
  nlohmann::json policy_state = nlohmann::json::object();  ///< the user policy's own state
  std::string policy_error;
  ReplicaStateContainer replicas;
  /// Replica id -> the multiplexed models it reported loaded or loading, sorted (spec §9.2).
  /// Published with the replica set; not checkpointed (replicas report again on change).
  std::map<std::string, std::vector<std::string>> multiplexed_model_ids;
  /// Replicas waiting for a node with room (their message is dep.message while > 0).
  int unschedulable = 0;

  bool autoscaling() const { return spec.cfg.autoscaling_config.has_value(); }
};

class DeploymentStateManager {
 public:
  DeploymentStateManager(const ControllerContext& context, Clock& clock, Random& random,
                         Scheduler& scheduler);

  /// Deploys `incoming` as the deployments of `app`: new ones start, changed ones roll (code)
  /// or update in place (options), and those of `previous` no longer present are deleted.
  void ApplyApp(const std::string& app, std::map<std::string, DeploymentSpec> incoming,
                const std::vector<std::string>& previous);
  void Delete(const DeploymentId& id);

  /// target_capacity of the declarative config (percent; nullopt = 100) and its direction.
  void SetTargetCapacity(std::optional<double> target_capacity);
  std::optional<double> target_capacity() const { return target_capacity_; }

  /// Runs the autoscaling policy of every autoscaling deployment against `metrics`; custom
  /// policies are asked for through RunPolicyAction and their answers applied next time.
  void Autoscale(const autoscaler::MetricsStore& metrics, Actions& actions);
  /// Reconciles every deployment towards its target; drops deleted ones once empty. Returns
  /// the ids dropped.
  std::vector<DeploymentId> Step(Actions& actions);

  // Events.
  void OnReplicaStarted(const v1::ReplicaStarted& msg);
  void OnReplicaProcessStarted(const std::string& replica_id, const std::string& node_id,
                               const absl::StatusOr<int>& pid, Actions& actions);
  /// A replica process exited (`exit_code` < 0: killed by that signal).
  void OnReplicaExit(const std::string& replica_id, int exit_code);
  void OnHealthResult(const DeploymentId& id, const std::string& replica_id,
                      const absl::Status& result, Actions& actions);
  void OnReconfigureResult(const DeploymentId& id, const std::string& replica_id,
                           int config_version, const absl::Status& result, Actions& actions);
  void OnPolicyResult(const DeploymentId& id, const absl::StatusOr<v1::PolicyReply>& reply);
  /// A replica's multiplexed models (loaded and loading); ignored for unknown or stopping
  /// replicas.
  void OnMultiplexedModelIds(const std::string& replica_id, std::vector<std::string> model_ids);
  /// `node_id` died: its replicas are gone (no process to stop) and are replaced elsewhere.
  void OnNodeDead(const std::string& node_id);

  // Queries.
  const std::map<DeploymentId, DeploymentState>& deployments() const { return deployments_; }
  const DeploymentState* Get(const DeploymentId& id) const;
  /// The deployment owning `replica_id`, or nullptr.
  const DeploymentState* OwnerOf(const std::string& replica_id) const;
  /// Some adopted replica is still RECOVERING (long-poll listeners wait meanwhile).
  bool Recovering() const;
  /// Changes whenever anything checkpointed or published changes (not health-check timing,
  /// in-flight flags or backoff), so a step with nothing new can skip re-encoding.
  uint64_t generation() const { return generation_; }

  // Recovery.
  /// Inserts a restored deployment and indexes its replicas.
  void Restore(DeploymentState state);
  void Clear();

 private:
  DeploymentState* Find(const DeploymentId& id);
  int TargetFor(const DeploymentState& d, const DeploymentState* previous) const;
  RunPolicyAction PolicyCall(const DeploymentState& dep, const autoscaler::PolicyInput& in,
                             const std::string& replica_id) const;
  void Reconcile(DeploymentState& dep, Actions& actions);
  void StartReplica(DeploymentState& dep);
  /// Places the replicas waiting for a node and starts their processes; sets or clears the
  /// deployment's unschedulable message.
  void ScheduleReplicas(DeploymentState& dep, Actions& actions);
  void LaunchReplica(DeploymentState& dep, ReplicaInfo& r, Actions& actions);
  void StopReplica(DeploymentState& dep, ReplicaInfo& r, Actions& actions);
  void RemoveReplica(DeploymentState& dep, const std::string& replica_id);
  void OnStartupFailure(DeploymentState& dep, const std::string& error);
  /// Counts a failure and pushes back the next replacement start; `crash_loop` false starts
  /// the count again (the failed replica had been running stably).
  void BackOff(DeploymentState& dep, bool crash_loop = true);

  const ControllerContext& context_;
  Clock& clock_;
  Random& random_;
  Scheduler& scheduler_;
  std::optional<double> target_capacity_;
  bool capacity_scaling_up_ = false;
  std::map<DeploymentId, DeploymentState> deployments_;
  std::map<std::string, DeploymentId> replica_index_;  ///< replica id -> deployment
  uint64_t generation_ = 0;
};

}  // namespace serve::controller
