#include <CLI/CLI.hpp>

#include "node/agent.h"

int main(int argc, char** argv) {
  CLI::App app{"serve-agent: starts and supervises the serve processes of one node"};
  serve::node::AgentOptions options;
  app.add_option("--session-dir", options.session_dir)->required();
  app.add_option("--node-id", options.node_id);
  app.add_flag("--head,!--worker", options.head, "start the controller on this node");
  app.add_option("--metrics-export-port", options.metrics_export_port,
                 "port of this node's Prometheus endpoint (0: any free port)")
      ->check(CLI::Range(0, 65535));
  app.add_flag("--forward-logs", options.forward_logs, "print children's output, prefixed");

  CLI11_PARSE(app, argc, argv);

  return serve::node::RunAgent(options);
}
