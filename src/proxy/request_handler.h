#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "proxy/route_table.h"
#include "router/router.h"
#include "rpc/http_server.h"

namespace serve::proxy {

using ProxyRequest = rpc::HttpServerRequest;
using ProxyResponse = rpc::HttpServerResponse;

/// Turns HTTP requests into routed data-plane calls: special endpoints (/-/routes,
/// /-/healthz), longest-prefix route matching, X-Request-ID, and error mapping (404/500/503).
/// Not thread-safe: runs on the router's executor.
class RequestHandler {
 public:
  explicit RequestHandler(router::Router& router) : router_(router) {}

  void SetRouteTable(RouteTable table) {
    routes_ = std::move(table);
    populated_ = true;
  }
  const RouteTable& routes() const { return routes_; }

  /// Handles one request; `done` runs exactly once (possibly before Handle returns).
  void Handle(ProxyRequest request, std::function<void(ProxyResponse)> done);

 private:
  router::Router& router_;  // Not owned; must outlive this.
  RouteTable routes_;
  bool populated_ = false;
};

}  // namespace serve::proxy
