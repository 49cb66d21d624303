#pragma once

#include <string>
#include <vector>

namespace serve::node {

struct AgentOptions {
  std::string session_dir;
  std::string node_id;               ///< Empty: a random id.
  bool head = true;                  ///< Head node: starts and supervises the controller.
  bool forward_logs = false;         ///< Copy children's output to stdout, prefixed.
  /// Port of this node's Prometheus endpoint (GET /metrics): 0 = any free port; -1 = the
  /// default, kDefaultMetricsExportPort, or any free port when that one is taken.
  int metrics_export_port = -1;
};

inline constexpr int kDefaultMetricsExportPort = 8080;

/// Runs the node agent until Shutdown (RPC) or SIGTERM/SIGINT: serves the Agent gRPC service,
/// starts and supervises processes on this node, reports each child's exit to the controller at
/// once (it owns the children: waitpid, no polling of pids), and on the way out stops every
/// child. Returns the exit code. Serves the merged metrics its children push (Agent.PushMetrics)
/// at http://<node ip>:<port>/metrics, writes that URL to <session>/metrics_address and adds
/// the endpoint to <session>/prom_metrics_service_discovery.json (Prometheus file-based
/// service discovery).
int RunAgent(const AgentOptions& options);

}  // namespace serve::node
