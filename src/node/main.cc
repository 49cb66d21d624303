#include <iostream>

#include <CLI/CLI.hpp>

#include "node/agent.h"

int main(int argc, char** argv) {
  CLI::App app{"serve-agent: starts and supervises the serve processes of one node"};
  serve::node::AgentOptions options;
  app.add_option("--session-dir", options.session_dir)->required();
  app.add_option("--node-id", options.node_id);
  app.add_flag("--head,!--worker", options.head, "start the controller on this node");
  app.add_option("--controller-address", options.controller_address,
                 "worker node: the head controller's gRPC address HOST:PORT");
  app.add_option("--node-ip", options.node_ip, "IP this node binds and advertises");
  app.add_option("--labels", options.labels_json,
                 R"(node labels as a JSON object of strings, e.g. '{"zone": "a"}')");
  app.add_option("--metrics-export-port", options.metrics_export_port,
                 "port of this node's Prometheus endpoint (0: any free port)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--token-file", options.token_file,
                 "file holding the cluster token (default $SERVE_CLUSTER_TOKEN_FILE, else "
                 "$SERVE_CLUSTER_TOKEN)");
  app.add_flag("--forward-logs", options.forward_logs, "print children's output, prefixed");
  app.add_option("--num-cpus", options.resources.num_cpus, "CPUs to offer (default: detected)");
  app.add_option("--num-gpus", options.resources.num_gpus,
                 "GPUs to offer (default: counted through the CUDA runtime, 0 without it)");
  app.add_option("--memory", options.resources.memory_bytes,
                 "memory to offer, bytes (default: available memory)");
  app.add_option("--resources", options.resources.resources_json,
                 R"(custom resources as a JSON object, e.g. '{"TPU": 4}')");

  CLI11_PARSE(app, argc, argv);
  if (!options.head && options.controller_address.empty()) {
    std::cerr << "serve-agent: --worker needs --controller-address\n";
    return 2;
  }

  return serve::node::RunAgent(options);
}
