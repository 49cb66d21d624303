#pragma once

// Internal to serve_cli: the `serve` subcommands (each returns the process exit code) and the
// helpers they share. RunCli (cli.cc) parses the command line and calls one command.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "launch/cluster.h"

namespace serve::cli::detail {

// ---- Shared helpers (cli_common.cc) ----------------------------------------------------------

/// The HTTP port once a proxy reported HEALTHY (with its bound port), else nullopt.
std::optional<int> ReadyProxyPort(const nlohmann::json& details);

/// The reason the HTTP proxy failed to start for good (UNHEALTHY before any proxy was ready):
/// its message in the details, else the line it wrote into the session directory
/// (proxy/proxy.cc), else a pointer to the logs. nullopt while no proxy has failed.
std::optional<std::string> FailedProxy(const nlohmann::json& details,
                                       const std::string& session_dir);

/// The flags that make a later command reach this instance: `-a REST` when a plain command
/// would resolve another REST address (a non-default temp dir, or $SERVE_DASHBOARD_ADDRESS /
/// $RAY_DASHBOARD_ADDRESS pointing elsewhere); `--temp-dir ROOT` for a non-default temp dir.
struct FollowUpFlags {
  std::string address;   // " -a http://..." or ""
  std::string temp_dir;  // " --temp-dir ROOT" or ""
};
FollowUpFlags FollowUp(const std::string& root, const std::string& dashboard);

/// Absolute, normalised form of a user-given directory ("" means the current directory).
std::string AbsoluteDir(const std::string& dir);

/// Prints "Error: <message>" to stderr; returns 1.
int Fail(const std::string& message);

/// Whether `target` names a config file (.yaml, .yml or .json) rather than an import path.
bool LooksLikeConfigFile(const std::string& target);

/// "key=value" builder arguments; kInvalidArgument names the first malformed one.
absl::StatusOr<std::map<std::string, std::string>> ParseKeyValues(
    const std::vector<std::string>& items);

/// The config document (JSON) of a config file, with relative working_dir paths made absolute
/// against the file's directory. Validated locally so errors show before anything starts;
/// unknown fields are warned about on stderr, or rejected when `strict`.
absl::StatusOr<nlohmann::json> LoadConfigDocument(const std::string& path, bool strict);

/// GET /api/serve/applications/ (ServeInstanceDetails); a non-200 reply is kUnavailable.
absl::StatusOr<nlohmann::json> GetDetailsRest(const std::string& dashboard);

/// PUT /api/serve/applications/; a non-200 reply is kInvalidArgument with its body.
absl::Status PutConfig(const std::string& dashboard, const nlohmann::json& doc);

/// Whether a serve REST API answers at `dashboard` (GET /api/ray/version within `timeout_s`).
bool RestReachable(const std::string& dashboard, double timeout_s = 2);

/// The runtime_env given by `--runtime-env FILE` (YAML or JSON), `--runtime-env-json TEXT` and
/// `--working-dir DIR` (the last wins for working_dir; a local one is made absolute against the
/// current directory). An empty object when no flag is set; giving both FILE and TEXT is
/// kInvalidArgument.
absl::StatusOr<nlohmann::json> RuntimeEnvFromFlags(const std::string& file,
                                                   const std::string& json_text,
                                                   const std::string& working_dir);

/// Fills `app`'s runtime_env with `defaults`: fields the app sets win, env_vars are merged
/// (the app's values win).
void MergeRuntimeEnv(nlohmann::json& app, const nlohmann::json& defaults);

/// Prepends `dir` to runtime_env.env_vars.SERVE_APP_PATH of `app` (the library search path).
void AddAppPath(nlohmann::json& app, const std::string& dir);

/// Changes the declarative applications without touching the others: PUTs the instance's
/// current declarative config (each app's deployed_app_config, target_capacity kept) with the
/// applications in `add` added or replaced (by name) and those named in `remove` left out.
/// Imperatively deployed applications are unaffected by a PUT.
absl::Status PutMerged(const std::string& dashboard, const nlohmann::json& add,
                       const std::vector<std::string>& remove);

// ---- Commands ----------------------------------------------------------------------------------

struct RunArgs {
  std::string target;
  std::vector<std::string> kv;
  std::string app_dir = ".";
  std::string name = "default";
  std::string route_prefix = "/";
  launch::ClusterOptions cluster;
  std::string temp_dir;
  bool strict = false;
  std::string address;           ///< -a: attach to the instance with this REST API
  bool non_blocking = false;     ///< return once every application is RUNNING
  std::string runtime_env_file;  ///< --runtime-env
  std::string runtime_env_json;  ///< --runtime-env-json
  std::string working_dir;       ///< --working-dir
  bool reload = false;           ///< --reload: rebuild and redeploy on source changes
  std::string reload_command;    ///< build command ("" = `cmake --build <app-dir>`)
  std::string reload_dir;        ///< sources watched ("" = the app dir's CMake source dir)
};

/// `serve run` (cli_run.cc). Attaches to a running instance (the one `-a` names, else the one
/// $SERVE_DASHBOARD_ADDRESS / $RAY_DASHBOARD_ADDRESS / the latest live local session names,
/// when it answers) and deploys there, or starts a local instance. Blocks until SIGINT/SIGTERM (unless
/// non_blocking), then deletes the applications it deployed (attached) or shuts down the
/// instance it started.
int CmdRun(RunArgs a);

/// `serve start` (cli_instance.cc): a detached instance; returns once its proxy is ready.
/// `serve start --address HEAD`: a detached worker node agent joining that cluster with
/// `options.token`.
int CmdStartWorker(const launch::ClusterOptions& options, const std::string& temp_dir,
                   const std::string& controller_address);
int CmdStart(launch::ClusterOptions options, const std::string& temp_dir,
             const std::string& app_dir, const std::string& session_dir);
/// `serve stop` (cli_instance.cc).
int CmdStop(const std::string& temp_dir);
/// `serve shutdown` (cli_instance.cc): deletes every application, after asking unless `yes`.
int CmdShutdown(const std::string& address, bool yes);
/// `serve drain-node`: POST /api/serve/nodes/<id>/drain.
int CmdDrainNode(const std::string& address, const std::string& node_id, double deadline_s);

/// `serve deploy` (cli_deploy.cc). `app_dir` (optional) is added to each application's library
/// search path as runtime_env.env_vars.SERVE_APP_PATH (prepended to one the config sets), so
/// it must be a directory the instance's machine can read.
/// `runtime_env` (RuntimeEnvFromFlags) becomes an import path's runtime_env; with a config file
/// it is ignored with a warning, as Ray's.
int CmdDeploy(const std::string& target, const std::vector<std::string>& kv_items,
              const std::string& address, const std::string& name,
              const std::string& route_prefix, const std::string& app_dir, bool strict,
              const nlohmann::json& runtime_env);
/// `serve config` (cli_deploy.cc): the deployed config(s), or only application `name`.
int CmdConfig(const std::string& address, const std::string& name);
/// `serve status` (cli_deploy.cc).
int CmdStatus(const std::string& address, const std::string& name);
/// `serve build` (cli_deploy.cc): builds each application in a throw-away process (user code
/// never runs in the CLI) and prints (or writes to `output`) the full config with every
/// deployment's options.
int CmdBuild(const std::vector<std::string>& targets, const std::string& app_dir,
             const std::string& output, const std::vector<std::string>& grpc_services = {});

}  // namespace serve::cli::detail
