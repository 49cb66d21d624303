#include <iostream>

#include <CLI/CLI.hpp>

#include "replica/replica.h"
#include "rpc/auth.h"

int main(int argc, char** argv) {
  CLI::App app{"serve-replica: runs one deployment replica (or builds an application graph)"};
  serve::replica::ReplicaOptions replica;
  serve::replica::BuildOptions build;
  bool build_mode = false;
  std::string controller;
  app.add_option("--controller-address", controller);
  app.add_option("--replica-id", replica.replica_id);
  app.add_option("--session-dir", replica.session_dir);
  app.add_option("--node-id", replica.node_id);
  app.add_option("--log-file", replica.log_file);
  app.add_flag("--build", build_mode, "build an application graph and report it");
  app.add_option("--build-id", build.build_id);
  app.add_option("--import-path", build.import_path);
  app.add_option("--app-dir", build.app_dir);
  app.add_option("--args-json", build.args_json);
  app.add_flag("--print", build.print, "print the graph as JSON instead of reporting it");
  CLI11_PARSE(app, argc, argv);
  // `--print` (serve build) talks to no cluster.
  if (!build.print) {
    if (auto st = serve::rpc::LoadClusterTokenFromEnvironment(); !st.ok()) {
      std::cerr << "serve-replica: " << st.message() << "\n";
      return 2;
    }
  }
  if (build_mode) {
    build.controller_address = controller;
    build.log_file = replica.log_file;
    return serve::replica::RunBuild(build);
  }
  replica.controller_address = controller;
  return serve::replica::RunReplica(replica);
}
