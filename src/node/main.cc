#include <CLI/CLI.hpp>

#include "node/agent.h"

int main(int argc, char** argv) {
  CLI::App app{"serve-agent: starts and supervises the serve processes of one node"};
  serve::node::AgentOptions options;
  app.add_option("--session-dir", options.session_dir)->required();
  app.add_option("--node-id", options.node_id);
  app.add_flag("--head,!--worker", options.head, "start the controller on this node");
  app.add_flag("--forward-logs", options.forward_logs, "print children's output, prefixed");
  std::string http_host, http_port, proxy_location;
  app.add_option("--http-host", http_host, "passed to the controller");
  app.add_option("--http-port", http_port, "passed to the controller");
  app.add_option("--proxy-location", proxy_location, "passed to the controller");
  CLI11_PARSE(app, argc, argv);
  if (!http_host.empty()) options.controller_args.insert(options.controller_args.end(), {"--http-host", http_host});
  if (!http_port.empty()) options.controller_args.insert(options.controller_args.end(), {"--http-port", http_port});
  if (!proxy_location.empty()) {
    options.controller_args.insert(options.controller_args.end(), {"--proxy-location", proxy_location});
  }
  return serve::node::RunAgent(options);
}
