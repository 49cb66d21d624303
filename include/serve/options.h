#pragma once

#include <map>
#include <optional>
#include <string>

#include <serve/json.h>
#include <serve/version.h>

namespace serve {

/// Resources of one replica (`ray_actor_options` in Ray Serve). Unset num_cpus means 1 CPU.
struct ActorOptions {
  std::optional<double> num_cpus;
  std::optional<double> num_gpus;
  std::optional<double> memory;
  std::map<std::string, double> resources;
};

/// Per-deployment logging (`logging_config`).
struct LoggingConfig {
  std::string encoding = "TEXT";   ///< TEXT | JSON
  std::string log_level = "INFO";  ///< DEBUG | INFO | WARNING | ERROR | CRITICAL
  std::optional<std::string> logs_dir;
  bool enable_access_log = true;
};

/// The options of `@serve.deployment`. Every field is optional: only fields that are set
/// override the next level down (config file > code > defaults).
struct DeploymentOptions {
  std::optional<std::string> name;
  std::optional<int> num_replicas;
  std::optional<int> max_ongoing_requests;
  std::optional<int> max_queued_requests;
  std::optional<Json> user_config;
  std::optional<double> health_check_period_s;
  std::optional<double> health_check_timeout_s;
  std::optional<double> graceful_shutdown_wait_loop_s;
  std::optional<double> graceful_shutdown_timeout_s;
  std::optional<ActorOptions> ray_actor_options;
  std::optional<int> max_replicas_per_node;
  std::optional<LoggingConfig> logging_config;

  /// Fields set in `other` replace those here.
  SERVE_EXPORT void MergeFrom(const DeploymentOptions& other);
};

/// JSON with only the fields that are set (the DeploymentSchema field names).
SERVE_EXPORT void to_json(Json& j, const DeploymentOptions& o);
/// Reads DeploymentSchema fields. Throws std::invalid_argument naming the field and the reason.
SERVE_EXPORT void from_json(const Json& j, DeploymentOptions& o);
SERVE_EXPORT void to_json(Json& j, const ActorOptions& o);
SERVE_EXPORT void from_json(const Json& j, ActorOptions& o);
SERVE_EXPORT void to_json(Json& j, const LoggingConfig& o);
SERVE_EXPORT void from_json(const Json& j, LoggingConfig& o);

}  // namespace serve
