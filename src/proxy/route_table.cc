#include "proxy/route_table.h"

#include <algorithm>

#include "common/ids.h"

namespace serve::proxy {

RouteTable::RouteTable(std::vector<Route> routes) : routes_(std::move(routes)) {
  for (Route& r : routes_) r.key = DeploymentId{r.app_name, r.deployment}.Key();
  std::stable_sort(routes_.begin(), routes_.end(), [](const Route& a, const Route& b) {
    return a.route_prefix.size() > b.route_prefix.size();
  });
}

const Route* RouteTable::Match(std::string_view path) const {
  for (const Route& r : routes_) {
    const std::string& p = r.route_prefix;
    if (p.empty()) continue;
    if (path.substr(0, p.size()) != p) continue;
    if (p.back() == '/' || path.size() == p.size() || path[p.size()] == '/') return &r;
  }
  return nullptr;
}

}  // namespace serve::proxy
