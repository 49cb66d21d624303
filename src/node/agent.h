#pragma once

#include <string>
#include <vector>

namespace serve::node {

struct AgentOptions {
  std::string session_dir;
  std::string node_id;               ///< Empty: a random id.
  bool head = true;                  ///< Head node: starts and supervises the controller.
  bool forward_logs = false;         ///< Copy children's output to stdout, prefixed.
};

/// Runs the node agent until Shutdown (RPC) or SIGTERM/SIGINT: serves the Agent gRPC service,
/// starts and supervises processes on this node, reports each child's exit to the controller at
/// once (it owns the children: waitpid, no polling of pids), and on the way out stops every
/// child. Returns the exit code.
int RunAgent(const AgentOptions& options);

}  // namespace serve::node
