#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <serve/duration.h>
#include <serve/json.h>
#include <serve/version.h>

namespace serve {

/// Resources of one replica (`ray_actor_options` in Ray Serve). Unset num_cpus means 1 CPU.
struct ActorOptions {
  std::optional<double> num_cpus{};
  std::optional<double> num_gpus{};
  std::optional<double> memory{};
  std::map<std::string, double> resources{};
};

/// Per-deployment logging (`logging_config`; docs/logging.md). Set in code, it is the
/// deployment's whole config (application and top-level configs do not fill its fields).
struct LoggingConfig {
  std::string encoding = "TEXT";   ///< TEXT | JSON
  std::string log_level = "INFO";  ///< DEBUG | INFO | WARNING | ERROR | CRITICAL
  std::optional<std::string> logs_dir{};  ///< unset: <session>/logs/serve
  bool enable_access_log = true;
  /// Python LogRecord attribute names added to each line (e.g. "name", "funcName").
  std::vector<std::string> additional_log_standard_attrs;
};

/// `autoscaling_config` of a deployment (Ray Serve's AutoscalingConfig). Only the fields that
/// are set are emitted; the controller fills the rest with its defaults: min_replicas 1,
/// max_replicas 1, initial_replicas = min_replicas, target_ongoing_requests 1,
/// metrics_interval_s 10, look_back_period_s 30, upscale_delay_s 30, downscale_delay_s 600,
/// factors 1.0, aggregation_function "mean". min_replicas 0 lets the deployment scale to zero.
struct AutoscalingConfig {
  std::optional<int> min_replicas{};      ///< >= 0
  std::optional<int> max_replicas{};      ///< >= 1 and >= min_replicas
  std::optional<int> initial_replicas{};  ///< between min_replicas and max_replicas
  /// Average ongoing requests per replica the autoscaler aims at (> 0).
  std::optional<double> target_ongoing_requests{};
  std::optional<Duration> metrics_interval_s{};  ///< how often handles report their load
  std::optional<Duration> look_back_period_s{};  ///< window the load is averaged over
  std::optional<Duration> upscale_delay_s{};     ///< load must stay high this long before upscaling
  std::optional<Duration> downscale_delay_s{};   ///< load must stay low this long before downscaling
  /// Delay of the last step, 1 -> 0 replicas (downscale_delay_s when unset).
  std::optional<Duration> downscale_to_zero_delay_s{};
  std::optional<double> smoothing_factor{};            ///< deprecated: both factors at once
  std::optional<double> upscale_smoothing_factor{};    ///< deprecated: upscaling_factor
  std::optional<double> downscale_smoothing_factor{};  ///< deprecated: downscaling_factor
  std::optional<double> upscaling_factor{};    ///< gain applied to each upscaling decision
  std::optional<double> downscaling_factor{};  ///< gain applied to each downscaling decision
  std::optional<std::string> aggregation_function{};  ///< mean | max | min
  std::optional<std::string> policy{};                ///< import path of a custom policy

  bool operator==(const AutoscalingConfig&) const = default;
};

/// The options of `@serve.deployment`. Every field is optional: only fields that are set
/// override the next level down (config file > code > defaults). Meant to be written with
/// designated initializers:
///   serve::deployment<Model>({.num_replicas = 2, .health_check_period_s = 5s})
/// The `*_s` fields are serve::Duration: a std::chrono duration, or a number of seconds.
///
/// The replica count spans three fields, as Ray's `num_replicas` (an int or "auto") and
/// `autoscaling_config` do: `num_replicas` excludes both `num_replicas_auto` and
/// `autoscaling_config`; `num_replicas_auto` and `autoscaling_config` may be set together.
struct DeploymentOptions {
  std::optional<std::string> name{};
  /// A fixed number of replicas.
  std::optional<int> num_replicas{};
  /// True: `num_replicas: "auto"`, i.e. autoscaling with max_ongoing_requests 5 (unless set)
  /// and autoscaling {target_ongoing_requests 2, min_replicas 1, max_replicas 100}, updated
  /// with the fields set in `autoscaling_config`. False: not set.
  bool num_replicas_auto = false;
  /// Turns autoscaling on; `num_replicas` must then be unset.
  std::optional<AutoscalingConfig> autoscaling_config{};
  std::optional<int> max_ongoing_requests{};
  std::optional<int> max_queued_requests{};
  std::optional<Json> user_config{};
  std::optional<Duration> health_check_period_s{};
  std::optional<Duration> health_check_timeout_s{};
  std::optional<Duration> graceful_shutdown_wait_loop_s{};
  std::optional<Duration> graceful_shutdown_timeout_s{};
  std::optional<ActorOptions> ray_actor_options{};
  std::optional<int> max_replicas_per_node{};
  std::optional<LoggingConfig> logging_config{};

  /// Fields set in `other` replace those here (`autoscaling_config` as a whole). A replica count
  /// set in `other` also clears the conflicting one here: `num_replicas` clears
  /// `num_replicas_auto` and `autoscaling_config`; `num_replicas_auto` or `autoscaling_config`
  /// clears `num_replicas`.
  SERVE_EXPORT void MergeFrom(const DeploymentOptions& other);
};

/// JSON with only the fields that are set (the DeploymentSchema field names);
/// `num_replicas_auto` is emitted as `"num_replicas": "auto"`. Throws std::invalid_argument when
/// the replica-count fields conflict (see DeploymentOptions).
SERVE_EXPORT void to_json(Json& j, const DeploymentOptions& o);
/// Reads DeploymentSchema fields (`num_replicas` is an integer or "auto"). Throws
/// std::invalid_argument naming the field and the reason.
SERVE_EXPORT void from_json(const Json& j, DeploymentOptions& o);
/// JSON with only the fields that are set.
SERVE_EXPORT void to_json(Json& j, const AutoscalingConfig& o);
/// Reads AutoscalingConfig fields; `target_num_ongoing_requests_per_replica` is read as
/// `target_ongoing_requests`, other unknown fields are ignored. Throws std::invalid_argument
/// naming the field.
SERVE_EXPORT void from_json(const Json& j, AutoscalingConfig& o);
SERVE_EXPORT void to_json(Json& j, const ActorOptions& o);
SERVE_EXPORT void from_json(const Json& j, ActorOptions& o);
SERVE_EXPORT void to_json(Json& j, const LoggingConfig& o);
SERVE_EXPORT void from_json(const Json& j, LoggingConfig& o);
/// A Duration is a number of seconds in JSON (the `*_s` fields).
inline void to_json(Json& j, const Duration& d) { j = d.seconds(); }
inline void from_json(const Json& j, Duration& d) { d = Duration(j.get<double>()); }

}  // namespace serve
