#include "autoscaler/metrics_store.h"

#include <algorithm>
#include <utility>

namespace serve::autoscaler {

namespace {

constexpr double kMinHandleMetricsTimeoutS = 10;

}  // namespace

void MetricsStore::RecordHandle(const std::string& deployment_key, HandleMetrics m,
                                double received_s) {
  auto& handles = deployments_[deployment_key].handles;
  auto it = handles.find(m.handle_id);
  if (it != handles.end() && it->second.metrics.timestamp_s >= m.timestamp_s) return;
  std::string id = m.handle_id;
  handles[id] = HandleEntry{std::move(m), received_s};
}

void MetricsStore::RecordReplica(const std::string& deployment_key, ReplicaMetrics m,
                                 double received_s) {
  auto& replicas = deployments_[deployment_key].replicas;
  auto it = replicas.find(m.replica_id);
  if (it != replicas.end() && it->second.metrics.timestamp_s >= m.timestamp_s) return;
  std::string id = m.replica_id;
  replicas[id] = ReplicaEntry{std::move(m), received_s};
}

void MetricsStore::DropReplica(const std::string& replica_id) {
  const std::string source = "replica:" + replica_id;
  for (auto& [key, d] : deployments_) {
    d.replicas.erase(replica_id);
    std::erase_if(d.handles, [&](const auto& h) { return h.second.metrics.source == source; });
  }
  Prune();
}

void MetricsStore::DropSource(const std::string& source) {
  for (auto& [key, d] : deployments_) {
    std::erase_if(d.handles, [&](const auto& h) { return h.second.metrics.source == source; });
  }
  Prune();
}

void MetricsStore::DropDeployment(const std::string& deployment_key) {
  deployments_.erase(deployment_key);
}

void MetricsStore::DropStale(
    double now_s,
    const std::function<double(const std::string& deployment_key)>& metrics_interval_s) {
  for (auto& [key, d] : deployments_) {
    if (d.handles.empty()) continue;
    const double timeout_s = std::max(2 * metrics_interval_s(key), kMinHandleMetricsTimeoutS);
    std::erase_if(d.handles,
                  [&](const auto& h) { return now_s - h.second.received_s >= timeout_s; });
  }
  Prune();
}

double MetricsStore::TotalRequests(const std::string& deployment_key,
                                   const std::vector<std::string>& running_replicas) const {
  auto d = deployments_.find(deployment_key);
  if (d == deployments_.end()) return 0;
  double total = 0;
  for (const std::string& id : running_replicas) {
    if (auto r = d->second.replicas.find(id); r != d->second.replicas.end()) {
      total += r->second.metrics.running;
    }
  }
  const bool replica_side = total > 0;
  for (const auto& [handle_id, h] : d->second.handles) {
    total += h.metrics.queued;
    if (replica_side) continue;
    for (const std::string& id : running_replicas) {
      if (auto r = h.metrics.running_by_replica.find(id); r != h.metrics.running_by_replica.end()) {
        total += r->second;
      }
    }
  }
  return total;
}

size_t MetricsStore::NumHandles(const std::string& deployment_key) const {
  auto d = deployments_.find(deployment_key);
  return d == deployments_.end() ? 0 : d->second.handles.size();
}

void MetricsStore::Prune() {
  std::erase_if(deployments_, [](const auto& d) {
    return d.second.handles.empty() && d.second.replicas.empty();
  });
}

}  // namespace serve::autoscaler
