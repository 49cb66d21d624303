#pragma once

#include <string>

namespace serve::replica {

struct ReplicaOptions {
  std::string replica_id;
  std::string controller_address;  ///< host:port of the controller's gRPC service.
  std::string session_dir;
  std::string node_id;
  std::string log_file;            ///< Empty: <session>/logs/serve/replica_<app>_<dep>_<id>.log
};

/// Runs one replica until SIGTERM/SIGINT: fetches its spec from the controller, loads the app
/// library, constructs the user class (reporting failures to the controller), serves the data
/// plane and the control service, then drains and exits. Returns the process exit code.
int RunReplica(const ReplicaOptions& options);

struct BuildOptions {
  std::string build_id;
  std::string controller_address;
  std::string import_path;
  std::string app_dir;
  std::string args_json;  ///< JSON object of builder args.
  std::string log_file;
  bool print = false;     ///< print the graph (names and options) to stdout instead of reporting
};

/// Builds an application graph in this (throw-away) process and reports it to the controller,
/// so user code never runs inside the controller. Returns the exit code.
int RunBuild(const BuildOptions& options);

}  // namespace serve::replica
