// ControlLoop's node commands and the per-step node work: workers joining and heartbeating,
// draining, where proxies run, and forgetting nodes that died or left (spec §4.6, §8.1).

#include <set>

#include <spdlog/spdlog.h>

#include "controller/control_loop.h"

namespace serve::controller {

absl::Status ControlLoop::RegisterNode(const v1::RegisterNodeRequest& req) {
  if (req.node_id().empty()) return absl::InvalidArgumentError("node_id: must not be empty");
  if (req.agent_address().empty()) {
    return absl::InvalidArgumentError("agent_address: must not be empty");
  }
  if (req.node_id() == context_.options.node_id) {
    return absl::InvalidArgumentError("node_id: " + req.node_id() + " is the head node's id");
  }
  {
    std::lock_guard lock(mu_);
    NodeInfo n;
    n.id = req.node_id();
    n.ip = req.node_ip();
    n.agent_address = req.agent_address();
    n.resources.insert(req.resources().begin(), req.resources().end());
    n.labels.insert(req.labels().begin(), req.labels().end());
    n.registered_unix_s = clock_.UnixNow();
    n.last_heartbeat_s = clock_.Now();
    if (!nodes_.Register(n)) {
      return absl::FailedPreconditionError("node " + n.id +
                                           " was declared dead; a restarted agent joins with a "
                                           "new node id");
    }
    ++events_;
    spdlog::info("Node {} joined from {} (agent {}) with resources {}.", n.id, n.ip,
                 n.agent_address, FormatResources(n.resources));
    std::lock_guard agents_lock(agents_mu_);
    auto& slot = worker_agents_[n.id];
    if (slot) retired_agents_.push_back(std::move(slot));
    if (agent_factory_) slot = agent_factory_(n.agent_address);
  }
  cv_.notify_all();  // pending replicas may fit now
  return absl::OkStatus();
}

absl::Status ControlLoop::NodeHeartbeat(const std::string& node_id) {
  std::lock_guard lock(mu_);
  const NodeInfo* n = nodes_.Get(node_id);
  if (n == nullptr) return absl::NotFoundError("unknown node " + node_id + "; register again");
  if (n->status == NodeStatus::kDead) {
    return absl::FailedPreconditionError("node " + node_id + " was declared dead: " +
                                         n->death_reason);
  }
  nodes_.Heartbeat(node_id, clock_.Now());
  return absl::OkStatus();
}

absl::Status ControlLoop::DrainNode(const std::string& node_id, double deadline_s) {
  {
    std::lock_guard lock(mu_);
    bool was_draining = nodes_.Draining(node_id);
    double deadline = deadline_s > 0 ? clock_.Now() + deadline_s : 0;
    absl::Status st = nodes_.Drain(node_id, deadline);
    if (!st.ok()) return st;
    ++events_;
    if (!was_draining) {
      spdlog::info("Draining node {}{}: its replicas move to other nodes.", node_id,
                   deadline_s > 0 ? " (deadline " + std::to_string(deadline_s) + " s)" : "");
    }
  }
  cv_.notify_all();
  return absl::OkStatus();
}

std::map<std::string, std::string> ControlLoop::ProxyTargets() const {
  std::map<std::string, std::string> targets;
  const std::string& where = context_.options.proxy_location;
  if (where == "Disabled") return targets;
  targets[context_.options.node_id] = "";
  if (where != "EveryNode") return targets;
  std::set<std::string> with_replicas;
  for (auto& [id, dep] : deployments_.deployments()) {
    for (auto& [rid, r] : dep.replicas) {
      if (r.scheduled && r.state != ReplicaState::kStopping) with_replicas.insert(r.node_id);
    }
  }
  for (const NodeInfo* n : nodes_.Ordered()) {
    if (n->status == NodeStatus::kAlive && with_replicas.count(n->id) != 0) {
      targets[n->id] = n->ip;
    }
  }
  return targets;
}

void ControlLoop::ForgetNode(const std::string& node_id) {
  proxies_.OnNodeGone(node_id);
  std::lock_guard agents_lock(agents_mu_);
  if (auto it = worker_agents_.find(node_id); it != worker_agents_.end()) {
    retired_agents_.push_back(std::move(it->second));
    worker_agents_.erase(it);
  }
}

void ControlLoop::FinishDrains() {
  std::set<std::string> busy;
  for (auto& [id, dep] : deployments_.deployments()) {
    for (auto& [rid, r] : dep.replicas) {
      if (r.scheduled) busy.insert(r.node_id);
    }
  }
  for (auto& [node, p] : proxies_.proxies()) busy.insert(node);
  std::vector<std::string> drained;
  for (const NodeInfo* n : nodes_.Ordered()) {
    if (n->status == NodeStatus::kDraining && busy.count(n->id) == 0 &&
        !scheduler_.Holds(n->id)) {
      drained.push_back(n->id);
    }
  }
  for (const std::string& id : drained) {
    spdlog::info("Node {} is drained: no replica or proxy is left on it.", id);
    nodes_.MarkDead(id, "drained");
    ++events_;
    ForgetNode(id);
  }
}

}  // namespace serve::controller
