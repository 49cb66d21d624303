#pragma once

// Internal to serve_config: the whole document (ServeDeploySchema), its applications
// (ServeApplicationSchema) and its http_options / grpc_options.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "config/schema.h"
#include "config/yaml_json.h"

namespace serve::config::detail {

/// ServeApplicationSchema's field names, in its order.
const std::vector<std::string>& ApplicationFieldOrder();

/// Validates a parsed document and builds the config, with Ray's defaults and cross-application
/// rules (unique names and route prefixes). The legacy single-application form becomes one
/// application. `lines` (null for JSON input) adds YAML lines to errors and warnings.
absl::StatusOr<ServeDeployConfig> ParseDocument(const nlohmann::json& doc, const LineMap* lines,
                                                 const ParseOptions& options);

}  // namespace serve::config::detail
