#include "controller/scheduler.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace serve::controller {
namespace {
constexpr double kEps = 1e-9;
}  // namespace

ResourceSet DemandFromActorOptions(const nlohmann::json& o) {
  ResourceSet d;
  auto number = [&](const char* key, double dflt) {
    auto it = o.find(key);
    return it != o.end() && it->is_number() ? it->get<double>() : dflt;
  };
  d["CPU"] = number("num_cpus", 1.0);
  if (double g = number("num_gpus", 0); g > 0) d["GPU"] = g;
  if (double m = number("memory", 0); m > 0) d["memory"] = m;
  if (auto it = o.find("resources"); it != o.end() && it->is_object()) {
    for (auto& [k, v] : it->items()) {
      if (v.is_number() && v.get<double>() > 0) d[k] = v.get<double>();
    }
  }
  if (auto it = o.find("accelerator_type"); it != o.end() && it->is_string()) {
    d["accelerator_type:" + it->get<std::string>()] = 0.001;
  }
  std::erase_if(d, [](const auto& kv) { return kv.second <= 0; });
  return d;
}

std::string FormatResources(const ResourceSet& r) {
  nlohmann::json j = nlohmann::json::object();
  for (auto& [k, v] : r) j[k] = v;
  return j.dump();
}

std::vector<double> Scheduler::GpuUse(const NodeInfo& node) const {
  auto it = node.resources.find("GPU");
  int devices = it == node.resources.end() ? 0 : static_cast<int>(std::floor(it->second + kEps));
  std::vector<double> use(static_cast<size_t>(std::max(devices, 0)), 0.0);
  auto u = usage_.find(node.id);
  if (u == usage_.end()) return use;
  for (auto& [g, share] : u->second.gpu) {
    if (g >= 0 && g < devices) use[static_cast<size_t>(g)] += share;
  }
  return use;
}

std::optional<std::vector<int>> Scheduler::PickGpus(const NodeInfo& node, double num_gpus) const {
  if (num_gpus <= 0) return std::vector<int>{};
  std::vector<double> use = GpuUse(node);
  if (node.unlimited && use.empty()) return std::vector<int>{};
  if (num_gpus < 1) {
    // Best fit: the fullest device that still has room, so fractions pack together.
    int best = -1;
    for (size_t i = 0; i < use.size(); ++i) {
      if (use[i] + num_gpus <= 1 + kEps && (best < 0 || use[i] > use[static_cast<size_t>(best)])) {
        best = static_cast<int>(i);
      }
    }
    if (best < 0) return std::nullopt;
    return std::vector<int>{best};
  }
  int want = static_cast<int>(std::ceil(num_gpus - kEps));
  std::vector<int> ids;
  for (size_t i = 0; i < use.size() && static_cast<int>(ids.size()) < want; ++i) {
    if (use[i] <= kEps) ids.push_back(static_cast<int>(i));
  }
  if (static_cast<int>(ids.size()) < want) return std::nullopt;
  return ids;
}

ResourceSet Scheduler::Available(const std::string& node_id) const {
  const NodeInfo* node = nodes_.Get(node_id);
  if (node == nullptr) return {};
  ResourceSet free = node->resources;
  if (auto u = usage_.find(node_id); u != usage_.end()) {
    for (auto& [k, v] : u->second.reserved) free[k] -= v;
  }
  return free;
}

ResourceSet Scheduler::AvailableTotal() const {
  ResourceSet total;
  for (const NodeInfo* n : nodes_.Ordered()) {
    if (n->status != NodeStatus::kAlive || n->unlimited) continue;
    for (auto& [k, v] : Available(n->id)) total[k] += std::max(v, 0.0);
  }
  return total;
}

std::optional<Placement> Scheduler::Place(const std::string& replica_id,
                                          const std::string& deployment,
                                          const ResourceSet& demand, int max_per_node) {
  const NodeInfo* best = nullptr;
  int best_count = std::numeric_limits<int>::max();
  std::vector<int> best_gpus;
  for (const NodeInfo* n : nodes_.Ordered()) {
    if (n->status != NodeStatus::kAlive) continue;
    int count = 0;
    if (auto u = usage_.find(n->id); u != usage_.end()) {
      auto d = u->second.per_deployment.find(deployment);
      count = d == u->second.per_deployment.end() ? 0 : d->second;
    }
    if (max_per_node > 0 && count >= max_per_node) continue;
    if (!n->unlimited) {
      ResourceSet free = Available(n->id);
      bool fits = std::all_of(demand.begin(), demand.end(), [&](const auto& kv) {
        auto it = free.find(kv.first);
        return it != free.end() && it->second + kEps >= kv.second;
      });
      if (!fits) continue;
    }
    auto gpu = demand.find("GPU");
    auto gpus = PickGpus(*n, gpu == demand.end() ? 0 : gpu->second);
    if (!gpus) continue;
    if (count < best_count) {
      best = n;
      best_count = count;
      best_gpus = std::move(*gpus);
    }
  }
  if (best == nullptr) return std::nullopt;
  Reserve(replica_id, deployment, best->id, demand, best_gpus);
  return Placement{best->id, best_gpus};
}

void Scheduler::Reserve(const std::string& replica_id, const std::string& deployment,
                        const std::string& node_id, const ResourceSet& demand,
                        std::vector<int> gpu_ids) {
  Allocation a{node_id, deployment, demand, std::move(gpu_ids), 0};
  auto gpu = demand.find("GPU");
  if (gpu != demand.end() && !a.gpu_ids.empty()) {
    a.gpu_share = gpu->second < 1 ? gpu->second : 1.0;
  }
  Release(replica_id);
  Account(a, +1);
  allocations_[replica_id] = std::move(a);
}

void Scheduler::Account(const Allocation& a, int sign) {
  NodeUsage& u = usage_[a.node_id];
  for (auto& [k, v] : a.demand) u.reserved[k] += sign * v;
  u.per_deployment[a.deployment] += sign;
  if (u.per_deployment[a.deployment] <= 0) u.per_deployment.erase(a.deployment);
  for (int g : a.gpu_ids) u.gpu[g] += sign * a.gpu_share;
  u.allocations += sign;
  if (u.allocations <= 0) usage_.erase(a.node_id);  // exact zeroes, no float drift
}

void Scheduler::Release(const std::string& replica_id) {
  auto it = allocations_.find(replica_id);
  if (it == allocations_.end()) return;
  Account(it->second, -1);
  allocations_.erase(it);
}

void Scheduler::ReleaseNode(const std::string& node_id) {
  std::erase_if(allocations_, [&](const auto& kv) { return kv.second.node_id == node_id; });
  usage_.erase(node_id);
}

bool Scheduler::Holds(const std::string& node_id) const { return usage_.count(node_id) != 0; }

}  // namespace serve::controller
