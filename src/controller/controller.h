#pragma once

#include <string>

namespace serve::controller {

struct ControllerOptions {
  std::string session_dir;
  std::string agent_address;          ///< Head node agent (starts proxies, replicas, builds).
  std::string node_id;                ///< Head node id.
  std::string http_host = "127.0.0.1";
  int http_port = 8000;               ///< 0: the proxy picks a free port and reports it.
  std::string proxy_location = "EveryNode";  ///< EveryNode | HeadOnly | Disabled
  double control_loop_interval_s = 0.1;      ///< $SERVE_CONTROL_LOOP_INTERVAL_S overrides.
};

/// Runs the controller until SIGTERM: the gRPC Controller service, the control loop that
/// reconciles applications → deployments → replicas, health checks and the long-poll host.
/// Writes <session>/controller_address once it serves. Returns the exit code.
int RunController(const ControllerOptions& options);

}  // namespace serve::controller
