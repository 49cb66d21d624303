#pragma once

#include <string>
#include <vector>

#include "rpc/tls.h"

namespace serve::proxy {

/// The environment variable that carries http_options.ssl_keyfile_password to serve-proxy.
inline constexpr char kSslKeyfilePasswordEnv[] = "SERVE_SSL_KEYFILE_PASSWORD";

struct ProxyOptions {
  std::string controller_address;
  std::string node_id;
  std::string session_dir;
  std::string http_host = "127.0.0.1";
  int http_port = 8000;                        ///< 0: pick a free port (reported to the controller)
  size_t max_header_bytes = 16 * 1024;         ///< larger headers get 431
  size_t max_body_bytes = 100 * 1024 * 1024;   ///< larger bodies get 413
  double keep_alive_timeout_s = 90;            ///< idle keep-alive connections are closed
  double request_timeout_s = -1;               ///< > 0: end-to-end deadline, then 408
  /// A draining proxy exits once it has had no request in flight for this long since draining
  /// started (RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S).
  double min_draining_period_s = 30;
  /// gRPC ingress (GrpcProxy): runs when grpc_port > 0 and grpc_services is not empty.
  int grpc_port = 9000;
  std::vector<std::string> grpc_services;      ///< accepted fully-qualified service names
  double grpc_request_timeout_s = -1;          ///< > 0: deadline, then DEADLINE_EXCEEDED
  /// http_options.ssl_*: when enabled, HTTPS only, and the gRPC proxy uses TLS with the same
  /// certificate. Files that cannot be used make the proxy exit at start-up.
  rpc::TlsFiles tls;
};

/// Runs the HTTP proxy (and the gRPC one when enabled) until SIGTERM: keeps the route table and replica sets current through
/// long-poll and forwards requests through its router. Returns the exit code.
int RunProxy(const ProxyOptions& options);

}  // namespace serve::proxy
