#pragma once

// The cluster's nodes as the controller sees them (spec §1, §8.1): the head node, registered
// at start, and every worker node agent that called RegisterNode. A worker whose heartbeats
// stop for the heartbeat timeout is DEAD and never comes back under that id (a restarted agent
// registers as a fresh node). Not thread-safe; the control loop serializes calls.

#include <map>

#include "absl/status/status.h"
#include <string>
#include <vector>

namespace serve::controller {

/// Resource name -> amount, Ray's names: "CPU", "GPU", "memory" (bytes), custom names and
/// "accelerator_type:<T>".
using ResourceSet = std::map<std::string, double>;

enum class NodeStatus { kAlive, kDraining, kDead };
const char* ToString(NodeStatus s);

struct NodeInfo {
  std::string id;
  std::string ip;
  std::string agent_address;
  ResourceSet resources;  ///< total
  std::map<std::string, std::string> labels;
  bool head = false;
  /// Head node started without a resource file (tests): every demand fits.
  bool unlimited = false;
  NodeStatus status = NodeStatus::kAlive;
  double last_heartbeat_s = 0;  ///< monotonic
  double registered_unix_s = 0;
  /// Set while DRAINING: when its replicas must be gone (monotonic; 0 = no deadline).
  double drain_deadline_s = 0;
  std::string death_reason;
};

/// $SERVE_NODE_HEARTBEAT_TIMEOUT_S (default 30): a worker silent this long is DEAD.
double NodeHeartbeatTimeoutS();

class NodeTable {
 public:
  /// Adds (or replaces, when alive) a node. A DEAD id cannot register again: returns false.
  bool Register(NodeInfo node);
  /// Records a heartbeat. NOT_FOUND-like false when the node is unknown or dead.
  bool Heartbeat(const std::string& node_id, double now);
  /// Marks alive workers silent for longer than `timeout_s` DEAD; returns their ids.
  std::vector<std::string> ExpireSilent(double now, double timeout_s);

  /// Starts draining `node_id` (spec §4.6, §8.1): nothing new is placed there. NOT_FOUND for
  /// an unknown node, FAILED_PRECONDITION for the head or a dead node; draining again keeps
  /// the earlier deadline unless `deadline_s` is earlier.
  absl::Status Drain(const std::string& node_id, double deadline_s);
  /// `node_id` is DEAD (drained, or lost) with `reason`.
  void MarkDead(const std::string& node_id, const std::string& reason);

  const NodeInfo* Get(const std::string& node_id) const;
  bool Alive(const std::string& node_id) const;
  bool Draining(const std::string& node_id) const;
  /// Every node, in registration order (the head first).
  std::vector<const NodeInfo*> Ordered() const;
  const std::map<std::string, NodeInfo>& nodes() const { return nodes_; }
  /// The head node's IP (LocalNodeIp of the controller).
  std::string IpOf(const std::string& node_id) const;

 private:
  std::map<std::string, NodeInfo> nodes_;
  std::vector<std::string> order_;
};

}  // namespace serve::controller
