#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace serve::config {

/// `module:attr` (or `module.attr`): the library module and the registered application name.
struct ImportPath {
  std::string module;
  std::string attr;
};

/// Parses an import path. At most one ':', must contain '.' or ':', and must not start or end
/// with the separator.
absl::StatusOr<ImportPath> ParseImportPath(const std::string& text);

/// Directories searched for the library of `module`: `app_dir`, then $SERVE_APP_PATH entries.
std::vector<std::string> LibrarySearchPath(const std::string& app_dir);

/// Finds lib<module>.so or <module>.so on the search path; absolute path on success,
/// kNotFound naming every directory tried otherwise.
absl::StatusOr<std::string> ResolveLibrary(const std::string& module, const std::string& app_dir);

}  // namespace serve::config
