#pragma once

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace serve::controller {

/// A runtime_env made ready for replicas on this node.
struct PreparedRuntimeEnv {
  std::map<std::string, std::string> env_vars;
  std::string working_dir;  ///< absolute path of the local copy; "" when not set
};

/// Validates `runtime_env` (supported: env_vars, working_dir) and materialises working_dir
/// (a local directory, a local .zip, or a file:// URI of either) under
/// <session_dir>/runtime_resources/working_dir_files/. Other fields and remote URIs are
/// kInvalidArgument naming the field.
absl::StatusOr<PreparedRuntimeEnv> PrepareRuntimeEnv(const nlohmann::json& runtime_env,
                                                     const std::string& session_dir);

}  // namespace serve::controller
