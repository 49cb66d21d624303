#pragma once

// Programs outside the cluster ("Local Development using serve.run" in Ray Serve): start or
// connect to an instance, deploy an application, call it through a handle, inspect and delete
// it. Link libserve_client.so: target serve::client (in-tree or from find_package(serve)).
//
//   // Connects to the local `serve start` instance, or starts one owned by this program.
//   auto app = serve::run("composition:arithmetic_builder", {.name = "calc"});
//   serve::HttpRequest req;  req.query_string = "x=3";
//   serve::Json out = app.remote<serve::Json>(req).result(std::chrono::seconds(10));
//   serve::delete_app("calc");

#include <map>
#include <optional>
#include <string>

#include <serve/duration.h>
#include <serve/handle.h>
#include <serve/json.h>
#include <serve/version.h>

namespace serve {

struct ClientOptions {
  std::string temp_dir{};            ///< "" = $SERVE_TEMP_DIR, else /tmp/serve
  std::string controller_address{};  ///< "" = from <temp_dir>/session_latest/controller_address
  /// File holding the cluster token; "" = $SERVE_CLUSTER_TOKEN_FILE, else $SERVE_CLUSTER_TOKEN,
  /// else <temp_dir>/session_latest/cluster_token (docs/security.md).
  std::string token_file{};
};

/// Connects this process to a running instance; handles made afterwards call into it.
/// Throws serve::ServeException when no instance can be found. Calling it again reconnects.
SERVE_EXPORT void connect(const ClientOptions& options = {});

/// A local instance started by this program (Ray's serve.start()).
struct StartOptions {
  std::string temp_dir{};               ///< "" = $SERVE_TEMP_DIR, else /tmp/serve
  std::string http_host = "127.0.0.1";
  int http_port = 8000;                 ///< 0: any free port
  int dashboard_port = 8265;            ///< REST API; 0: any free port
};

/// Starts a local instance (head agent, controller, proxy) in a new session under `temp_dir`
/// and connects to it. It belongs to this program: it stops at shutdown() or when the thread
/// that started it exits (the process, usually). Its logs go to the session's log files. Throws
/// serve::ServeException when it cannot start (e.g. a port in use).
SERVE_EXPORT void start(const StartOptions& options = {});

struct RunOptions {
  std::string name = "default";
  std::optional<std::string> route_prefix = "/";  ///< nullopt: not exposed over HTTP
  std::string app_dir = ".";                      ///< where lib<module>.so is found
  std::map<std::string, std::string> args{};      ///< builder arguments
  Duration timeout_s = std::chrono::seconds(60);  ///< to reach RUNNING (a number: seconds)
  StartOptions start{};  ///< when not connected and no instance runs under start.temp_dir
};

/// Deploys `import_path` (module:app) to the connected instance, waits until it is RUNNING and
/// returns a handle to its ingress. When not connected it connects to the instance running
/// under `options.start.temp_dir`, and starts one with `options.start` if there is none. Throws
/// serve::ServeException with the status message when it fails to deploy or times out.
SERVE_EXPORT DeploymentHandle run(const std::string& import_path, const RunOptions& options = {});

/// ServeInstanceDetails of the connected instance (the REST API's JSON).
SERVE_EXPORT Json status();

/// Deletes application `name` and waits (up to `timeout`; a number means seconds) until it is
/// gone.
SERVE_EXPORT void delete_app(const std::string& name,
                             Duration timeout = std::chrono::seconds(60));

/// Deletes every application and stops the instance (waiting for one this program started to
/// exit); disconnects this process.
SERVE_EXPORT void shutdown();

}  // namespace serve
