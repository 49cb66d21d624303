#pragma once

// Internal to serve_config: the per-deployment sections of a config (DeploymentSchema with its
// ray_actor_options, autoscaling_config and request_router_config) and LoggingConfig, which
// the document, each application and each deployment may carry.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "config/schema.h"
#include "config/validator.h"

namespace serve::config::detail {

/// LoggingConfig (extra fields forbidden). Returns the normalized config: int log levels become
/// names and additional_log_standard_attrs is deduplicated. With `fill_defaults`, unset fields
/// get their defaults.
absl::StatusOr<nlohmann::json> ValidateLoggingConfig(const Validator& v, const std::string& path,
                                                     const nlohmann::json& in,
                                                     bool fill_defaults);

/// LoggingConfig with every field at its default.
nlohmann::json DefaultLoggingConfig();

/// DeploymentSchema's field names, in its order.
const std::vector<std::string>& DeploymentFieldOrder();

/// A name field: a string, or an integer taken as its decimal text (pydantic coerces).
absl::StatusOr<std::string> NameField(const Validator& v, const std::string& path,
                                      const nlohmann::json& j);

/// One `deployments` entry at `path`. Aliases are renamed, unknown fields are dropped (with a
/// warning, or an error in strict mode) and `num_replicas: "auto"` is expanded to its
/// autoscaling defaults.
absl::StatusOr<DeploymentOverride> ParseDeployment(const Validator& v, const std::string& path,
                                                   const nlohmann::json& in);

/// A runtime_env mapping: env_vars, when set, maps allowed names (limits::CheckEnvVarName) to
/// strings. Other fields are checked where the environment is prepared.
absl::Status ValidateRuntimeEnv(const Validator& v, const std::string& path,
                                const nlohmann::json& in);

/// Whether the deployment sets a non-null autoscaling_config.
bool ConfiguresAutoscaling(const DeploymentOverride& d);

}  // namespace serve::config::detail
