#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace serve::launch {

/// Root of session directories: --temp-dir, else $SERVE_TEMP_DIR, else /tmp/serve.
std::string TempRoot(const std::string& flag);

/// Creates <root>/session_<timestamp>_<pid> (or uses `dir` when given, keeping what it holds)
/// with logs/serve/ and points <root>/session_latest at it. The session directory is 0700 and
/// cluster.json (which can hold the Redis password) 0600.
absl::StatusOr<std::string> CreateSessionDir(const std::string& root, const std::string& dir = "");

/// The cluster token's file in a session directory (0600; rpc/auth.h, docs/security.md).
inline constexpr char kClusterTokenFile[] = "cluster_token";

/// The token a command uses to reach a cluster: the file `token_file` (--token-file), else
/// $SERVE_CLUSTER_TOKEN_FILE, else $SERVE_CLUSTER_TOKEN, else <root>/session_latest/cluster_token
/// when `root` is given and that file exists; nullopt when there is none. An error names a
/// file that cannot be read or holds no valid token.
absl::StatusOr<std::optional<std::string>> FindClusterToken(const std::string& token_file,
                                                            const std::string& root);

/// Cluster-wide options, written to <session>/cluster.json for the controller.
struct ClusterOptions {
  std::string http_host = "127.0.0.1";
  int http_port = 8000;
  std::string root_path;
  double request_timeout_s = -1;
  double keep_alive_timeout_s = 90;
  /// http_options.ssl_* ("" = not given); cluster.json is 0600 as it can hold the password.
  std::string ssl_keyfile, ssl_certfile, ssl_keyfile_password, ssl_ca_certs;
  int grpc_port = 9000;
  std::vector<std::string> grpc_servicer_functions;  ///< gRPC services the proxies accept
  double grpc_request_timeout_s = -1;
  std::string proxy_location = "EveryNode";
  std::string dashboard_host = "127.0.0.1";
  int dashboard_port = 8265;
  std::string app_dir;        ///< library search dir for declarative apps (absolute)
  std::string redis_address;  ///< HOST:PORT[/db]: state in Redis (fault tolerance)
  std::string redis_password;
  std::string cluster_name = "default";  ///< key namespace in Redis
  bool detached = false;      ///< `serve start`: outlives this process, logs to files only
  bool forward_logs = true;   ///< when not detached: print the processes' logs on stdout
  /// Port of the node's Prometheus endpoint: 0 = any free port, -1 = the agent's default
  /// (8080, or any free port when taken).
  int metrics_export_port = -1;
  std::string bin_dir;        ///< where serve-agent is; "" = $SERVE_BIN_DIR, else next to this
                              ///< executable
  std::vector<std::string> agent_args;  ///< more serve-agent options (node resources)
  /// IP the head binds and advertises (controller, agent, proxy, replicas); "" = 127.0.0.1
  /// (or $SERVE_NODE_IP). Worker nodes on other machines need a reachable one.
  std::string node_ip;
  /// The head controller's gRPC port (0: any free one). A fixed port lets a new head on the
  /// same Redis take the worker nodes back, which keep calling the old address.
  int controller_port = 0;
  /// The cluster token; "" = the session's own (a reused session) or a new random one.
  std::string token;
};

struct LocalCluster {
  std::string session_dir;
  pid_t agent_pid = -1;
  std::string controller_address;
  std::string dashboard_address;  ///< http://host:port of the REST API
  std::string metrics_address;    ///< http://host:port of the head node's metrics endpoint
};

/// Starts a head node agent (which starts the controller, its REST API and the proxy) and
/// waits until the controller serves. The agent runs in its own process group (session when
/// detached) so a terminal's Ctrl-C reaches only this process. The cluster token is written to
/// <session>/cluster_token (0600), given to the agent with --token-file and becomes this
/// process's token (rpc::SetClusterToken), so the caller can reach the cluster.
absl::StatusOr<LocalCluster> StartLocalCluster(const std::string& session_dir,
                                               const ClusterOptions& options);

/// A worker node: an agent that joins the cluster of the controller at `controller_address`.
struct WorkerOptions {
  std::string controller_address;  ///< the head controller's gRPC HOST:PORT
  std::string node_ip;             ///< "" = $SERVE_NODE_IP, else 127.0.0.1
  int metrics_export_port = -1;
  std::string bin_dir;
  std::vector<std::string> agent_args;  ///< node resources
  std::string token;               ///< the cluster's token (required)
};
struct WorkerNode {
  std::string session_dir;
  pid_t agent_pid = -1;
  std::string node_id;
  std::string node_ip;
  std::string metrics_address;
};

/// Starts a detached worker node agent and waits (30 s at most) until the controller accepted
/// it; the error names the reason (agent exit, refusal such as a wrong token, timeout). The
/// token is copied to the worker's <session>/cluster_token (0600) for its agent.
absl::StatusOr<WorkerNode> StartWorkerNode(const std::string& session_dir,
                                           const WorkerOptions& options);

/// Address of the REST API: `flag`, else $SERVE_DASHBOARD_ADDRESS, else
/// $RAY_DASHBOARD_ADDRESS, else the latest local session's, else http://localhost:8265.
std::string DashboardAddress(const std::string& flag, const std::string& temp_root);

/// The REST API address of the latest session under `root` when its node agent is alive on
/// this machine (so a stale address file, whose port another program may own by now, is not
/// taken for a running instance); nullopt otherwise.
std::optional<std::string> LiveSessionDashboard(const std::string& root);

/// Controller gRPC address of the latest session under `root`.
absl::StatusOr<std::string> FindControllerAddress(const std::string& root);

/// Asks the controller to delete every application and stop the whole cluster.
absl::Status RequestClusterShutdown(const std::string& controller_address);

/// Waits up to `timeout_s` for `pid` (our child) to exit; SIGTERM then SIGKILL after that.
void StopAgent(pid_t pid, double timeout_s);

/// `serve stop`: stops the latest session's cluster (any process that started it), with the
/// session's token. Returns false when none was running.
absl::StatusOr<bool> StopCluster(const std::string& root, double timeout_s);

}  // namespace serve::launch
