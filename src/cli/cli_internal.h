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
};

/// `serve run` (cli_run.cc): starts a local instance, deploys, blocks until SIGINT/SIGTERM,
/// then shuts the instance down.
int CmdRun(RunArgs a);

/// `serve start` (cli_instance.cc): a detached instance; returns once its proxy is ready.
int CmdStart(launch::ClusterOptions options, const std::string& temp_dir,
             const std::string& app_dir, const std::string& session_dir);
/// `serve stop` (cli_instance.cc).
int CmdStop(const std::string& temp_dir);
/// `serve shutdown` (cli_instance.cc): deletes every application, after asking unless `yes`.
int CmdShutdown(const std::string& address, bool yes);

/// `serve deploy` (cli_deploy.cc). `app_dir` (optional) is added to each application's library
/// search path as runtime_env.env_vars.SERVE_APP_PATH (prepended to one the config sets), so
/// it must be a directory the instance's machine can read.
int CmdDeploy(const std::string& target, const std::vector<std::string>& kv_items,
              const std::string& address, const std::string& name,
              const std::string& route_prefix, const std::string& app_dir, bool strict);
/// `serve config` (cli_deploy.cc): the deployed config(s), or only application `name`.
int CmdConfig(const std::string& address, const std::string& name);
/// `serve status` (cli_deploy.cc).
int CmdStatus(const std::string& address, const std::string& name);
/// `serve build` (cli_deploy.cc): builds each application in a throw-away process (user code
/// never runs in the CLI) and prints (or writes to `output`) the full config with every
/// deployment's options.
int CmdBuild(const std::vector<std::string>& targets, const std::string& app_dir,
             const std::string& output);

}  // namespace serve::cli::detail
