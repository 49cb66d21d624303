#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace serve::proxy {

struct Route {
  std::string route_prefix;
  std::string app_name;
  std::string deployment;  ///< Ingress deployment.
  /// The router's key for the ingress, "app#deployment" (filled by RouteTable).
  std::string key = {};
};

/// HTTP routes of the running applications, matched by longest route prefix (spec §8.2):
/// `/a` matches `/a`, `/a/` and `/a/c` but not `/ab`; `/` matches everything.
class RouteTable {
 public:
  RouteTable() = default;
  explicit RouteTable(std::vector<Route> routes);
  /// The route for `path` (without query string), or nullopt.
  /// The matching route (valid while this table lives), or nullptr.
  const Route* Match(std::string_view path) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;  // sorted by decreasing prefix length
};

}  // namespace serve::proxy
