// Model-multiplexed candidate selection of the Router (spec §9.2): model-id matching within
// the timeout, the replicas holding the model, and the fewest-models fallback.

#include <algorithm>
#include <chrono>
#include <limits>
#include <string>
#include <vector>

#include "router/router.h"

namespace serve::router {

Router::ReplicaEntry* Router::PickFor(DeploymentEntry& d, Pending& p) {
  const std::string& model = p.head.multiplexed_model_id();
  if (model.empty() || !model_aware_) return Pick(d);
  size_t n = d.replicas.size();
  std::vector<size_t> holders, fewest;
  int least = std::numeric_limits<int>::max();
  for (size_t i = 0; i < n; ++i) {
    const auto& ids = d.replicas[i].info.multiplexed_model_ids();
    if (std::find(ids.begin(), ids.end(), model) != ids.end()) holders.push_back(i);
    if (ids.size() < least) {
      least = ids.size();
      fewest.clear();
    }
    if (ids.size() == least) fewest.push_back(i);
  }
  if (std::chrono::steady_clock::now() < p.match_deadline) {
    if (!holders.empty()) {
      d.fallback_models.erase(model);
      return PickAmong(d, holders.size(), holders.data());  // null: wait for a holder
    }
    if (d.fallback_models.count(model) && !p.fallback_owner) return nullptr;
    ReplicaEntry* r = PickAmong(d, fewest.size(), fewest.data());
    if (r != nullptr) {
      d.fallback_models.insert(model);
      p.fallback_owner = true;
    }
    return r;
  }
  if (ReplicaEntry* r = PickAmong(d, fewest.size(), fewest.data())) return r;
  return Pick(d);
}

}  // namespace serve::router
