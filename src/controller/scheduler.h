#pragma once

// Places replicas on nodes by the resources they ask for (spec §4.6): Ray's default spread
// (the feasible node holding the fewest replicas of the deployment, then registration order),
// max_replicas_per_node, and GPU device ids (a whole GPU is exclusive; fractions of one device
// share it, packed onto the fullest device that still fits). Not thread-safe; the control loop
// serializes calls.

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "controller/node_state.h"

namespace serve::controller {

/// What one replica needs, from ray_actor_options: num_cpus (default 1), num_gpus, memory,
/// resources {...} and accelerator_type (as "accelerator_type:<T>": 0.001, as in Ray).
ResourceSet DemandFromActorOptions(const nlohmann::json& ray_actor_options);
/// {"CPU": 1.0, ...} with Ray's spelling of numbers, for messages.
std::string FormatResources(const ResourceSet& r);

struct Placement {
  std::string node_id;
  std::vector<int> gpu_ids;
};

class Scheduler {
 public:
  explicit Scheduler(const NodeTable& nodes) : nodes_(nodes) {}

  /// Reserves `demand` for `replica_id` of `deployment` on an alive node, or nullopt when no
  /// node fits. `max_per_node` <= 0: no limit.
  std::optional<Placement> Place(const std::string& replica_id, const std::string& deployment,
                                 const ResourceSet& demand, int max_per_node);
  /// Records an existing placement (a replica adopted after a controller restart).
  void Reserve(const std::string& replica_id, const std::string& deployment,
               const std::string& node_id, const ResourceSet& demand, std::vector<int> gpu_ids);
  /// Frees what `replica_id` held; unknown ids are ignored.
  void Release(const std::string& replica_id);
  /// Frees everything held on `node_id` (it died).
  void ReleaseNode(const std::string& node_id);

  const NodeTable& nodes() const { return nodes_; }
  /// Whether anything is reserved on `node_id`.
  bool Holds(const std::string& node_id) const;
  /// Free amounts on `node_id` (total minus reservations).
  ResourceSet Available(const std::string& node_id) const;
  /// Free amounts summed over alive nodes.
  ResourceSet AvailableTotal() const;

 private:
  struct Allocation {
    std::string node_id;
    std::string deployment;
    ResourceSet demand;
    std::vector<int> gpu_ids;
    double gpu_share = 0;  ///< per device in gpu_ids
  };
  /// GPU ids for `num_gpus` on `node`, or nullopt when the devices are taken.
  std::optional<std::vector<int>> PickGpus(const NodeInfo& node, double num_gpus) const;
  std::vector<double> GpuUse(const NodeInfo& node) const;

  const NodeTable& nodes_;
  /// Running totals of one node's allocations, so that placing is O(nodes), not O(replicas).
  struct NodeUsage {
    ResourceSet reserved;
    std::map<std::string, int> per_deployment;  ///< replicas of each deployment
    std::map<int, double> gpu;                  ///< device id -> share in use
    int allocations = 0;
  };
  /// Adds (`sign` +1) or removes (-1) `a` from its node's totals.
  void Account(const Allocation& a, int sign);

  std::map<std::string, Allocation> allocations_;  ///< replica id -> what it holds
  std::map<std::string, NodeUsage> usage_;         ///< node id -> totals of allocations_
};

}  // namespace serve::controller
