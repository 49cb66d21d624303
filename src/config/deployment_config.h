#pragma once

#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace serve::config {

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
};

/// Reads DeploymentSchema fields set in `options` over the defaults and validates them. Errors
/// are kInvalidArgument naming the field and the reason.
absl::StatusOr<DeploymentConfig> ResolveDeploymentConfig(const nlohmann::json& options);

/// The `deployment_config` view used by status and REST output.
nlohmann::json ToJson(const DeploymentConfig& config);

}  // namespace serve::config
