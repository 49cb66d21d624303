#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "proxy/proxy_metrics.h"
#include "proxy/route_table.h"
#include "router/router.h"
#include "rpc/http_server.h"

namespace serve::proxy {

using ProxyRequest = rpc::HttpServerRequest;
using ProxyResponse = rpc::HttpServerResponse;

/// What a streamed response (HTTP or gRPC) may hold in the proxy for a client that does not
/// read it fast enough: $SERVE_PROXY_STREAM_MAX_BUFFERED_BYTES, default 64 MiB. Past it the
/// stream is cancelled and the client's connection ends (rpc::ChunkQueue::set_max_queued_bytes).
size_t MaxStreamBufferedBytes();

/// Turns HTTP requests into routed data-plane calls: special endpoints (/-/routes,
/// /-/healthz), longest-prefix route matching, X-Request-ID, and error mapping (404/500/503).
/// Not thread-safe: runs on the router's executor.
class RequestHandler {
 public:
  /// `request_timeout_s` > 0: requests not answered in time get 408 and are cancelled.
  RequestHandler(router::Router& router, boost::asio::any_io_executor executor,
                 double request_timeout_s)
      : router_(router), executor_(std::move(executor)), request_timeout_s_(request_timeout_s) {}

  void SetRouteTable(RouteTable table) {
    routes_ = std::move(table);
    populated_ = true;
  }
  const RouteTable& routes() const { return routes_; }
  /// Records every request (not owned; must outlive this). Unset: nothing is recorded.
  void set_metrics(ProxyMetrics* metrics) { metrics_ = metrics; }
  /// Draining (spec §8.1): /-/healthz answers 503 "This node is being drained."; requests are
  /// still served.
  void set_draining(bool draining) { draining_ = draining; }
  /// Requests received and not answered yet.
  int ongoing() const { return *ongoing_; }

  /// Handles one request; `done` runs exactly once (possibly before Handle returns).
  void Handle(ProxyRequest request, std::function<void(ProxyResponse)> done);

 private:
  router::Router& router_;  // Not owned; must outlive this.
  boost::asio::any_io_executor executor_;
  double request_timeout_s_;
  RouteTable routes_;
  bool populated_ = false;
  bool draining_ = false;
  ProxyMetrics* metrics_ = nullptr;
  std::shared_ptr<int> ongoing_ = std::make_shared<int>(0);  ///< shared with pending `done`s
};

}  // namespace serve::proxy
