#include <iostream>

#include <CLI/CLI.hpp>

#include "controller/controller.h"
#include "rpc/auth.h"

int main(int argc, char** argv) {
  CLI::App app{"serve-controller: the control plane of a serve cluster"};
  serve::controller::ControllerOptions options;
  app.add_option("--session-dir", options.session_dir)->required();
  app.add_option("--agent-address", options.agent_address)->required();
  app.add_option("--node-id", options.node_id)->required();
  CLI11_PARSE(app, argc, argv);
  if (auto st = serve::rpc::LoadClusterTokenFromEnvironment(); !st.ok()) {
    std::cerr << "serve-controller: " << st.message() << "\n";
    return 2;
  }
  return serve::controller::RunController(options);
}
