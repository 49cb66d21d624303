// DeploymentStateManager's side of multi-node placement: replicas waiting for a node, their
// start on the node the scheduler chose (with GPU devices and thread counts), and the loss of
// a node (spec §4.6, §8.1).

#include <algorithm>

#include <spdlog/spdlog.h>

#include "controller/deployment_state.h"

namespace serve::controller {

void DeploymentStateManager::ScheduleReplicas(DeploymentState& dep, Actions& actions) {
  ResourceSet demand = DemandFromActorOptions(dep.spec.cfg.ray_actor_options);
  int max_per_node = dep.spec.cfg.max_replicas_per_node.value_or(0);
  int pending = 0;
  for (auto& [id, r] : dep.replicas) {
    if (r.scheduled || r.state != ReplicaState::kStarting) continue;
    auto placement = scheduler_.Place(r.id, dep.id.Key(), demand, max_per_node);
    if (!placement) {
      ++pending;
      continue;
    }
    r.scheduled = true;
    r.node_id = placement->node_id;
    r.gpu_ids = placement->gpu_ids;
    ++generation_;
    LaunchReplica(dep, r, actions);
  }
  if (pending == dep.unschedulable) return;
  ++generation_;
  if (pending > 0) {
    // Ray's wording (deployment_state.py), said at once: the scheduler knows no node fits.
    dep.message = "Deployment '" + dep.id.name + "' in application '" + dep.id.app + "' has " +
                  std::to_string(pending) +
                  " replicas that cannot be scheduled: no node has the resources they need" +
                  (max_per_node > 0
                       ? " with at most " + std::to_string(max_per_node) + " replicas per node"
                       : std::string()) +
                  ". Resources required for each replica: " + FormatResources(demand) +
                  ", total resources available: " + FormatResources(scheduler_.AvailableTotal()) +
                  ".";
    spdlog::warn("{}", dep.message);
  } else if (dep.unschedulable > 0) {
    dep.message.clear();
  }
  dep.unschedulable = pending;
}

void DeploymentStateManager::LaunchReplica(DeploymentState& dep, ReplicaInfo& r,
                                           Actions& actions) {
  StartReplicaAction a;
  a.replica_id = r.id;
  a.node_id = r.node_id;
  v1::StartProcessRequest& req = a.request;
  req.set_tag(ProcessTag::Replica(r.id).Encode());
  req.set_log_prefix("ServeReplica:" + dep.id.app + ":" + dep.id.name);
  req.set_binary("serve-replica");
  for (const std::string& arg :
       {std::string("--controller-address"), context_.address, std::string("--replica-id"), r.id,
        std::string("--session-dir"), context_.options.session_dir, std::string("--node-id"),
        r.node_id}) {
    req.add_args(arg);
  }
  auto add_env = [&req](const std::string& k, const std::string& v) {
    auto* kv = req.add_env();
    kv->set_key(k);
    kv->set_value(v);
  };
  // As Ray sets them: the assigned GPU devices, and OpenMP threads = num_cpus (at least 1)
  // unless the runtime_env sets it.
  if (!r.gpu_ids.empty()) {
    std::string ids;
    for (int g : r.gpu_ids) ids += (ids.empty() ? "" : ",") + std::to_string(g);
    add_env("CUDA_VISIBLE_DEVICES", ids);
  }
  if (!dep.spec.env.count("OMP_NUM_THREADS")) {
    double cpus = DemandFromActorOptions(dep.spec.cfg.ray_actor_options)["CPU"];
    add_env("OMP_NUM_THREADS", std::to_string(std::max(1, static_cast<int>(cpus))));
  }
  for (auto& [k, v] : dep.spec.env) add_env(k, v);
  if (!dep.spec.working_dir.empty()) req.set_working_dir(dep.spec.working_dir);
  actions.push_back(std::move(a));
}

void DeploymentStateManager::OnNodeDead(const std::string& node_id) {
  for (auto& [id, dep] : deployments_) {
    std::vector<std::string> gone;
    for (auto& [rid, r] : dep.replicas) {
      if (r.scheduled && r.node_id == node_id) gone.push_back(rid);
    }
    for (const std::string& rid : gone) {
      ReplicaInfo* r = dep.replicas.Find(rid);
      if (r->state == ReplicaState::kRunning && !dep.deleting) {
        dep.status = Transition(dep.status, DeploymentEvent::kHealthCheckFailed);
        dep.message = "Replica " + rid + " was lost with its node " + node_id + ".";
      }
      spdlog::warn("Replica {} of {}:{} was on dead node {}; replacing it.", rid, dep.id.app,
                   dep.id.name, node_id);
      RemoveReplica(dep, rid);
    }
  }
  scheduler_.ReleaseNode(node_id);
}

}  // namespace serve::controller
