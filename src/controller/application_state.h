#pragma once

// Applications (spec §3.1): deploy and delete, builds in throw-away processes, route-prefix
// uniqueness, declarative pruning, and turning a build's graph into deployment specs. Decides
// only; build processes are started through actions. Not thread-safe.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/schema.h"
#include "controller/actions.h"
#include "controller/clock.h"
#include "controller/context.h"
#include "controller/deployment_state.h"
#include "controller/runtime_env.h"
#include "serve/v1/controller.pb.h"

namespace serve::controller {

struct AppState {
  std::string name;
  std::optional<std::string> route_prefix;
  std::string import_path;
  std::string args_json;
  std::string app_dir;
  std::string source = "imperative";  ///< imperative | declarative
  nlohmann::json submitted;           ///< deployed_app_config (declarative only)
  nlohmann::json runtime_env = nlohmann::json::object();
  PreparedRuntimeEnv prepared_env;
  std::vector<config::DeploymentOverride> overrides;
  std::optional<nlohmann::json> logging_config;  ///< the application's (null: unset)
  std::string code_key;       ///< import_path + runtime_env + args
  std::string graph;          ///< last built graph (msgpack)
  std::string library_stamp;  ///< size+mtime of the library when built
  std::string build_id;
  int build_pid = 0;
  std::string build_log;  ///< the build process's log file
  /// The build process exited (with this code) before its result arrived; the result still
  /// counts until kLateBuildResultS later, since the report and the exit travel separately.
  std::optional<int> build_exit_code;
  double build_exited_at = 0;
  bool building = false;
  bool build_failed = false;
  std::string build_error;
  bool deleting = false;
  double last_deployed_time_s = 0;
  std::string ingress;
  std::vector<std::string> deployments;
};

class ApplicationStateManager {
 public:
  static constexpr double kLateBuildResultS = 2;

  ApplicationStateManager(const ControllerContext& context, Clock& clock, Random& random,
                          DeploymentStateManager& deployments);

  /// Deploys the applications of `cfg` (`source` "imperative" or "declarative"). Declarative
  /// deploys delete the declarative apps not listed and set target_capacity. Unchanged code
  /// reuses the last build; changed code (import path, runtime_env, args, or the library on
  /// disk) is rebuilt. kAlreadyExists for a route prefix taken by another app;
  /// kInvalidArgument for a bad runtime_env; kUnavailable while shutting down.
  absl::Status Deploy(const config::ServeDeployConfig& cfg, const std::string& source,
                      const std::string& app_dir, Actions& actions);
  /// kNotFound when there is no such application.
  absl::Status Delete(const std::string& name);
  void DeleteAll();
  /// Refuses deploys from now on (the instance is shutting down).
  void set_shutting_down() { shutting_down_ = true; }

  // Events.
  void OnBuildResult(const v1::BuildResult& msg);
  void OnBuildProcessStarted(const std::string& app, const std::string& build_id,
                             const absl::StatusOr<int>& pid);
  void OnBuildExit(const std::string& app, int pid, int exit_code);

  /// Finishes deleting applications whose deployments are all gone; fails builds whose
  /// process exited kLateBuildResultS ago without a result.
  void Step();

  const std::map<std::string, AppState>& apps() const { return apps_; }
  /// The top-level logging_config of the last declarative config, every field set (the
  /// controller's and proxies' logging; deployments fall back to it).
  const nlohmann::json& global_logging_config() const { return global_logging_config_; }
  void set_global_logging_config(const std::optional<nlohmann::json>& lc);
  /// The top-level logging_config as given (nullopt: unset).
  const std::optional<nlohmann::json>& global_logging_config_set() const {
    return global_logging_config_set_;
  }
  /// Restarts the build of a restored application whose build died with the old controller.
  void Restore(AppState app, bool build_running, Actions& actions);
  void Clear() { apps_.clear(); }

 private:
  StartBuildAction MakeBuild(AppState& app);
  void OnBuildProcessExited(AppState& app, int exit_code);
  void ApplyGraph(AppState& app, const std::string& graph_msgpack);
  void DeleteApp(AppState& app);

  const ControllerContext& context_;
  Clock& clock_;
  Random& random_;
  DeploymentStateManager& deployments_;
  std::map<std::string, AppState> apps_;
  bool shutting_down_ = false;
  std::optional<nlohmann::json> global_logging_config_set_;  ///< as given (null: unset)
  nlohmann::json global_logging_config_;                     ///< resolved
  /// pid -> exit code of build processes whose exit arrived before the agent's start report.
  std::map<int, int> early_build_exits_;
};

}  // namespace serve::controller
