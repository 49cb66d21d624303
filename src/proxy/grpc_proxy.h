#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>

#include "proxy/proxy_metrics.h"
#include "proxy/route_table.h"
#include "router/router.h"
#include "rpc/tls.h"

namespace grpc {
class Server;
}

namespace serve::proxy {

struct GrpcProxyOptions {
  std::string host = "127.0.0.1";
  int port = 9000;  ///< 0: any free port
  /// Fully-qualified names of the user services accepted ("pkg.Service"); calls of other
  /// services get UNIMPLEMENTED.
  std::vector<std::string> services;
  double request_timeout_s = -1;  ///< > 0: end-to-end deadline, then DEADLINE_EXCEEDED
  /// Set: TLS with this certificate (client certificates are not requested); else plaintext.
  std::optional<rpc::TlsMaterial> tls;
};

/// The gRPC ingress (spec §8.3): a generic gRPC service that forwards any method of an
/// accepted service, as raw bytes, to the ingress of the application named by the `application`
/// metadata (the only application when there is one) through the proxy's router, and answers
/// /ray.serve.RayServeAPIService/{ListApplications,Healthz} itself. Unary and server-streaming
/// calls: the replica's reply says which. Status codes: unknown application NOT_FOUND, timeout
/// DEADLINE_EXCEEDED, client cancel CANCELLED (cancelled on the replica too), back-pressure and
/// unavailable deployments UNAVAILABLE, a code the handler set kept, any other failure
/// INTERNAL. Every reply carries the `request_id` trailing metadata.
///
/// Threading: gRPC's threads receive calls and hand them to `executor` (the router's), where
/// routing and every reply decision happen; SetRouteTable must be called there too.
class GrpcProxy {
 public:
  GrpcProxy(router::Router& router, boost::asio::any_io_executor executor,
            GrpcProxyOptions options);
  ~GrpcProxy();
  GrpcProxy(const GrpcProxy&) = delete;
  GrpcProxy& operator=(const GrpcProxy&) = delete;

  /// Binds and starts serving; returns the bound port. Throws std::runtime_error naming the
  /// address when it cannot bind.
  int Start();
  /// Replaces the applications served (on the executor).
  void SetRouteTable(const RouteTable& table);
  /// Records every call (not owned; must outlive this; a kGrpc ProxyMetrics). Before Start().
  void set_metrics(ProxyMetrics* metrics);
  /// Stops accepting calls and ends those in flight (any thread but the executor's).
  void Shutdown();

  struct State;  // shared with calls in flight

 private:
  std::shared_ptr<State> state_;
  class Service;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
};

/// True when gRPC ingress should run: a port > 0 and at least one service (as in Ray Serve).
inline bool GrpcIngressEnabled(int port, const std::vector<std::string>& services) {
  return port > 0 && !services.empty();
}

}  // namespace serve::proxy
