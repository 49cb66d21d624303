#pragma once

// Internal to serve_config: YAML <-> JSON with PyYAML's scalar rules, the field paths that name
// a value in a document, and the YAML line of each field.

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "absl/status/statusor.h"

namespace serve::config::detail {

/// Field path ("applications[0].deployments[1].name") -> 1-based YAML line.
using LineMap = std::map<std::string, int>;

/// "prefix.key", or "key" when `prefix` is empty.
std::string Join(const std::string& prefix, const std::string& key);
/// "prefix[i]".
std::string Index(const std::string& prefix, size_t i);
/// The path one level up: "a.b[2]" -> "a.b", "a.b" -> "a", "a" -> "".
std::string Parent(const std::string& path);

/// Resolves a plain (unquoted) YAML scalar the way PyYAML's safe loader does for the types a
/// config uses: null, booleans (YAML 1.1 spellings), integers, floats; anything else is a
/// string.
nlohmann::json ResolvePlainScalar(const std::string& s);

/// Parses YAML (or JSON) text; records the line of every mapping key and sequence item in
/// `lines`. Errors are kInvalidArgument and carry the line and column when known.
absl::StatusOr<nlohmann::json> YamlToJsonWithLines(const std::string& text, LineMap& lines);

/// The keys of mapping `j`: those named in `key_order` (may be null) first, in that order, then
/// the rest in `j`'s order.
std::vector<std::string> OrderedKeys(const nlohmann::json& j,
                                     const std::vector<std::string>* key_order);

/// Emits a string, double-quoted when it is empty, would read back as another type, or holds
/// characters that need escapes. Read the emitter's text with EmitterText.
void EmitString(YAML::Emitter& out, const std::string& s);
/// The emitter's text, with the characters yaml-cpp leaves unescaped in double-quoted scalars
/// (DEL, U+2028, U+2029) escaped, so that it reads back as written.
std::string EmitterText(const YAML::Emitter& out);
/// Emits `j`; the keys of mappings directly in `j` (or in its list items) named in `key_order`
/// come first in that order, the rest in their own order. Empty containers are `{}` / `[]`.
void EmitJson(YAML::Emitter& out, const nlohmann::json& j,
              const std::vector<std::string>* key_order);
/// "key: value" for one top-level key, block style.
std::string EmitTopLevel(const std::string& key, const nlohmann::json& value,
                         const std::vector<std::string>* key_order = nullptr);

}  // namespace serve::config::detail
