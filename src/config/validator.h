#pragma once

// Internal to serve_config: the field checks every schema section uses. Each check returns
// kInvalidArgument naming the field path and, for YAML input, its line.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/limits.h"
#include "config/schema.h"
#include "config/yaml_json.h"

namespace serve::config::detail {

/// "null", "a boolean", "an integer", "a number", "a string", "a list", "a mapping".
std::string TypeName(const nlohmann::json& j);
/// Short rendering of a value for error messages: scalars as JSON, containers by TypeName.
std::string Show(const nlohmann::json& j);

/// Builds kInvalidArgument errors that name the field path and, when the document came from
/// YAML, the line of the nearest enclosing field. `lines` (may be null) and `options` must
/// outlive the Validator.
class Validator {
 public:
  Validator(const LineMap* lines, const ParseOptions& options)
      : lines_(lines), options_(options) {}

  /// "path: reason (line N)".
  std::string Describe(const std::string& path, const std::string& reason) const;

  absl::Status Error(const std::string& path, const std::string& reason) const;

  /// Checks the keys of mapping `in` at `path` against `known`. An unknown key is ignored
  /// with a warning (as Ray ignores it), or is an error in strict mode. Keys in `unsupported`
  /// are valid in Ray but not acted on here: always a warning.
  absl::Status UnknownKeys(const std::string& path, const nlohmann::json& in,
                           const std::set<std::string>& known,
                           const std::set<std::string>& unsupported = {}) const;

  /// "must be <expected> (got <Show(got)>)".
  absl::Status TypeError(const std::string& path, const std::string& expected,
                         const nlohmann::json& got) const;

  absl::StatusOr<int64_t> Int(const std::string& path, const nlohmann::json& j) const;

  /// An integer that also fits in an `int`.
  absl::StatusOr<int> Int32(const std::string& path, const nlohmann::json& j) const;

  absl::StatusOr<double> Number(const std::string& path, const nlohmann::json& j) const;

  absl::StatusOr<std::string> String(const std::string& path, const nlohmann::json& j) const;

  absl::Status Mapping(const std::string& path, const nlohmann::json& j) const;

  absl::Status MappingOrNull(const std::string& path, const nlohmann::json& j) const;

  /// A number inside `range` (limits.h): finite, integral when the range says so, within its
  /// bounds; the error names `path` and the bound.
  absl::Status InRange(const std::string& path, const nlohmann::json& j,
                       const limits::Range& range) const;
  /// InRange with the range of canonical field `field` (limits::FieldRange, which must know it).
  absl::Status InRange(const std::string& path, const nlohmann::json& j,
                       std::string_view field) const;

  /// A name that becomes part of a file path (limits::CheckPathName).
  absl::Status PathName(const std::string& path, const std::string& name) const;

  /// A port number: an Int32 in [0, 65535].
  absl::StatusOr<int> Port(const std::string& path, const nlohmann::json& j) const;

 private:
  void Warn(const std::string& path, const std::string& reason) const;

  /// The known name nearest to `key` (edit distance at most 2, or a prefix/suffix match), or "".
  static std::string Closest(const std::string& key, const std::set<std::string>& known);

  const LineMap* lines_;
  const ParseOptions& options_;
};

/// Copies `in`'s keys into a new object, renaming deprecated aliases (the new name wins when
/// both are given). `written` records the key as written for each canonical name.
nlohmann::json RenameAliases(const nlohmann::json& in,
                             const std::map<std::string, std::string>& aliases,
                             std::map<std::string, std::string>& written);

}  // namespace serve::config::detail
