#pragma once

// LoggingConfig (spec §2.8) outside a config document: validation of values given in code and
// the precedence between the deployment, application and top-level (serve) configs.

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace serve::config {

/// Validates `in` as a LoggingConfig; errors are kInvalidArgument naming the field under
/// `path` and the reason (`logging_config.encoding: must be one of TEXT, JSON (got "XML")`).
/// Returns it normalized (level numbers as names, attributes deduplicated) and, with
/// `fill_defaults`, with every field set.
absl::StatusOr<nlohmann::json> ValidateLoggingConfig(const nlohmann::json& in,
                                                     const std::string& path = "logging_config",
                                                     bool fill_defaults = true);

/// Every field at its default: encoding from $RAY_SERVE_LOG_ENCODING (JSON when
/// $RAY_SERVE_ENABLE_JSON_LOGGING=1; else TEXT), log_level INFO, logs_dir null,
/// enable_access_log true, additional_log_standard_attrs [].
nlohmann::json DefaultLoggingConfig();

/// A deployment's effective logging config: the most specific of the deployment's, its
/// application's and the top-level config that is set, taken whole (as in Ray, fields are not
/// merged across levels), with its unset fields at their defaults.
nlohmann::json ResolveLoggingConfig(const std::optional<nlohmann::json>& deployment,
                                    const std::optional<nlohmann::json>& application,
                                    const std::optional<nlohmann::json>& global);

}  // namespace serve::config
