#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace serve::cli {

/// Root of session directories: --temp-dir, else $SERVE_TEMP_DIR, else /tmp/serve.
std::string TempRoot(const std::string& flag);

/// Creates <root>/session_<timestamp>_<pid> with logs/serve/ and points
/// <root>/session_latest at it.
absl::StatusOr<std::string> CreateSessionDir(const std::string& root);

struct LocalCluster {
  std::string session_dir;
  pid_t agent_pid = -1;
  std::string controller_address;
};

struct ClusterOptions {
  std::string http_host = "127.0.0.1";
  int http_port = 8000;
  bool forward_logs = true;
  bool tie_to_parent = true;  ///< The agent stops when this process dies.
};

/// Starts a head node agent (which starts the controller and the proxy) and waits until the
/// controller serves. The agent runs in its own process group so a terminal's Ctrl-C reaches
/// only this process, which then tears the cluster down in order.
absl::StatusOr<LocalCluster> StartLocalCluster(const std::string& session_dir,
                                               const ClusterOptions& options);

/// Address of the controller of the latest session under `root`.
absl::StatusOr<std::string> FindControllerAddress(const std::string& root);

/// ServeInstanceDetails JSON from the controller.
absl::StatusOr<nlohmann::json> GetDetails(const std::string& controller_address);

/// Asks the controller to delete every application and stop the cluster.
absl::Status RequestShutdown(const std::string& controller_address);

/// Waits up to `timeout_s` for `pid` (our child) to exit; SIGTERM then SIGKILL after that.
void StopAgent(pid_t pid, double timeout_s);

}  // namespace serve::cli
