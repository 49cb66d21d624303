#pragma once

#include <string>
#include <vector>

namespace serve::controller {

/// Cluster-wide options, read from <session>/cluster.json (written by `serve start`/`serve run`).
struct ControllerOptions {
  std::string session_dir;
  std::string agent_address;          ///< Head node agent (starts proxies, replicas, builds).
  std::string node_id;                ///< Head node id.
  std::string http_host = "127.0.0.1";
  int http_port = 8000;               ///< 0: the proxy picks a free port and reports it.
  std::string root_path;
  double request_timeout_s = -1;      ///< < 0: none
  double keep_alive_timeout_s = 90;
  /// http_options.ssl_*, absolute paths ("" = not given): passed to every proxy.
  std::string ssl_keyfile, ssl_certfile, ssl_keyfile_password, ssl_ca_certs;
  int grpc_port = 9000;
  std::vector<std::string> grpc_servicer_functions;  ///< gRPC services the proxies accept
  double grpc_request_timeout_s = -1;                ///< < 0: none
  std::string proxy_location = "EveryNode";  ///< EveryNode | HeadOnly | Disabled
  std::string dashboard_host = "127.0.0.1";
  int dashboard_port = 8265;          ///< REST API; 0: any free port
  std::string app_dir;                ///< where declarative apps' libraries are looked for
  std::string redis_address;          ///< HOST:PORT[/db]; empty: file store in <session>/kv
  std::string redis_password;
  std::string cluster_name = "default";  ///< namespace of this cluster's keys in Redis
  int controller_port = 0;  ///< gRPC port at first start; 0: any free one
  double control_loop_interval_s = 0.1;      ///< $SERVE_CONTROL_LOOP_INTERVAL_S overrides.
  /// The head node's resources (Ray's dict, from <session>/node.json); null: not known, so
  /// every demand fits on the head (unit tests).
  std::string head_resources_json;
};

/// Reads <session>/cluster.json over the defaults (missing file: defaults).
ControllerOptions LoadClusterOptions(ControllerOptions base);

/// Runs the controller until SIGTERM: the gRPC Controller service, the control loop that
/// reconciles applications → deployments → replicas, health checks and the long-poll host.
/// Writes <session>/controller_address once it serves. Returns the exit code.
int RunController(const ControllerOptions& options);

}  // namespace serve::controller
