#pragma once

#include <string>
#include <vector>

#include "node/resources.h"

namespace serve::node {

struct AgentOptions {
  std::string session_dir;
  std::string node_id;               ///< Empty: a random id.
  bool head = true;                  ///< Head node: starts and supervises the controller.
  /// Worker node: the head controller's gRPC address (HOST:PORT). The agent registers there
  /// (RegisterNode) and heartbeats every $SERVE_NODE_HEARTBEAT_PERIOD_S (1 s).
  std::string controller_address;
  /// IP this node binds and advertises (its processes get $SERVE_NODE_IP); "" = LocalNodeIp().
  std::string node_ip;
  /// Labels reported to the controller, a JSON object of strings; "" for none.
  std::string labels_json;
  bool forward_logs = false;         ///< Copy children's output to stdout, prefixed.
  ResourceOverrides resources;       ///< Unset fields: detected from the machine.
  /// Port of this node's Prometheus endpoint (GET /metrics): 0 = any free port; -1 = the
  /// default, kDefaultMetricsExportPort, or any free port when that one is taken.
  int metrics_export_port = -1;
  /// File holding the cluster token; "" = $SERVE_CLUSTER_TOKEN_FILE, else $SERVE_CLUSTER_TOKEN.
  /// Required: the agent copies it to <session>/cluster_token (0600) and its children get
  /// $SERVE_CLUSTER_TOKEN_FILE pointing there (never the token itself).
  std::string token_file;
};

inline constexpr int kDefaultMetricsExportPort = 8080;

/// Runs the node agent until Shutdown (RPC) or SIGTERM/SIGINT: serves the Agent gRPC service,
/// starts and supervises processes on this node, reports each child's exit to the controller at
/// once (it owns the children: waitpid, no polling of pids), and on the way out stops every
/// child. Resolves the node's resources first (an invalid override: message on stderr, exit
/// code 2) and writes them with the node id to <session>/node.json.
/// Serves the merged metrics its children push (Agent.PushMetrics)
/// at http://<node ip>:<port>/metrics, writes that URL to <session>/metrics_address and adds
/// the endpoint to <session>/prom_metrics_service_discovery.json (Prometheus file-based
/// service discovery).
int RunAgent(const AgentOptions& options);

}  // namespace serve::node
