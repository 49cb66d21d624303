#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace serve::proxy {

struct Route {
  std::string route_prefix;
  std::string app_name;
  std::string deployment;  ///< Ingress deployment.
};

/// HTTP routes of the running applications, matched by longest route prefix (spec §8.2):
/// `/a` matches `/a`, `/a/` and `/a/c` but not `/ab`; `/` matches everything.
class RouteTable {
 public:
  RouteTable() = default;
  explicit RouteTable(std::vector<Route> routes);
  /// The route for `path` (without query string), or nullopt.
  std::optional<Route> Match(std::string_view path) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;  // sorted by decreasing prefix length
};

}  // namespace serve::proxy
