#include "controller/node_state.h"

#include <algorithm>

#include "common/util.h"

namespace serve::controller {

const char* ToString(NodeStatus s) {
  switch (s) {
    case NodeStatus::kAlive: return "ALIVE";
    case NodeStatus::kDraining: return "DRAINING";
    case NodeStatus::kDead: return "DEAD";
  }
  return "UNKNOWN";
}

double NodeHeartbeatTimeoutS() { return EnvDouble("SERVE_NODE_HEARTBEAT_TIMEOUT_S", 30); }

bool NodeTable::Register(NodeInfo node) {
  auto it = nodes_.find(node.id);
  if (it != nodes_.end() && it->second.status == NodeStatus::kDead) return false;
  if (it == nodes_.end()) order_.push_back(node.id);
  std::string id = node.id;
  nodes_[id] = std::move(node);
  return true;
}

bool NodeTable::Heartbeat(const std::string& node_id, double now) {
  auto it = nodes_.find(node_id);
  if (it == nodes_.end() || it->second.status == NodeStatus::kDead) return false;
  it->second.last_heartbeat_s = now;
  return true;
}

std::vector<std::string> NodeTable::ExpireSilent(double now, double timeout_s) {
  std::vector<std::string> dead;
  for (auto& [id, n] : nodes_) {
    if (n.head || n.status == NodeStatus::kDead) continue;
    if (now - n.last_heartbeat_s <= timeout_s) continue;
    n.status = NodeStatus::kDead;
    n.death_reason = "no heartbeat for " + std::to_string(static_cast<int>(timeout_s)) + " s";
    dead.push_back(id);
  }
  return dead;
}

absl::Status NodeTable::Drain(const std::string& node_id, double deadline_s) {
  auto it = nodes_.find(node_id);
  if (it == nodes_.end()) return absl::NotFoundError("unknown node " + node_id);
  NodeInfo& n = it->second;
  if (n.head) return absl::FailedPreconditionError("the head node cannot be drained");
  if (n.status == NodeStatus::kDead) {
    return absl::FailedPreconditionError("node " + node_id + " is DEAD");
  }
  if (n.status == NodeStatus::kAlive || (deadline_s > 0 && (n.drain_deadline_s == 0 ||
                                                          deadline_s < n.drain_deadline_s))) {
    n.drain_deadline_s = deadline_s;
  }
  n.status = NodeStatus::kDraining;
  return absl::OkStatus();
}

void NodeTable::MarkDead(const std::string& node_id, const std::string& reason) {
  auto it = nodes_.find(node_id);
  if (it == nodes_.end()) return;
  it->second.status = NodeStatus::kDead;
  it->second.death_reason = reason;
}

bool NodeTable::Draining(const std::string& node_id) const {
  const NodeInfo* n = Get(node_id);
  return n != nullptr && n->status == NodeStatus::kDraining;
}

const NodeInfo* NodeTable::Get(const std::string& node_id) const {
  auto it = nodes_.find(node_id);
  return it == nodes_.end() ? nullptr : &it->second;
}

bool NodeTable::Alive(const std::string& node_id) const {
  const NodeInfo* n = Get(node_id);
  return n != nullptr && n->status == NodeStatus::kAlive;
}

std::vector<const NodeInfo*> NodeTable::Ordered() const {
  std::vector<const NodeInfo*> out;
  for (const std::string& id : order_) out.push_back(&nodes_.at(id));
  return out;
}

std::string NodeTable::IpOf(const std::string& node_id) const {
  const NodeInfo* n = Get(node_id);
  return n == nullptr ? std::string() : n->ip;
}

}  // namespace serve::controller
