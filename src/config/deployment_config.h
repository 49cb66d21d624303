#pragma once

#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace serve::config {

/// A deployment's resolved autoscaling options (spec §2.9, with the seed's defaults).
struct AutoscalingConfig {
  int min_replicas = 1;
  int max_replicas = 1;
  std::optional<int> initial_replicas;
  double target_ongoing_requests = 1;
  double metrics_interval_s = 10;
  double look_back_period_s = 30;
  double upscale_delay_s = 30;
  double downscale_delay_s = 600;
  std::optional<double> downscale_to_zero_delay_s;
  double smoothing_factor = 1.0;                     // deprecated
  std::optional<double> upscale_smoothing_factor;    // deprecated
  std::optional<double> downscale_smoothing_factor;  // deprecated
  std::optional<double> upscaling_factor;
  std::optional<double> downscaling_factor;
  std::string aggregation_function = "mean";  // mean | max | min
  std::string policy;                         // "" = the default policy

  /// upscaling_factor, else upscale_smoothing_factor, else smoothing_factor.
  double UpscalingFactor() const;
  /// downscaling_factor, else downscale_smoothing_factor, else smoothing_factor.
  double DownscalingFactor() const;
};

/// A deployment's effective options: code/config values over Ray Serve's defaults (spec §2.4,
/// with the seed's max_ongoing_requests default of 100).
struct DeploymentConfig {
  std::string name;
  int num_replicas = 1;
  int max_ongoing_requests = 100;
  int max_queued_requests = -1;
  std::optional<nlohmann::json> user_config;
  double health_check_period_s = 10;
  double health_check_timeout_s = 30;
  double graceful_shutdown_wait_loop_s = 2;
  double graceful_shutdown_timeout_s = 20;
  nlohmann::json ray_actor_options = {{"num_cpus", 1.0}};
  std::optional<int> max_replicas_per_node;
  std::optional<nlohmann::json> logging_config;
  /// Set: the deployment autoscales and `num_replicas` is not used.
  std::optional<AutoscalingConfig> autoscaling_config;
};

/// Reads DeploymentSchema fields set in `options` over the defaults and validates them. Errors
/// are kInvalidArgument naming the field and the reason (`deployment option
/// 'autoscaling_config.max_replicas': ...`). Null fields keep their defaults. Accepts the
/// deprecated aliases `max_concurrent_queries` and
/// `autoscaling_config.target_num_ongoing_requests_per_replica` (the new name wins when both
/// are set). `num_replicas: "auto"` means max_ongoing_requests 5 (unless set) and autoscaling
/// {min 1, max 100, target 2} with any `autoscaling_config` fields on top; an integer
/// `num_replicas` together with a non-null `autoscaling_config` is an error.
absl::StatusOr<DeploymentConfig> ResolveDeploymentConfig(const nlohmann::json& options);

/// `num_replicas` adjusted by target_capacity (percent, spec §4.1): nullopt or 100 leave it
/// unchanged; 0 or num_replicas == 0 give 0; otherwise round-half-up(n * tc / 100), at least 1.
int ApplyTargetCapacity(int num_replicas, std::optional<double> target_capacity);

/// Every field of `config`, unset optionals as null, `policy` null for the default policy.
/// Resolving it back (as `autoscaling_config`) gives the same config.
nlohmann::json ToJson(const AutoscalingConfig& config);

/// The `deployment_config` view used by status and REST output: `autoscaling_config` (every
/// field) when the deployment autoscales, else `num_replicas`, never both.
nlohmann::json ToJson(const DeploymentConfig& config);

}  // namespace serve::config
