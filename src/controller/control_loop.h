#pragma once

// The controller's core: the managers, the long-poll host, the autoscaling metrics and the
// executor, stepped by one loop (spec §1 "Control-loop step"). Thread-safe: gRPC and REST
// threads call the commands and reports; one thread runs Run(). Managers decide under the
// lock; actions are performed after it is released.

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <vector>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autoscaler/metrics_store.h"
#include "controller/application_state.h"
#include "controller/clients.h"
#include "controller/clock.h"
#include "controller/context.h"
#include "controller/deployment_state.h"
#include "controller/executor.h"
#include "controller/long_poll_host.h"
#include "controller/node_state.h"
#include "controller/scheduler.h"
#include "controller/proxy_state.h"
#include "controller/rest_api.h"
#include "controller/storage/kv_store.h"
#include "serve/v1/controller.pb.h"

namespace serve::controller {

class ControlLoop final : public ControllerApi, private ActionResults {
 public:
  ControlLoop(ControllerOptions options, Clock& clock, Random& random, AgentClient& agent,
              ReplicaClient& replicas, KvStore& kv);

  /// Makes the agent client of a worker node from its address.
  using AgentFactory = std::function<std::unique_ptr<AgentClient>(const std::string& address)>;

  /// Set by the composition root before Recover().
  void set_address(std::string address);
  void set_agent_factory(AgentFactory factory);
  void set_log_file(std::string log_file);

  /// Loads the checkpoint: its worker nodes rejoin at once, and its state is reconciled with
  /// the processes each node's agent reports (see RestoreCheckpoint); stops unknown replica
  /// processes. The first Step starts the proxies that are not alive. A corrupt checkpoint is set aside as '<key>-corrupt' and the state starts empty.
  void Recover();
  /// One step: autoscaling → deployments → applications → long poll → checkpoint (written
  /// before acting) → the actions decided since the last step.
  void Step();
  /// Steps every control_loop_interval_s (at once when an event arrives) until `stop`, then
  /// answers the waiting listeners.
  void Run(const std::atomic<bool>& stop);
  /// Every application was deleted after Shutdown() and the node is being stopped.
  bool finished();

  // Commands.
  absl::Status Deploy(const config::ServeDeployConfig& cfg, const std::string& source,
                      const std::string& app_dir);
  absl::Status DeleteApplication(const std::string& name);
  /// Deletes everything, then stops the proxies and the node.
  void Shutdown();
  /// Long poll: `reply` runs once, now or later (spec §7).
  void Listen(std::map<std::string, int64_t> keys, LongPollHost::Reply reply);
  absl::StatusOr<v1::ReplicaSpec> GetReplicaSpec(const std::string& replica_id);

  // Reports from processes.
  void OnReplicaStarted(const v1::ReplicaStarted& msg);
  void OnBuildResult(const v1::BuildResult& msg);
  void OnProcessExit(const v1::ProcessExit& msg);
  void OnProxyReady(const v1::ProxyReady& msg);
  void RecordHandleMetrics(const v1::HandleMetricsBatch& batch);
  void RecordReplicaMetrics(const v1::ReplicaMetricsReport& report);
  /// A replica's multiplexed models; published with the next step.
  void RecordMultiplexedModelIds(const v1::MultiplexedModelIds& msg);
  /// A worker node joins (or re-joins after a controller restart). FAILED_PRECONDITION for an
  /// id declared DEAD, INVALID_ARGUMENT for a missing id or address.
  absl::Status RegisterNode(const v1::RegisterNodeRequest& req);
  /// NOT_FOUND: unknown node (register again); FAILED_PRECONDITION: declared DEAD (or drained).
  absl::Status NodeHeartbeat(const std::string& node_id);
  /// Drains `node_id` (`serve drain-node`, or SIGTERM to its agent): its replicas move to other
  /// nodes (PENDING_MIGRATION until replacements run, or until `deadline_s` from now when > 0),
  /// its proxy drains, then the node is DEAD ("drained") and its agent stops. See
  /// NodeTable::Drain for the errors.
  absl::Status DrainNode(const std::string& node_id, double deadline_s) override;

  // ControllerApi (REST).
  nlohmann::json Details(const std::string& api_type) override;
  absl::Status ApplyConfig(const config::ServeDeployConfig& config) override;
  void DeleteAllApplications() override;
  std::string SessionName() override;

  /// For tests and benchmarks: the managers, read under no lock (single-threaded use only).
  const DeploymentStateManager& deployments() const { return deployments_; }
  const ApplicationStateManager& applications() const { return apps_; }
  const LongPollHost& long_poll() const { return long_poll_; }
  const NodeTable& nodes() const { return nodes_; }
  const ProxyStateManager& proxies() const { return proxies_; }

 private:
  /// The controller's own log follows the top-level logging_config (level, encoding,
  /// logs_dir). Called with mu_ held.
  void ApplyControllerLogging();

  // ActionResults.
  void OnReplicaProcessStarted(const std::string& replica_id, const std::string& node_id,
                               const absl::StatusOr<int>& pid) override;
  void OnBuildProcessStarted(const std::string& app, const std::string& build_id,
                             const absl::StatusOr<int>& pid) override;
  void OnProxyProcessStarted(const std::string& node_id, const absl::StatusOr<int>& pid) override;
  void OnHealthResult(const DeploymentId& deployment, const std::string& replica_id,
                      const absl::Status& result) override;
  void OnReconfigureResult(const DeploymentId& deployment, const std::string& replica_id,
                           int config_version, const absl::Status& result) override;
  void OnPolicyResult(const DeploymentId& deployment,
                      const absl::StatusOr<v1::PolicyReply>& reply) override;

  /// Writes the checkpoint when it changed since the last successful write; a failed write
  /// (e.g. Redis down) is retried next step. Loop thread only.
  void CheckpointIfChanged(const std::string& blob);

  ControllerContext context_;
  Clock& clock_;
  Random& random_;
  AgentClient& agent_;
  KvStore& kv_;
  int64_t num_loops_ = 0;  // steps run (loop thread only)

  /// The agent of `node_id` ("" or the head's id: the head agent); nullptr when not alive.
  AgentClient* AgentFor(const std::string& node_id);
  /// Node id -> IP of the nodes that should run a proxy (spec §8.1): none when Disabled; the
  /// head; with EveryNode also every ALIVE node holding a replica. Called with mu_ held.
  std::map<std::string, std::string> ProxyTargets() const;
  /// Draining nodes with no replica, reservation or proxy left become DEAD ("drained").
  void FinishDrains();
  /// A node that died or left: drops its proxy record and retires its agent client.
  void ForgetNode(const std::string& node_id);

  std::mutex mu_;
  std::condition_variable cv_;
  NodeTable nodes_;
  Scheduler scheduler_;
  DeploymentStateManager deployments_;
  ApplicationStateManager apps_;
  ProxyStateManager proxies_;
  LongPollHost long_poll_;
  autoscaler::MetricsStore metrics_;
  Actions pending_;  ///< decided by event handlers, performed at the next step
  bool shutting_down_ = false;
  bool finished_ = false;
  /// Counts commands and reports that may change applications or proxies (the deployment
  /// manager keeps its own generation); Step re-encodes when either moved.
  uint64_t events_ = 0;
  uint64_t encoded_events_ = ~uint64_t{0};
  uint64_t encoded_generation_ = ~uint64_t{0};

  // Worker nodes' agent clients, read by the executor outside mu_. Clients of dead nodes are
  // kept (callbacks may still be in flight) but no longer resolved.
  std::mutex agents_mu_;
  AgentFactory agent_factory_;
  std::map<std::string, std::unique_ptr<AgentClient>> worker_agents_;  ///< alive nodes
  std::vector<std::unique_ptr<AgentClient>> retired_agents_;

  ActionExecutor executor_;
  std::string encoded_checkpoint_;   // loop thread only: the newest encoding
  std::string last_checkpoint_;      // loop thread only: the last one written
  bool checkpoint_failing_ = false;  // loop thread only
};

}  // namespace serve::controller
