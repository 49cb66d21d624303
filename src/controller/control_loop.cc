#include "controller/control_loop.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>
#include <variant>

#include <spdlog/spdlog.h>

#include "common/ids.h"
#include "common/logging.h"
#include "common/util.h"
#include "controller/checkpoint.h"
#include "controller/controller_metrics.h"
#include "controller/endpoint_state.h"
#include "controller/instance_details.h"

namespace serve::controller {

ControlLoop::ControlLoop(ControllerOptions options, Clock& clock, Random& random,
                         AgentClient& agent, ReplicaClient& replicas, KvStore& kv)
    : context_{std::move(options), "", ""},
      clock_(clock),
      random_(random),
      agent_(agent),
      kv_(kv),
      scheduler_(nodes_),
      deployments_(context_, clock, random, scheduler_),
      apps_(context_, clock, random, deployments_),
      proxies_(context_, clock),
      long_poll_([&random] { return static_cast<int64_t>(random.Uniform(1, 1000001)); }),
      executor_([this](const std::string& node) { return AgentFor(node); }, replicas, *this) {
  NodeInfo head;
  head.id = context_.options.node_id;
  head.ip = LocalNodeIp();
  head.agent_address = context_.options.agent_address;
  head.head = true;
  head.registered_unix_s = clock_.UnixNow();
  head.last_heartbeat_s = clock_.Now();
  nlohmann::json res = nlohmann::json::parse(context_.options.head_resources_json, nullptr, false);
  if (res.is_object()) {
    for (auto& [k, v] : res.items()) {
      if (v.is_number()) head.resources[k] = v.get<double>();
    }
  } else {
    head.unlimited = true;
  }
  nodes_.Register(std::move(head));
}

void ControlLoop::set_address(std::string address) { context_.address = std::move(address); }
void ControlLoop::set_agent_factory(AgentFactory factory) {
  std::lock_guard lock(agents_mu_);
  agent_factory_ = std::move(factory);
}

AgentClient* ControlLoop::AgentFor(const std::string& node_id) {
  if (node_id.empty() || node_id == context_.options.node_id) return &agent_;
  std::lock_guard lock(agents_mu_);
  auto it = worker_agents_.find(node_id);
  return it == worker_agents_.end() ? nullptr : it->second.get();
}

void ControlLoop::set_log_file(std::string log_file) { context_.log_file = std::move(log_file); }

void ControlLoop::Recover() {
  auto blob = kv_.Get(kCheckpointKey);
  std::lock_guard lock(mu_);
  ++events_;
  if (!blob.ok()) {
    if (blob.status().code() != absl::StatusCode::kNotFound) {
      spdlog::error("Cannot read the checkpoint: {}; starting with an empty state.",
                    std::string(blob.status().message()));
    }
    return;  // the first step starts the proxies
  }
  // The processes of every node: this one's agent, and the worker nodes of the checkpoint,
  // which are known again at once (a new head on the same store takes the workers back; they
  // keep their replicas and heartbeat to it as they did to the old one).
  std::map<std::string, NodeProcesses> alive;
  auto list = [&](const std::string& node_id, AgentClient& agent) {
    auto listed = agent.ListProcesses();
    NodeProcesses& np = alive[node_id];
    np.listed = listed.ok();
    if (listed.ok()) {
      np.processes = *listed;
    } else {
      spdlog::error("Cannot list the processes of node {}: {}", node_id,
                    std::string(listed.status().message()));
    }
  };
  list(context_.options.node_id, agent_);
  try {
    for (NodeInfo& n : CheckpointedNodes(*blob)) {
      n.last_heartbeat_s = clock_.Now();
      std::string id = n.id;
      if (!nodes_.Register(std::move(n))) continue;
      {
        std::lock_guard agents_lock(agents_mu_);
        if (agent_factory_) worker_agents_[id] = agent_factory_(nodes_.Get(id)->agent_address);
      }
      if (AgentClient* a = AgentFor(id); a != nullptr && a != &agent_) list(id, *a);
      spdlog::info("Node {} ({}) restored from the checkpoint.", id, nodes_.IpOf(id));
    }
    RestoreCheckpoint(*blob, context_.options.node_id, alive, apps_, deployments_, proxies_,
                      pending_);
    ApplyControllerLogging();
  } catch (const std::exception& e) {
    spdlog::error("The checkpoint is corrupt ({}); keeping it as '{}-corrupt' and starting "
                  "with an empty state.", e.what(), kCheckpointKey);
    (void)kv_.Put(std::string(kCheckpointKey) + "-corrupt", *blob);
    (void)kv_.Delete(kCheckpointKey);
    apps_.Clear();
    deployments_.Clear();
    proxies_.Clear();
  }
  // Replica processes nobody knows about (started just before a crash) are stopped.
  for (auto& [node, np] : alive) {
    for (auto& [pid, tag] : np.processes) {
      ProcessTag t = ProcessTag::Parse(tag);
      if (t.kind == ProcessTag::Kind::kReplica && deployments_.OwnerOf(t.id) == nullptr) {
        spdlog::warn("Stopping unknown replica process {} ({}) on node {}.", pid, tag, node);
        pending_.push_back(StopProcessAction{pid, 0, node});
      }
    }
  }
  last_checkpoint_ = *blob;
  size_t replicas = 0;
  for (auto& [id, d] : deployments_.deployments()) replicas += d.replicas.size();
  spdlog::info("Recovered {} application(s), {} deployment(s), {} replica(s) from the checkpoint.",
               apps_.apps().size(), deployments_.deployments().size(), replicas);
}

namespace {

/// Whether performing `a` changes what is checkpointed or published (health checks and policy
/// calls only read).
bool ChangesState(const Action& a) {
  return !std::holds_alternative<CheckHealthAction>(a) &&
         !std::holds_alternative<RunPolicyAction>(a);
}

}  // namespace

void ControlLoop::Step() {
  Actions actions;
  bool encode = false;
  // Wall-clock durations of the step's parts, for the controller's metrics.
  using Steady = std::chrono::steady_clock;
  auto seconds_since = [](Steady::time_point t) {
    return std::chrono::duration<double>(Steady::now() - t).count();
  };
  LoopTimes times;
  Steady::time_point step_start = Steady::now();
  {
    std::lock_guard lock(mu_);
    actions.swap(pending_);
    double now = clock_.Now();
    Steady::time_point t = Steady::now();
    metrics_.DropStale(now, [this](const std::string& key) {
      auto id = DeploymentId::FromKey(key);
      const DeploymentState* d = id ? deployments_.Get(*id) : nullptr;
      return d != nullptr && d->autoscaling() ? d->spec.cfg.autoscaling_config->metrics_interval_s
                                              : 10.0;
    });
    for (const std::string& dead : nodes_.ExpireSilent(now, NodeHeartbeatTimeoutS())) {
      spdlog::error("Node {} missed its heartbeats for {} s: it is DEAD; its replicas are "
                    "replaced on other nodes.", dead, NodeHeartbeatTimeoutS());
      ++events_;
      deployments_.OnNodeDead(dead);
      ForgetNode(dead);
    }
    times.node_s = seconds_since(t);
    t = Steady::now();
    deployments_.Autoscale(metrics_, actions);
    for (const DeploymentId& gone : deployments_.Step(actions)) metrics_.DropDeployment(gone.Key());
    times.deployment_s = seconds_since(t);
    t = Steady::now();
    apps_.Step();
    times.application_s = seconds_since(t);
    t = Steady::now();
    if (proxies_.Reconcile(ProxyTargets(), shutting_down_, actions)) ++events_;
    FinishDrains();
    times.proxy_s = seconds_since(t);
    // Only a step where something changed re-publishes and re-encodes: at thousands of
    // replicas encoding dominates a step, and most steps change nothing.
    encode = deployments_.generation() != encoded_generation_ || events_ != encoded_events_ ||
             std::any_of(actions.begin(), actions.end(), ChangesState);
    if (encode) {
      encoded_generation_ = deployments_.generation();
      encoded_events_ = events_;
      long_poll_.Publish(LongPollObjects(apps_, deployments_, nodes_, proxies_),
                         deployments_.Recovering());
      // Checkpoint before acting (spec: target state is saved before replicas start or stop).
      encoded_checkpoint_ = EncodeCheckpoint(apps_, deployments_, proxies_, nodes_);
    }
    long_poll_.Expire(now);
    if (encode) RecordStateGauges(apps_, deployments_);
    if (shutting_down_ && apps_.apps().empty() && deployments_.deployments().empty() &&
        !finished_) {
      finished_ = true;
      spdlog::info("All applications deleted; stopping the proxies and the node.");
      ShutdownNodeAction shutdown;
      // Worker nodes' proxies stop with their agents.
      for (auto& [node, p] : proxies_.proxies()) {
        if (node == context_.options.node_id && p.pid > 0) shutdown.proxy_pids.push_back(p.pid);
      }
      for (const NodeInfo* n : nodes_.Ordered()) {
        if (!n->head && n->status == NodeStatus::kAlive) shutdown.worker_nodes.push_back(n->id);
      }
      actions.push_back(std::move(shutdown));
    }
  }
  if (encode || checkpoint_failing_) CheckpointIfChanged(encoded_checkpoint_);
  executor_.Execute(std::move(actions));
  times.loop_s = seconds_since(step_start);
  RecordControlLoop(times, ++num_loops_);
}

void ControlLoop::Run(const std::atomic<bool>& stop) {
  auto interval = std::chrono::duration<double>(
      EnvDouble("SERVE_CONTROL_LOOP_INTERVAL_S", context_.options.control_loop_interval_s));
  while (!stop) {
    Step();
    std::unique_lock lock(mu_);
    auto slept_from = std::chrono::steady_clock::now();
    cv_.wait_for(lock, interval);
    RecordControlLoopSleep(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - slept_from).count());
  }
  std::lock_guard lock(mu_);
  long_poll_.CloseAll();
}

bool ControlLoop::finished() {
  std::lock_guard lock(mu_);
  return finished_;
}

void ControlLoop::CheckpointIfChanged(const std::string& blob) {
  if (blob == last_checkpoint_) return;
  absl::Status st = kv_.Put(kCheckpointKey, blob);
  if (st.ok()) {
    if (checkpoint_failing_) spdlog::info("Checkpointing works again.");
    checkpoint_failing_ = false;
    last_checkpoint_ = blob;
  } else if (!checkpoint_failing_) {
    checkpoint_failing_ = true;
    spdlog::error("Cannot write the checkpoint: {}; serving continues, retrying.",
                  std::string(st.message()));
  }
}

// ---------------------------------------------------------------- commands

absl::Status ControlLoop::Deploy(const config::ServeDeployConfig& cfg, const std::string& source,
                                 const std::string& app_dir) {
  absl::Status st;
  {
    std::lock_guard lock(mu_);
    ++events_;
    st = apps_.Deploy(cfg, source, app_dir, pending_);
    if (st.ok() && source == "declarative") ApplyControllerLogging();
  }
  cv_.notify_all();
  return st;
}

void ControlLoop::ApplyControllerLogging() {
  if (context_.log_file.empty()) return;  // not logging to a file (tests)
  const nlohmann::json& lc = apps_.global_logging_config();
  std::string name = std::filesystem::path(context_.log_file).filename().string();
  ReconfigureProcessLogging(LogSettingsFromJson(lc),
                            ServeLogsDir(context_.options.session_dir, lc) + "/" + name);
  if (std::string file = CurrentLogFile(); !file.empty()) context_.log_file = file;
}

absl::Status ControlLoop::ApplyConfig(const config::ServeDeployConfig& config) {
  return Deploy(config, "declarative", "");
}

absl::Status ControlLoop::DeleteApplication(const std::string& name) {
  absl::Status st;
  {
    std::lock_guard lock(mu_);
    ++events_;
    st = apps_.Delete(name);
  }
  cv_.notify_all();
  return st;
}

void ControlLoop::DeleteAllApplications() {
  {
    std::lock_guard lock(mu_);
    ++events_;
    spdlog::info("Deleting all applications.");
    apps_.DeleteAll();
  }
  cv_.notify_all();
}

void ControlLoop::Shutdown() {
  {
    std::lock_guard lock(mu_);
    ++events_;
    if (!shutting_down_) spdlog::info("Shutdown requested: deleting all applications.");
    shutting_down_ = true;
    apps_.set_shutting_down();
    apps_.DeleteAll();
  }
  cv_.notify_all();
}

void ControlLoop::Listen(std::map<std::string, int64_t> keys, LongPollHost::Reply reply) {
  double deadline =
      clock_.Now() + random_.Uniform(EnvDouble("LISTEN_FOR_CHANGE_REQUEST_TIMEOUT_S_LOWER_BOUND", 30),
                                     EnvDouble("LISTEN_FOR_CHANGE_REQUEST_TIMEOUT_S_UPPER_BOUND", 60));
  std::lock_guard lock(mu_);
  long_poll_.Listen(std::move(keys), deadline, deployments_.Recovering(), std::move(reply));
}

absl::StatusOr<v1::ReplicaSpec> ControlLoop::GetReplicaSpec(const std::string& replica_id) {
  std::lock_guard lock(mu_);
  const DeploymentState* dep = deployments_.OwnerOf(replica_id);
  if (dep == nullptr) return absl::NotFoundError("unknown replica " + replica_id);
  const DeploymentSpec& s = dep->spec;
  v1::ReplicaSpec spec;
  spec.set_app_name(dep->id.app);
  spec.set_deployment(dep->id.name);
  spec.set_library_path(s.library_path);
  spec.set_factory_key(s.factory_key);
  spec.set_init_args(s.init_args);
  if (s.cfg.user_config) spec.set_user_config_json(s.cfg.user_config->dump());
  spec.set_max_ongoing_requests(s.cfg.max_ongoing_requests);
  spec.set_app_dir(s.app_dir);
  spec.set_is_ingress(s.ingress);
  if (s.cfg.logging_config) spec.set_logging_config_json(s.cfg.logging_config->dump());
  if (const ReplicaInfo* r = dep->replicas.Find(replica_id)) {
    for (int g : r->gpu_ids) spec.add_gpu_ids(g);
    spec.set_node_id(r->node_id);
  }
  if (const auto& as = s.cfg.autoscaling_config) {
    auto* m = spec.mutable_autoscaling();
    m->set_metrics_interval_s(as->metrics_interval_s);
    m->set_look_back_period_s(as->look_back_period_s);
    m->set_aggregation_function(as->aggregation_function);
  }
  return spec;
}

// ---------------------------------------------------------------- reports

void ControlLoop::OnReplicaStarted(const v1::ReplicaStarted& msg) {
  {
    std::lock_guard lock(mu_);
    deployments_.OnReplicaStarted(msg);
  }
  cv_.notify_all();
}

void ControlLoop::OnBuildResult(const v1::BuildResult& msg) {
  {
    std::lock_guard lock(mu_);
    ++events_;
    apps_.OnBuildResult(msg);
  }
  cv_.notify_all();
}

void ControlLoop::OnProcessExit(const v1::ProcessExit& msg) {
  {
    std::lock_guard lock(mu_);
    ++events_;
    ProcessTag tag = ProcessTag::Parse(msg.tag());
    switch (tag.kind) {
      case ProcessTag::Kind::kProxy:
        metrics_.DropSource("proxy:" + msg.node_id());
        proxies_.OnExit(msg.node_id(), msg.pid(), msg.exit_code(), shutting_down_, pending_);
        break;
      case ProcessTag::Kind::kBuild:
        apps_.OnBuildExit(tag.id, msg.pid(), msg.exit_code());
        break;
      case ProcessTag::Kind::kReplica:
        metrics_.DropReplica(tag.id);
        deployments_.OnReplicaExit(tag.id, msg.exit_code());
        break;
      case ProcessTag::Kind::kOther:
        break;
    }
  }
  cv_.notify_all();
}

void ControlLoop::OnProxyReady(const v1::ProxyReady& msg) {
  std::lock_guard lock(mu_);
  ++events_;
  proxies_.OnReady(msg);
}

void ControlLoop::RecordHandleMetrics(const v1::HandleMetricsBatch& batch) {
  {
    std::lock_guard lock(mu_);
    double now = clock_.Now();
    for (const auto& r : batch.reports()) {
      autoscaler::HandleMetrics m;
      m.handle_id = r.handle_id();
      m.source = r.source();
      m.queued = r.queued_requests();
      m.running_by_replica.insert(r.running_requests().begin(), r.running_requests().end());
      m.timestamp_s = r.timestamp_s();
      metrics_.RecordHandle(r.deployment_key(), std::move(m), now);
    }
  }
  cv_.notify_all();  // a cold start (queued requests, no replica) scales at once
}

void ControlLoop::RecordReplicaMetrics(const v1::ReplicaMetricsReport& report) {
  std::lock_guard lock(mu_);
  const DeploymentState* dep = deployments_.OwnerOf(report.replica_id());
  if (dep == nullptr) return;
  autoscaler::ReplicaMetrics m;
  m.replica_id = report.replica_id();
  m.running = report.running_requests();
  m.timestamp_s = report.timestamp_s();
  metrics_.RecordReplica(dep->id.Key(), std::move(m), clock_.Now());
}

void ControlLoop::RecordMultiplexedModelIds(const v1::MultiplexedModelIds& msg) {
  std::lock_guard lock(mu_);
  deployments_.OnMultiplexedModelIds(msg.replica_id(),
                                     {msg.model_ids().begin(), msg.model_ids().end()});
}

// ---------------------------------------------------------------- REST

nlohmann::json ControlLoop::Details(const std::string& api_type) {
  std::lock_guard lock(mu_);
  return InstanceDetails(context_, proxies_, apps_, deployments_, api_type, nodes_, scheduler_);
}

std::string ControlLoop::SessionName() {
  return std::filesystem::path(context_.options.session_dir).filename().string();
}

// ---------------------------------------------------------------- action results

void ControlLoop::OnReplicaProcessStarted(const std::string& replica_id,
                                          const std::string& node_id,
                                          const absl::StatusOr<int>& pid) {
  {
    std::lock_guard lock(mu_);
    deployments_.OnReplicaProcessStarted(replica_id, node_id, pid, pending_);
  }
  cv_.notify_all();
}

void ControlLoop::OnBuildProcessStarted(const std::string& app, const std::string& build_id,
                                        const absl::StatusOr<int>& pid) {
  std::lock_guard lock(mu_);
  ++events_;
  apps_.OnBuildProcessStarted(app, build_id, pid);
}

void ControlLoop::OnProxyProcessStarted(const std::string& node_id,
                                        const absl::StatusOr<int>& pid) {
  std::lock_guard lock(mu_);
  ++events_;
  proxies_.OnProcessStarted(node_id, pid);
}

void ControlLoop::OnHealthResult(const DeploymentId& deployment, const std::string& replica_id,
                                 const absl::Status& result) {
  {
    std::lock_guard lock(mu_);
    deployments_.OnHealthResult(deployment, replica_id, result, pending_);
  }
  cv_.notify_all();
}

void ControlLoop::OnReconfigureResult(const DeploymentId& deployment,
                                      const std::string& replica_id, int config_version,
                                      const absl::Status& result) {
  {
    std::lock_guard lock(mu_);
    deployments_.OnReconfigureResult(deployment, replica_id, config_version, result, pending_);
  }
  cv_.notify_all();
}

void ControlLoop::OnPolicyResult(const DeploymentId& deployment,
                                 const absl::StatusOr<v1::PolicyReply>& reply) {
  {
    std::lock_guard lock(mu_);
    deployments_.OnPolicyResult(deployment, reply);
  }
  cv_.notify_all();
}

}  // namespace serve::controller
