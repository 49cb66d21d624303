#pragma once

// One replica's record and the container of a deployment's replicas (spec §3.3).

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/ids.h"

namespace serve::controller {

enum class ReplicaState { kStarting, kRecovering, kRunning, kStopping };
/// The state name of spec §3.3; a RUNNING replica with a reconfigure in flight is "UPDATING",
/// one on a draining node "PENDING_MIGRATION".
const char* ToString(ReplicaState s, bool updating = false, bool migrating = false);

struct ReplicaInfo {
  std::string id;
  DeploymentId deployment;
  ReplicaState state = ReplicaState::kStarting;
  int pid = 0;  ///< 0 until the agent (or the replica itself) reports it
  std::string node_id;     ///< empty until scheduled
  bool scheduled = true;   ///< false while no node has room for it (pending, no process)
  std::vector<int> gpu_ids;  ///< GPU devices assigned on its node (CUDA_VISIBLE_DEVICES)
  std::string data_address;
  std::string control_address;
  std::string log_file;
  double start_time_s = 0;  ///< Unix time
  int version = 0;          ///< code version it was started with (restart when it changes)
  int config_version = 0;   ///< reconfigurable options it has applied
  bool updating = false;    ///< a Reconfigure call is in flight
  bool migrating = false;   ///< RUNNING on a draining node (PENDING_MIGRATION)
  int health_failures = 0;
  bool health_in_flight = false;
  double last_health_s = 0;  ///< monotonic time the last health check started
  double running_since_s = 0;  ///< monotonic time it became RUNNING
};

/// A deployment's replicas by id, in id order.
class ReplicaStateContainer {
 public:
  using Map = std::map<std::string, ReplicaInfo>;

  ReplicaInfo& Add(ReplicaInfo r) { return replicas_[r.id] = std::move(r); }
  ReplicaInfo* Find(const std::string& id) {
    auto it = replicas_.find(id);
    return it == replicas_.end() ? nullptr : &it->second;
  }
  const ReplicaInfo* Find(const std::string& id) const {
    auto it = replicas_.find(id);
    return it == replicas_.end() ? nullptr : &it->second;
  }
  void Erase(const std::string& id) { replicas_.erase(id); }
  int Count(const std::function<bool(const ReplicaInfo&)>& pred) const {
    int n = 0;
    for (auto& [id, r] : replicas_) n += pred(r) ? 1 : 0;
    return n;
  }
  bool empty() const { return replicas_.empty(); }
  size_t size() const { return replicas_.size(); }
  Map::iterator begin() { return replicas_.begin(); }
  Map::iterator end() { return replicas_.end(); }
  Map::const_iterator begin() const { return replicas_.begin(); }
  Map::const_iterator end() const { return replicas_.end(); }

 private:
  Map replicas_;
};

}  // namespace serve::controller
