#include "config/schema.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#ifndef SERVE_VERSION_STRING
#define SERVE_VERSION_STRING "0.1.0"
#endif

namespace serve::config {
namespace {

using json = nlohmann::json;

/// Field path ("applications[0].deployments[1].name") -> 1-based YAML line.
using LineMap = std::map<std::string, int>;

constexpr int kMaxDepth = 256;

std::string Join(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

std::string Index(const std::string& prefix, size_t i) { return absl::StrCat(prefix, "[", i, "]"); }

/// The path one level up: "a.b[2]" -> "a.b", "a.b" -> "a", "a" -> "".
std::string Parent(const std::string& path) {
  size_t pos = path.find_last_of(".[");
  return pos == std::string::npos ? std::string() : path.substr(0, pos);
}

std::string TypeName(const json& j) {
  switch (j.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a number";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "a list";
    case json::value_t::object:
      return "a mapping";
    default:
      return "an unsupported value";
  }
}

/// Short rendering of a value for error messages.
std::string Show(const json& j) {
  if (j.is_array() || j.is_object()) return TypeName(j);
  return j.dump();
}

// ---- YAML -> JSON --------------------------------------------------------------------------

/// Resolves a plain (unquoted) YAML scalar the way PyYAML's safe loader does for the types a
/// config uses: null, booleans (YAML 1.1 spellings), integers, floats; anything else is a
/// string.
json ResolvePlainScalar(const std::string& s) {
  static const std::set<std::string> kNull = {"", "~", "null", "Null", "NULL"};
  static const std::set<std::string> kTrue = {"true", "True", "TRUE", "yes", "Yes",
                                              "YES",  "on",   "On",   "ON"};
  static const std::set<std::string> kFalse = {"false", "False", "FALSE", "no", "No",
                                               "NO",    "off",   "Off",   "OFF"};
  static const std::regex kDecimal("[-+]?(0|[1-9][0-9_]*)");
  static const std::regex kHex("[-+]?0x[0-9a-fA-F_]+");
  static const std::regex kOctal("[-+]?0o[0-7_]+");
  static const std::regex kFloat("[-+]?(\\.[0-9]+|[0-9][0-9_]*(\\.[0-9_]*)?)([eE][-+]?[0-9]+)?");
  static const std::regex kInf("[-+]?\\.(inf|Inf|INF)");
  static const std::regex kNan("\\.(nan|NaN|NAN)");

  if (kNull.count(s)) return nullptr;
  if (kTrue.count(s)) return true;
  if (kFalse.count(s)) return false;

  auto strip = [](const std::string& in) {
    std::string out;
    for (char c : in) {
      if (c != '_') out.push_back(c);
    }
    return out;
  };
  auto parse_int = [&](std::string digits, int base) -> std::optional<json> {
    bool negative = false;
    if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) {
      negative = digits[0] == '-';
      digits.erase(0, 1);
    }
    if (base != 10) digits.erase(0, 2);  // 0x / 0o
    digits = strip(digits);
    if (digits.empty()) return std::nullopt;
    uint64_t value = 0;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value, base);
    if (ec != std::errc() || ptr != digits.data() + digits.size()) return std::nullopt;
    if (!negative) {
      if (value <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return json(static_cast<int64_t>(value));
      }
      return json(value);
    }
    if (value <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1) {
      return json(static_cast<int64_t>(0 - value));
    }
    return std::nullopt;
  };

  if (std::regex_match(s, kDecimal)) {
    if (auto v = parse_int(s, 10)) return *v;
  } else if (std::regex_match(s, kHex)) {
    if (auto v = parse_int(s, 16)) return *v;
  } else if (std::regex_match(s, kOctal)) {
    if (auto v = parse_int(s, 8)) return *v;
  }
  if (std::regex_match(s, kDecimal) || std::regex_match(s, kFloat)) {
    std::string digits = strip(s);
    if (!digits.empty() && digits[0] == '+') digits.erase(0, 1);
    double value = 0;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ptr == digits.data() + digits.size() &&
        (ec == std::errc() || ec == std::errc::result_out_of_range)) {
      return value;
    }
  }
  if (std::regex_match(s, kInf)) {
    return s[0] == '-' ? -std::numeric_limits<double>::infinity()
                       : std::numeric_limits<double>::infinity();
  }
  if (std::regex_match(s, kNan)) return std::numeric_limits<double>::quiet_NaN();
  return s;
}

absl::Status YamlToJson(const YAML::Node& node, const std::string& path, int depth, json& out,
                        LineMap& lines) {
  if (depth > kMaxDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat(path.empty() ? "config" : path, ": nested too deeply"));
  }
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      out = nullptr;
      return absl::OkStatus();
    case YAML::NodeType::Scalar: {
      const std::string& tag = node.Tag();
      if (tag == "!" || tag == "tag:yaml.org,2002:str") {
        out = node.Scalar();  // quoted or explicitly tagged: always a string
      } else {
        out = ResolvePlainScalar(node.Scalar());
      }
      return absl::OkStatus();
    }
    case YAML::NodeType::Sequence: {
      out = json::array();
      size_t i = 0;
      for (const auto& item : node) {
        std::string item_path = Index(path, i++);
        if (!item.Mark().is_null()) lines[item_path] = item.Mark().line + 1;
        json value;
        if (auto st = YamlToJson(item, item_path, depth + 1, value, lines); !st.ok()) return st;
        out.push_back(std::move(value));
      }
      return absl::OkStatus();
    }
    case YAML::NodeType::Map: {
      out = json::object();
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) {
          int line = kv.first.Mark().is_null() ? 0 : kv.first.Mark().line + 1;
          return absl::InvalidArgumentError(
              absl::StrCat(path.empty() ? "config" : path, ": mapping keys must be scalars",
                           line > 0 ? absl::StrCat(" (line ", line, ")") : ""));
        }
        std::string key = kv.first.Scalar();
        std::string key_path = Join(path, key);
        if (!kv.first.Mark().is_null()) lines[key_path] = kv.first.Mark().line + 1;
        json value;
        if (auto st = YamlToJson(kv.second, key_path, depth + 1, value, lines); !st.ok()) {
          return st;
        }
        out[key] = std::move(value);
      }
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

// ---- Validation ----------------------------------------------------------------------------

/// Builds kInvalidArgument errors that name the field path and, when the document came from
/// YAML, the line of the nearest enclosing field.
class Validator {
 public:
  Validator(const LineMap* lines, const ParseOptions& options)
      : lines_(lines), options_(options) {}

  /// "path: reason (line N)".
  std::string Describe(const std::string& path, const std::string& reason) const {
    std::string msg = absl::StrCat(path.empty() ? "config" : path, ": ", reason);
    if (lines_ != nullptr) {
      for (std::string p = path; !p.empty(); p = Parent(p)) {
        if (auto it = lines_->find(p); it != lines_->end()) {
          absl::StrAppend(&msg, " (line ", it->second, ")");
          break;
        }
      }
    }
    return msg;
  }

  absl::Status Error(const std::string& path, const std::string& reason) const {
    return absl::InvalidArgumentError(Describe(path, reason));
  }

  /// Checks the keys of mapping `in` at `path` against `known`. An unknown key is ignored
  /// with a warning (as Ray ignores it), or is an error in strict mode. Keys in `unsupported`
  /// are valid in Ray but not acted on here: always a warning.
  absl::Status UnknownKeys(const std::string& path, const json& in,
                           const std::set<std::string>& known,
                           const std::set<std::string>& unsupported = {}) const {
    if (!in.is_object()) return absl::OkStatus();
    for (auto it = in.begin(); it != in.end(); ++it) {
      const std::string& key = it.key();
      if (known.count(key)) continue;
      std::string p = Join(path, key);
      if (unsupported.count(key)) {
        Warn(p, "not supported yet; ignored");
        continue;
      }
      std::string reason = "unknown field";
      if (std::string near = Closest(key, known); !near.empty()) {
        absl::StrAppend(&reason, " (did you mean '", near, "'?)");
      }
      if (options_.strict) return Error(p, reason);
      Warn(p, absl::StrCat(reason, "; ignored"));
    }
    return absl::OkStatus();
  }

  absl::Status TypeError(const std::string& path, const std::string& expected,
                         const json& got) const {
    return Error(path, absl::StrCat("must be ", expected, " (got ", Show(got), ")"));
  }

  absl::StatusOr<int64_t> Int(const std::string& path, const json& j) const {
    if (j.is_number_unsigned() &&
        j.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Error(path, absl::StrCat("is out of range (got ", j.dump(), ")"));
    }
    if (!j.is_number_integer()) return TypeError(path, "an integer", j);
    return j.get<int64_t>();
  }

  /// An integer that also fits in an `int`.
  absl::StatusOr<int> Int32(const std::string& path, const json& j) const {
    auto v = Int(path, j);
    if (!v.ok()) return v.status();
    if (*v < std::numeric_limits<int>::min() || *v > std::numeric_limits<int>::max()) {
      return Error(path, absl::StrCat("is out of range (got ", *v, ")"));
    }
    return static_cast<int>(*v);
  }

  absl::StatusOr<double> Number(const std::string& path, const json& j) const {
    if (!j.is_number()) return TypeError(path, "a number", j);
    return j.get<double>();
  }

  absl::StatusOr<std::string> String(const std::string& path, const json& j) const {
    if (!j.is_string()) return TypeError(path, "a string", j);
    return j.get<std::string>();
  }

  absl::Status Mapping(const std::string& path, const json& j) const {
    if (!j.is_object()) return TypeError(path, "a mapping", j);
    return absl::OkStatus();
  }

  absl::Status MappingOrNull(const std::string& path, const json& j) const {
    if (!j.is_object() && !j.is_null()) return TypeError(path, "a mapping or null", j);
    return absl::OkStatus();
  }

  /// A number compared against a bound: `strict` means > bound, else >= bound.
  absl::Status NumberAtLeast(const std::string& path, const json& j, double bound,
                             bool strict) const {
    auto v = Number(path, j);
    if (!v.ok()) return v.status();
    if (std::isnan(*v) || (strict ? !(*v > bound) : !(*v >= bound))) {
      return Error(path, absl::StrCat("must be ", strict ? "> " : ">= ", FormatBound(bound),
                                      " (got ", j.dump(), ")"));
    }
    return absl::OkStatus();
  }

  absl::Status IntAtLeast(const std::string& path, const json& j, int64_t bound) const {
    auto v = Int32(path, j);
    if (!v.ok()) return v.status();
    if (*v < bound) {
      return Error(path, bound == 1 ? absl::StrCat("must be > 0 (got ", *v, ")")
                                    : absl::StrCat("must be >= ", bound, " (got ", *v, ")"));
    }
    return absl::OkStatus();
  }

 private:
  static std::string FormatBound(double b) {
    if (b == std::floor(b)) return absl::StrCat(static_cast<int64_t>(b));
    return absl::StrCat(b);
  }

  void Warn(const std::string& path, const std::string& reason) const {
    if (options_.warnings != nullptr) options_.warnings->push_back(Describe(path, reason));
  }

  /// The known name nearest to `key` (edit distance at most 2, or a prefix/suffix match), or "".
  static std::string Closest(const std::string& key, const std::set<std::string>& known) {
    std::string best;
    size_t best_distance = 3;
    for (const std::string& k : known) {
      std::vector<size_t> row(k.size() + 1);
      for (size_t j = 0; j <= k.size(); ++j) row[j] = j;
      for (size_t i = 1; i <= key.size(); ++i) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= k.size(); ++j) {
          size_t up = row[j];
          row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (key[i - 1] != k[j - 1])});
          diagonal = up;
        }
      }
      if (row[k.size()] < best_distance) {
        best_distance = row[k.size()];
        best = k;
      }
    }
    return best;
  }

  const LineMap* lines_;
  const ParseOptions& options_;
};

/// Copies `in`'s keys into a new object, renaming deprecated aliases (the new name wins when
/// both are given). `written` records the key as written for each canonical name.
json RenameAliases(const json& in, const std::map<std::string, std::string>& aliases,
                   std::map<std::string, std::string>& written) {
  json out = json::object();
  for (auto it = in.begin(); it != in.end(); ++it) {
    std::string canon = it.key();
    if (auto a = aliases.find(it.key()); a != aliases.end()) {
      canon = a->second;
      if (in.contains(canon)) continue;
    }
    out[canon] = it.value();
    written[canon] = it.key();
  }
  return out;
}

absl::Status ValidateImportPath(const Validator& v, const std::string& path,
                                const std::string& ip) {
  auto bad = [&](const std::string& why) {
    return v.Error(path, absl::StrCat("invalid import path \"", ip, "\": ", why));
  };
  size_t colons = std::count(ip.begin(), ip.end(), ':');
  if (colons > 1) return bad("an import path may have at most one colon");
  if (colons == 1) {
    size_t pos = ip.find(':');
    if (pos == 0 || pos + 1 == ip.size()) {
      return bad("an import path may not start or end with a colon");
    }
    return absl::OkStatus();
  }
  size_t dot = ip.rfind('.');
  if (dot == std::string::npos) {
    return bad(
        "an import path must contain at least one dot or colon separating the module from "
        "the application, e.g. \"module:app\"");
  }
  if (dot == 0 || dot + 1 == ip.size()) {
    return bad("an import path may not start or end with a dot");
  }
  return absl::OkStatus();
}

absl::Status ValidateRoutePrefix(const Validator& v, const std::string& path,
                                 const std::string& prefix) {
  if (prefix.empty() || prefix[0] != '/') {
    return v.Error(path, absl::StrCat("got \"", prefix, "\"; route prefix must start with \"/\""));
  }
  if (prefix.size() > 1 && prefix.back() == '/') {
    return v.Error(path, absl::StrCat("got \"", prefix,
                                      "\"; route prefix cannot end with \"/\" unless the "
                                      "entire prefix is just \"/\""));
  }
  if (prefix.find_first_of("{}") != std::string::npos) {
    return v.Error(path, absl::StrCat("got \"", prefix,
                                      "\"; route prefix cannot contain wildcards, so it cannot "
                                      "contain \"{\" or \"}\""));
  }
  return absl::OkStatus();
}

/// LoggingConfig (extra fields forbidden). Returns the normalized config: int log levels become
/// names and additional_log_standard_attrs is deduplicated. With `fill_defaults`, unset fields
/// get their defaults.
absl::StatusOr<json> ValidateLoggingConfig(const Validator& v, const std::string& path,
                                           const json& in, bool fill_defaults) {
  static const std::map<int64_t, std::string> kLevelNames = {
      {0, "NOTSET"}, {10, "DEBUG"}, {20, "INFO"}, {30, "WARNING"}, {40, "ERROR"}, {50, "CRITICAL"}};
  static const std::set<std::string> kLevels = {"NOTSET",  "DEBUG", "INFO",  "WARN",
                                                "WARNING", "ERROR", "FATAL", "CRITICAL"};
  // Python's standard LogRecord attributes (Ray's LOGRECORD_STANDARD_ATTRS).
  // clang-format off
  static const std::set<std::string> kStandardAttrs = {
      "args", "asctime", "created", "exc_info", "exc_text", "filename", "funcName", "levelname",
      "levelno", "lineno", "message", "module", "msecs", "msg", "name", "pathname", "process",
      "processName", "relativeCreated", "stack_info", "taskName", "thread", "threadName"};
  // clang-format on
  if (auto st = v.Mapping(path, in); !st.ok()) return st;
  json out = json::object();
  for (auto it = in.begin(); it != in.end(); ++it) {
    const std::string& key = it.key();
    const json& val = it.value();
    std::string p = Join(path, key);
    if (key == "encoding") {
      if (!val.is_string() || (val != "TEXT" && val != "JSON")) {
        return v.Error(p, absl::StrCat("must be one of TEXT, JSON (got ", Show(val), ")"));
      }
      out[key] = val;
    } else if (key == "log_level") {
      if (val.is_number_integer()) {
        auto level = kLevelNames.find(val.get<int64_t>());
        if (level == kLevelNames.end()) {
          return v.Error(p, absl::StrCat("must be one of 0, 10, 20, 30, 40, 50 or a level name "
                                         "(got ",
                                         val.dump(), ")"));
        }
        out[key] = level->second;
      } else if (val.is_string() && kLevels.count(val.get<std::string>())) {
        out[key] = val;
      } else {
        return v.Error(p, absl::StrCat("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL "
                                       "(or 10, 20, 30, 40, 50) (got ",
                                       Show(val), ")"));
      }
    } else if (key == "logs_dir") {
      if (!val.is_null() && !val.is_string()) return v.TypeError(p, "a string or null", val);
      out[key] = val;
    } else if (key == "enable_access_log") {
      if (!val.is_boolean()) return v.TypeError(p, "a boolean", val);
      out[key] = val;
    } else if (key == "additional_log_standard_attrs") {
      if (!val.is_array()) return v.TypeError(p, "a list of strings", val);
      json attrs = json::array();
      for (size_t i = 0; i < val.size(); ++i) {
        auto attr = v.String(Index(p, i), val[i]);
        if (!attr.ok()) return attr.status();
        if (!kStandardAttrs.count(*attr)) {
          return v.Error(Index(p, i),
                         absl::StrCat("unknown attribute \"", *attr,
                                      "\"; must be a standard LogRecord attribute (one of ",
                                      absl::StrJoin(kStandardAttrs, ", "), ")"));
        }
        if (std::find(attrs.begin(), attrs.end(), val[i]) == attrs.end()) attrs.push_back(val[i]);
      }
      out[key] = std::move(attrs);
    } else {
      return v.Error(p, absl::StrCat("unknown logging_config field \"", key,
                                     "\" (allowed: encoding, log_level, logs_dir, "
                                     "enable_access_log, additional_log_standard_attrs)"));
    }
  }
  if (fill_defaults) {
    if (!out.contains("encoding")) out["encoding"] = "TEXT";
    if (!out.contains("log_level")) out["log_level"] = "INFO";
    if (!out.contains("logs_dir")) out["logs_dir"] = nullptr;
    if (!out.contains("enable_access_log")) out["enable_access_log"] = true;
    if (!out.contains("additional_log_standard_attrs")) {
      out["additional_log_standard_attrs"] = json::array();
    }
  }
  return out;
}

json DefaultLoggingConfig() {
  return json{{"encoding", "TEXT"},
              {"log_level", "INFO"},
              {"logs_dir", nullptr},
              {"enable_access_log", true},
              {"additional_log_standard_attrs", json::array()}};
}

absl::Status ValidateRayActorOptions(const Validator& v, const std::string& path, const json& in) {
  if (in.is_null()) return absl::OkStatus();
  if (auto st = v.Mapping(path, in); !st.ok()) return st;
  for (auto it = in.begin(); it != in.end(); ++it) {
    const std::string& key = it.key();
    const json& val = it.value();
    std::string p = Join(path, key);
    if (key == "num_cpus" || key == "num_gpus" || key == "memory" || key == "object_store_memory") {
      if (val.is_null()) continue;
      if (auto st = v.NumberAtLeast(p, val, 0, false); !st.ok()) return st;
    } else if (key == "resources") {
      if (auto st = v.Mapping(p, val); !st.ok()) return st;
    } else if (key == "runtime_env") {
      if (auto st = v.Mapping(p, val); !st.ok()) return st;
    } else if (key == "accelerator_type") {
      if (!val.is_null() && !val.is_string()) return v.TypeError(p, "a string or null", val);
    } else {
      return v.Error(p, absl::StrCat("\"", key,
                                     "\" is not a valid ray_actor_options key (allowed: "
                                     "accelerator_type, memory, num_cpus, num_gpus, "
                                     "object_store_memory, resources, runtime_env)"));
    }
  }
  return absl::OkStatus();
}

/// AutoscalingConfig. `in` has aliases already renamed; `written` maps canonical names to the
/// key as written (for paths). Unset bounds take the defaults (min 1, max 1) for the
/// cross-field checks; unknown fields pass through.
absl::Status ValidateAutoscalingConfig(const Validator& v, const std::string& path, const json& in,
                                       const std::map<std::string, std::string>& written) {
  auto P = [&](const std::string& canon) {
    auto it = written.find(canon);
    return Join(path, it == written.end() ? canon : it->second);
  };
  struct Bound {
    const char* name;
    double bound;
    bool strict;
    bool nullable;
  };
  static const Bound kNumbers[] = {
      {"target_ongoing_requests", 0, true, false},  {"metrics_interval_s", 0, true, false},
      {"look_back_period_s", 0, true, false},       {"smoothing_factor", 0, true, false},
      {"upscale_smoothing_factor", 0, true, true},  {"downscale_smoothing_factor", 0, true, true},
      {"upscaling_factor", 0, true, true},          {"downscaling_factor", 0, true, true},
      {"upscale_delay_s", 0, false, false},         {"downscale_delay_s", 0, false, false},
      {"downscale_to_zero_delay_s", 0, false, true}};
  for (const Bound& b : kNumbers) {
    auto it = in.find(b.name);
    if (it == in.end() || (b.nullable && it->is_null())) continue;
    if (auto st = v.NumberAtLeast(P(b.name), *it, b.bound, b.strict); !st.ok()) return st;
  }
  int64_t min_replicas = 1;
  int64_t max_replicas = 1;
  if (auto it = in.find("min_replicas"); it != in.end()) {
    if (auto st = v.IntAtLeast(P("min_replicas"), *it, 0); !st.ok()) return st;
    min_replicas = it->get<int64_t>();
  }
  if (auto it = in.find("max_replicas"); it != in.end()) {
    if (auto st = v.IntAtLeast(P("max_replicas"), *it, 1); !st.ok()) return st;
    max_replicas = it->get<int64_t>();
  }
  if (max_replicas < min_replicas) {
    return v.Error(in.contains("max_replicas") ? P("max_replicas") : path,
                   absl::StrCat("max_replicas (", max_replicas, ") must be >= min_replicas (",
                                min_replicas, ")"));
  }
  if (auto it = in.find("initial_replicas"); it != in.end() && !it->is_null()) {
    if (auto st = v.IntAtLeast(P("initial_replicas"), *it, 0); !st.ok()) return st;
    int64_t initial = it->get<int64_t>();
    if (initial < min_replicas || initial > max_replicas) {
      return v.Error(P("initial_replicas"),
                     absl::StrCat("must be between min_replicas (", min_replicas,
                                  ") and max_replicas (", max_replicas, ") (got ", initial, ")"));
    }
  }
  if (auto it = in.find("aggregation_function"); it != in.end() && !it->is_null()) {
    if (!it->is_string() || (*it != "mean" && *it != "max" && *it != "min")) {
      return v.Error(P("aggregation_function"),
                     absl::StrCat("must be one of mean, max, min (got ", Show(*it), ")"));
    }
  }
  if (auto it = in.find("policy"); it != in.end() && !it->is_null()) {
    // A policy name, or {policy_function: name}.
    const json* name = &*it;
    if (it->is_object()) {
      auto f = it->find("policy_function");
      name = (f == it->end() || f->is_null()) ? nullptr : &*f;
    }
    if (name != nullptr && !name->is_string()) {
      return v.TypeError(P("policy"), "a policy name, {policy_function: name} or null", *it);
    }
  }
  return absl::OkStatus();
}

const std::vector<std::string>& DeploymentFieldOrder() {
  static const std::vector<std::string> kOrder = {"name",
                                                  "num_replicas",
                                                  "max_ongoing_requests",
                                                  "max_queued_requests",
                                                  "user_config",
                                                  "autoscaling_config",
                                                  "graceful_shutdown_wait_loop_s",
                                                  "graceful_shutdown_timeout_s",
                                                  "health_check_period_s",
                                                  "health_check_timeout_s",
                                                  "ray_actor_options",
                                                  "placement_group_bundles",
                                                  "placement_group_strategy",
                                                  "max_replicas_per_node",
                                                  "logging_config",
                                                  "request_router_config"};
  return kOrder;
}

absl::StatusOr<std::string> NameField(const Validator& v, const std::string& path, const json& j) {
  if (j.is_number_integer()) return j.dump();  // pydantic coerces numbers to str
  return v.String(path, j);
}

absl::StatusOr<DeploymentOverride> ParseDeployment(const Validator& v, const std::string& path,
                                                   const json& in) {
  static const std::map<std::string, std::string> kAliases = {
      {"max_concurrent_queries", "max_ongoing_requests"}};
  static const std::map<std::string, std::string> kAutoscalingAliases = {
      {"target_num_ongoing_requests_per_replica", "target_ongoing_requests"}};
  if (auto st = v.Mapping(path, in); !st.ok()) return st;

  // Unknown fields are ignored (pydantic's default for DeploymentSchema), with a warning.
  static const std::set<std::string> kKnown = [] {
    std::set<std::string> known(DeploymentFieldOrder().begin(), DeploymentFieldOrder().end());
    known.insert("max_concurrent_queries");
    return known;
  }();
  static const std::set<std::string> kUnsupported = {
      "max_constructor_retry_count", "rolling_update_percentage", "gang_scheduling_config",
      "deployment_actors", "backpressure_config"};
  if (auto st = v.UnknownKeys(path, in, kKnown, kUnsupported); !st.ok()) return st;
  std::map<std::string, std::string> written;
  json all = RenameAliases(in, kAliases, written);
  json f = json::object();
  for (const std::string& key : DeploymentFieldOrder()) {
    if (all.contains(key)) f[key] = all[key];
  }
  auto P = [&](const std::string& canon) {
    auto it = written.find(canon);
    return Join(path, it == written.end() ? canon : it->second);
  };

  DeploymentOverride d;
  if (!f.contains("name")) return v.Error(Join(path, "name"), "field required");
  auto name = NameField(v, P("name"), f["name"]);
  if (!name.ok()) return name.status();
  if (name->empty()) return v.Error(P("name"), "must be a non-empty string");
  d.name = *name;
  f["name"] = *name;

  bool auto_replicas = false;
  if (auto it = f.find("num_replicas"); it != f.end() && !it->is_null()) {
    if (it->is_string()) {
      if (*it != "auto") {
        return v.TypeError(P("num_replicas"), "a positive integer, \"auto\" or null", *it);
      }
      auto_replicas = true;
    } else if (it->is_number_integer()) {
      if (auto st = v.IntAtLeast(P("num_replicas"), *it, 1); !st.ok()) return st;
    } else {
      return v.TypeError(P("num_replicas"), "a positive integer, \"auto\" or null", *it);
    }
  }
  if (auto it = f.find("max_ongoing_requests"); it != f.end()) {
    if (auto st = v.IntAtLeast(P("max_ongoing_requests"), *it, 1); !st.ok()) return st;
  }
  if (auto it = f.find("max_queued_requests"); it != f.end()) {
    auto q = v.Int32(P("max_queued_requests"), *it);
    if (!q.ok()) return q.status();
    if (*q != -1 && *q < 1) {
      return v.Error(P("max_queued_requests"),
                     absl::StrCat("must be -1 (no limit) or >= 1 (got ", *q, ")"));
    }
  }
  if (auto it = f.find("user_config"); it != f.end()) {
    if (auto st = v.MappingOrNull(P("user_config"), *it); !st.ok()) return st;
  }
  for (const char* key : {"graceful_shutdown_wait_loop_s", "graceful_shutdown_timeout_s"}) {
    if (auto it = f.find(key); it != f.end()) {
      if (auto st = v.NumberAtLeast(P(key), *it, 0, false); !st.ok()) return st;
    }
  }
  for (const char* key : {"health_check_period_s", "health_check_timeout_s"}) {
    if (auto it = f.find(key); it != f.end()) {
      if (auto st = v.NumberAtLeast(P(key), *it, 0, true); !st.ok()) return st;
    }
  }
  if (auto it = f.find("ray_actor_options"); it != f.end()) {
    if (auto st = ValidateRayActorOptions(v, P("ray_actor_options"), *it); !st.ok()) return st;
  }
  if (auto it = f.find("placement_group_bundles"); it != f.end() && !it->is_null()) {
    std::string p = P("placement_group_bundles");
    if (!it->is_array() || it->empty()) return v.TypeError(p, "a non-empty list of mappings", *it);
    for (size_t i = 0; i < it->size(); ++i) {
      const json& bundle = (*it)[i];
      if (auto st = v.Mapping(Index(p, i), bundle); !st.ok()) return st;
      for (auto r = bundle.begin(); r != bundle.end(); ++r) {
        if (auto st = v.NumberAtLeast(Join(Index(p, i), r.key()), r.value(), 0, false); !st.ok()) {
          return st;
        }
      }
    }
  }
  if (auto it = f.find("placement_group_strategy"); it != f.end() && !it->is_null()) {
    static const std::set<std::string> kStrategies = {"PACK", "SPREAD", "STRICT_PACK",
                                                      "STRICT_SPREAD"};
    if (!it->is_string() || !kStrategies.count(it->get<std::string>())) {
      return v.Error(P("placement_group_strategy"),
                     absl::StrCat("must be one of PACK, SPREAD, STRICT_PACK, STRICT_SPREAD (got ",
                                  Show(*it), ")"));
    }
  }
  if (auto it = f.find("max_replicas_per_node"); it != f.end() && !it->is_null()) {
    auto n = v.Int32(P("max_replicas_per_node"), *it);
    if (!n.ok()) return n.status();
    if (*n < 1 || *n > 100) {
      return v.Error(P("max_replicas_per_node"),
                     absl::StrCat("must be between 1 and 100 or null (got ", *n, ")"));
    }
  }
  if (auto it = f.find("logging_config"); it != f.end() && !it->is_null()) {
    auto lc = ValidateLoggingConfig(v, P("logging_config"), *it, /*fill_defaults=*/false);
    if (!lc.ok()) return lc.status();
    *it = *lc;
  }
  if (auto it = f.find("request_router_config"); it != f.end() && !it->is_null()) {
    std::string p = P("request_router_config");
    if (auto st = v.Mapping(p, *it); !st.ok()) return st;
    static const std::set<std::string> kRouterKnown = {
        "request_router_class", "request_router_kwargs", "request_routing_stats_period_s",
        "request_routing_stats_timeout_s", "initial_backoff_s", "backoff_multiplier",
        "max_backoff_s"};
    if (auto st = v.UnknownKeys(p, *it, kRouterKnown); !st.ok()) return st;
    if (auto c = it->find("request_router_class"); c != it->end() && !c->is_string()) {
      return v.TypeError(Join(p, "request_router_class"), "a string", *c);
    }
    if (auto k = it->find("request_router_kwargs"); k != it->end()) {
      if (auto st = v.Mapping(Join(p, "request_router_kwargs"), *k); !st.ok()) return st;
    }
    for (const char* key : {"request_routing_stats_period_s", "request_routing_stats_timeout_s"}) {
      if (auto s = it->find(key); s != it->end()) {
        if (auto st = v.NumberAtLeast(Join(p, key), *s, 0, true); !st.ok()) return st;
      }
    }
  }

  // Autoscaling: rename aliases; validate (after the "auto" defaults when num_replicas=auto,
  // since those change the bounds the cross-field checks use).
  bool has_autoscaling = f.contains("autoscaling_config") && !f["autoscaling_config"].is_null();
  std::map<std::string, std::string> as_written;
  if (auto it = f.find("autoscaling_config"); it != f.end()) {
    std::string p = P("autoscaling_config");
    if (auto st = v.MappingOrNull(p, *it); !st.ok()) return st;
    static const std::set<std::string> kAutoscalingKnown = {
        "min_replicas", "initial_replicas", "max_replicas", "target_ongoing_requests",
        "target_num_ongoing_requests_per_replica", "metrics_interval_s", "look_back_period_s",
        "smoothing_factor", "upscale_smoothing_factor", "downscale_smoothing_factor",
        "upscaling_factor", "downscaling_factor", "upscale_delay_s", "downscale_delay_s",
        "downscale_to_zero_delay_s", "policy", "aggregation_function"};
    if (auto st = v.UnknownKeys(p, *it, kAutoscalingKnown); !st.ok()) return st;
    if (it->is_object()) {
      json renamed = RenameAliases(*it, kAutoscalingAliases, as_written);
      if (!auto_replicas) {
        if (auto st = ValidateAutoscalingConfig(v, p, renamed, as_written); !st.ok()) return st;
      }
      *it = std::move(renamed);
    }
  }
  if (has_autoscaling && f.contains("num_replicas") && f["num_replicas"].is_number_integer()) {
    return v.Error(P("num_replicas"),
                   "manually setting num_replicas is not allowed when autoscaling_config is "
                   "provided");
  }
  if (f.contains("max_replicas_per_node") && !f["max_replicas_per_node"].is_null() &&
      f.contains("placement_group_bundles") && !f["placement_group_bundles"].is_null()) {
    return v.Error(P("max_replicas_per_node"),
                   "setting max_replicas_per_node is not allowed when placement_group_bundles "
                   "is provided");
  }
  if (auto_replicas) {
    // Seed: num_replicas "auto" == max_ongoing_requests 5 and autoscaling {min 1, max 100,
    // target 2}, with any user autoscaling fields on top.
    json expanded = {{"min_replicas", 1}, {"max_replicas", 100}, {"target_ongoing_requests", 2}};
    if (has_autoscaling) expanded.update(f["autoscaling_config"]);
    if (auto st = ValidateAutoscalingConfig(v, P("autoscaling_config"), expanded, as_written);
        !st.ok()) {
      return st;
    }
    f["num_replicas"] = nullptr;
    f["autoscaling_config"] = std::move(expanded);
    if (!f.contains("max_ongoing_requests")) f["max_ongoing_requests"] = 5;
  }
  d.fields = std::move(f);
  return d;
}

bool ConfiguresAutoscaling(const DeploymentOverride& d) {
  auto it = d.fields.find("autoscaling_config");
  return it != d.fields.end() && !it->is_null();
}

/// Legacy single-application fields (ServeApplicationSchema) found at the top level.
const std::set<std::string>& LegacyAppFields() {
  static const std::set<std::string> kFields = {"name",
                                                "route_prefix",
                                                "import_path",
                                                "runtime_env",
                                                "args",
                                                "deployments",
                                                "logging_config",
                                                "external_scaler_enabled",
                                                "autoscaling_policy"};
  return kFields;
}

/// One ServeApplicationSchema at `prefix` ("applications[0]", or "" for the legacy top-level
/// form). `multi_app` rejects host/port.
absl::StatusOr<ApplicationConfig> ParseApplication(const Validator& v, const std::string& prefix,
                                                   const json& in, bool multi_app) {
  if (auto st = v.Mapping(prefix, in); !st.ok()) return st;
  auto P = [&](const std::string& key) { return Join(prefix, key); };
  if (multi_app) {
    std::set<std::string> known = LegacyAppFields();
    known.insert({"host", "port"});  // rejected below with their own message
    if (auto st = v.UnknownKeys(prefix, in, known); !st.ok()) return st;
  }
  ApplicationConfig app;
  if (auto it = in.find("name"); it != in.end()) {
    auto name = NameField(v, P("name"), *it);
    if (!name.ok()) return name.status();
    app.name = *name;
  }
  if (multi_app) {
    if (auto it = in.find("host"); it != in.end()) {
      return v.Error(P("host"), absl::StrCat("host ", Show(*it),
                                             " is set in the config for application \"", app.name,
                                             "\"; remove it and set http_options.host in the "
                                             "top-level config only"));
    }
    if (auto it = in.find("port"); it != in.end()) {
      return v.Error(P("port"), absl::StrCat("port ", Show(*it),
                                             " is set in the config for application \"", app.name,
                                             "\"; remove it and set http_options.port in the "
                                             "top-level config only"));
    }
  }
  if (auto it = in.find("route_prefix"); it != in.end()) {
    if (it->is_null()) {
      app.route_prefix = std::nullopt;
    } else {
      auto rp = v.String(P("route_prefix"), *it);
      if (!rp.ok()) return rp.status();
      if (auto st = ValidateRoutePrefix(v, P("route_prefix"), *rp); !st.ok()) return st;
      app.route_prefix = *rp;
    }
  }
  auto ip_it = in.find("import_path");
  if (ip_it == in.end() || ip_it->is_null()) return v.Error(P("import_path"), "field required");
  auto ip = v.String(P("import_path"), *ip_it);
  if (!ip.ok()) return ip.status();
  if (auto st = ValidateImportPath(v, P("import_path"), *ip); !st.ok()) return st;
  app.import_path = *ip;
  if (auto it = in.find("runtime_env"); it != in.end()) {
    if (auto st = v.Mapping(P("runtime_env"), *it); !st.ok()) return st;
    app.runtime_env = *it;
  }
  if (auto it = in.find("args"); it != in.end()) {
    if (auto st = v.Mapping(P("args"), *it); !st.ok()) return st;
    app.args = *it;
  }
  if (auto it = in.find("logging_config"); it != in.end() && !it->is_null()) {
    auto lc = ValidateLoggingConfig(v, P("logging_config"), *it, /*fill_defaults=*/true);
    if (!lc.ok()) return lc.status();
    app.logging_config = *lc;
  }
  if (auto it = in.find("external_scaler_enabled"); it != in.end()) {
    if (!it->is_boolean()) return v.TypeError(P("external_scaler_enabled"), "a boolean", *it);
    app.external_scaler_enabled = it->get<bool>();
  }
  if (auto it = in.find("autoscaling_policy"); it != in.end()) {
    if (auto st = v.MappingOrNull(P("autoscaling_policy"), *it); !st.ok()) return st;
  }
  if (auto it = in.find("deployments"); it != in.end()) {
    if (!it->is_array()) return v.TypeError(P("deployments"), "a list of mappings", *it);
    for (size_t i = 0; i < it->size(); ++i) {
      std::string dp = Index(P("deployments"), i);
      auto d = ParseDeployment(v, dp, (*it)[i]);
      if (!d.ok()) return d.status();
      if (app.external_scaler_enabled && ConfiguresAutoscaling(*d)) {
        return v.Error(dp, absl::StrCat("deployment \"", d->name,
                                        "\" configures autoscaling, which is not allowed when "
                                        "external_scaler_enabled is true"));
      }
      app.deployments.push_back(std::move(*d));
    }
  }
  app.submitted = in;
  return app;
}

absl::StatusOr<HttpOptions> ParseHttpOptions(const Validator& v, const std::string& path,
                                             const json& in) {
  HttpOptions h;
  if (auto st = v.Mapping(path, in); !st.ok()) return st;
  auto P = [&](const std::string& key) { return Join(path, key); };
  // Unknown fields are ignored (forward-compatible, as in Ray), with a warning.
  static const std::set<std::string> kKnown = {
      "host", "port", "root_path", "request_timeout_s", "keep_alive_timeout_s", "ssl_keyfile",
      "ssl_certfile", "ssl_keyfile_password", "ssl_ca_certs"};
  if (auto st = v.UnknownKeys(path, in, kKnown); !st.ok()) return st;
  if (auto it = in.find("host"); it != in.end()) {
    auto s = v.String(P("host"), *it);
    if (!s.ok()) return s.status();
    h.host = *s;
  }
  if (auto it = in.find("port"); it != in.end()) {
    auto port = v.Int32(P("port"), *it);
    if (!port.ok()) return port.status();
    if (*port < 0 || *port > 65535) {
      return v.Error(P("port"), absl::StrCat("must be between 0 and 65535 (got ", *port, ")"));
    }
    h.port = *port;
  }
  if (auto it = in.find("root_path"); it != in.end()) {
    auto s = v.String(P("root_path"), *it);
    if (!s.ok()) return s.status();
    h.root_path = *s;
  }
  if (auto it = in.find("request_timeout_s"); it != in.end() && !it->is_null()) {
    if (auto st = v.NumberAtLeast(P("request_timeout_s"), *it, 0, true); !st.ok()) return st;
    h.request_timeout_s = it->get<double>();
  }
  if (auto it = in.find("keep_alive_timeout_s"); it != in.end()) {
    if (auto st = v.NumberAtLeast(P("keep_alive_timeout_s"), *it, 0, false); !st.ok()) return st;
    h.keep_alive_timeout_s = it->get<double>();
  }
  struct OptField {
    const char* name;
    std::optional<std::string>* out;
  };
  for (OptField fld :
       {OptField{"ssl_keyfile", &h.ssl_keyfile}, OptField{"ssl_certfile", &h.ssl_certfile},
        OptField{"ssl_keyfile_password", &h.ssl_keyfile_password},
        OptField{"ssl_ca_certs", &h.ssl_ca_certs}}) {
    auto it = in.find(fld.name);
    if (it == in.end() || it->is_null()) continue;
    auto s = v.String(P(fld.name), *it);
    if (!s.ok()) return s.status();
    *fld.out = *s;
  }
  if (h.ssl_keyfile.has_value() != h.ssl_certfile.has_value()) {
    return v.Error(P(h.ssl_keyfile ? "ssl_keyfile" : "ssl_certfile"),
                   "ssl_keyfile and ssl_certfile must be given together");
  }
  return h;
}

absl::StatusOr<GrpcOptions> ParseGrpcOptions(const Validator& v, const std::string& path,
                                             const json& in) {
  GrpcOptions g;
  if (auto st = v.Mapping(path, in); !st.ok()) return st;
  auto P = [&](const std::string& key) { return Join(path, key); };
  static const std::set<std::string> kKnown = {"port", "grpc_servicer_functions",
                                               "request_timeout_s"};
  if (auto st = v.UnknownKeys(path, in, kKnown); !st.ok()) return st;
  if (auto it = in.find("port"); it != in.end()) {
    auto port = v.Int32(P("port"), *it);
    if (!port.ok()) return port.status();
    if (*port < 0 || *port > 65535) {
      return v.Error(P("port"), absl::StrCat("must be between 0 and 65535 (got ", *port, ")"));
    }
    g.port = *port;
  }
  if (auto it = in.find("grpc_servicer_functions"); it != in.end()) {
    if (!it->is_array()) return v.TypeError(P("grpc_servicer_functions"), "a list", *it);
    for (size_t i = 0; i < it->size(); ++i) {
      auto s = v.String(Index(P("grpc_servicer_functions"), i), (*it)[i]);
      if (!s.ok()) return s.status();
      g.grpc_servicer_functions.push_back(*s);
    }
  }
  if (auto it = in.find("request_timeout_s"); it != in.end() && !it->is_null()) {
    if (auto st = v.NumberAtLeast(P("request_timeout_s"), *it, 0, true); !st.ok()) return st;
    g.request_timeout_s = it->get<double>();
  }
  return g;
}

std::string QuotedList(const std::vector<std::string>& items) {
  std::vector<std::string> quoted;
  for (const auto& s : items) quoted.push_back("\"" + s + "\"");
  return absl::StrJoin(quoted, ", ");
}

absl::StatusOr<ServeDeployConfig> ParseDocument(const json& doc, const LineMap* lines,
                                                 const ParseOptions& options) {
  Validator v(lines, options);
  if (!doc.is_object()) return v.TypeError("", "a mapping", doc);
  ServeDeployConfig config;

  bool legacy = !doc.contains("applications") && doc.contains("import_path");
  {
    std::set<std::string> known = {"proxy_location", "http_options", "grpc_options",
                                   "logging_config", "applications", "target_capacity"};
    if (legacy) {
      known.insert(LegacyAppFields().begin(), LegacyAppFields().end());
      known.insert({"host", "port"});
    }
    if (auto st = v.UnknownKeys("", doc, known); !st.ok()) return st;
  }

  if (auto it = doc.find("proxy_location"); it != doc.end()) {
    if (!it->is_string() || (*it != "Disabled" && *it != "HeadOnly" && *it != "EveryNode")) {
      return v.Error("proxy_location", absl::StrCat("must be one of Disabled, HeadOnly, "
                                                    "EveryNode (got ",
                                                    Show(*it), ")"));
    }
    config.proxy_location = it->get<std::string>();
  }
  if (auto it = doc.find("http_options"); it != doc.end()) {
    auto h = ParseHttpOptions(v, "http_options", *it);
    if (!h.ok()) return h.status();
    config.http_options = *h;
  }
  if (auto it = doc.find("grpc_options"); it != doc.end()) {
    auto g = ParseGrpcOptions(v, "grpc_options", *it);
    if (!g.ok()) return g.status();
    config.grpc_options = *g;
  }
  if (auto it = doc.find("target_capacity"); it != doc.end() && !it->is_null()) {
    auto tc = v.Number("target_capacity", *it);
    if (!tc.ok()) return tc.status();
    if (!(*tc >= 0 && *tc <= 100)) {
      return v.Error("target_capacity",
                     absl::StrCat("must be between 0 and 100 or null (got ", it->dump(), ")"));
    }
    config.target_capacity = *tc;
  }

  if (legacy) {
    // Seed "Migrating from a single-application config": the whole document is the one
    // application; host/port move under http_options.
    json app_doc = json::object();
    for (auto it = doc.begin(); it != doc.end(); ++it) {
      if (LegacyAppFields().count(it.key())) app_doc[it.key()] = it.value();
    }
    auto app = ParseApplication(v, "", app_doc, /*multi_app=*/false);
    if (!app.ok()) return app.status();
    if (auto it = doc.find("host"); it != doc.end()) {
      auto s = v.String("host", *it);
      if (!s.ok()) return s.status();
      config.http_options.host = *s;
    }
    if (auto it = doc.find("port"); it != doc.end()) {
      auto port = v.Int32("port", *it);
      if (!port.ok()) return port.status();
      if (*port < 0 || *port > 65535) {
        return v.Error("port", absl::StrCat("must be between 0 and 65535 (got ", *port, ")"));
      }
      config.http_options.port = *port;
    }
    config.applications.push_back(std::move(*app));
  } else {
    auto it = doc.find("applications");
    if (it == doc.end()) return v.Error("applications", "field required");
    if (!it->is_array()) return v.TypeError("applications", "a list of mappings", *it);
    for (size_t i = 0; i < it->size(); ++i) {
      auto app = ParseApplication(v, Index("applications", i), (*it)[i], /*multi_app=*/true);
      if (!app.ok()) return app.status();
      config.applications.push_back(std::move(*app));
    }
    // The top-level logging_config (the legacy form's belongs to its application).
    if (auto lc = doc.find("logging_config"); lc != doc.end() && !lc->is_null()) {
      auto parsed = ValidateLoggingConfig(v, "logging_config", *lc, /*fill_defaults=*/true);
      if (!parsed.ok()) return parsed.status();
      config.logging_config = *parsed;
    }
  }

  // Cross-application rules (ServeDeploySchema validators).
  const std::string apps_path = legacy ? std::string() : std::string("applications");
  std::map<std::string, int> name_count;
  std::vector<std::string> dup_names;
  std::map<std::string, int> prefix_count;
  std::vector<std::string> dup_prefixes;
  for (size_t i = 0; i < config.applications.size(); ++i) {
    const ApplicationConfig& app = config.applications[i];
    if (app.name.empty()) {
      return v.Error(legacy ? "name" : Join(Index("applications", i), "name"),
                     "application names must be nonempty");
    }
    if (++name_count[app.name] == 2) dup_names.push_back(app.name);
    if (app.route_prefix && ++prefix_count[*app.route_prefix] == 2) {
      dup_prefixes.push_back(*app.route_prefix);
    }
  }
  if (!dup_names.empty()) {
    return v.Error(apps_path,
                   absl::StrCat("found multiple configs for ",
                                dup_names.size() == 1 ? "application " : "applications ",
                                QuotedList(dup_names), "; please remove all duplicates"));
  }
  if (!dup_prefixes.empty()) {
    return v.Error(apps_path,
                   absl::StrCat("found duplicate applications for ",
                                dup_prefixes.size() == 1 ? "route prefix " : "route prefixes ",
                                QuotedList(dup_prefixes),
                                "; please ensure each application's route_prefix is unique"));
  }
  return config;
}

// ---- YAML emission -------------------------------------------------------------------------

void EmitJson(YAML::Emitter& out, const json& j, const std::vector<std::string>* key_order);

void EmitString(YAML::Emitter& out, const std::string& s) {
  // A string that would read back as another type (or empty) is quoted.
  if (s.empty() || !ResolvePlainScalar(s).is_string()) {
    out << YAML::DoubleQuoted << s;
  } else {
    out << s;
  }
}

void EmitObject(YAML::Emitter& out, const json& j, const std::vector<std::string>* key_order) {
  if (j.empty()) {
    out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
    return;
  }
  out << YAML::BeginMap;
  std::vector<std::string> keys;
  if (key_order != nullptr) {
    for (const auto& k : *key_order) {
      if (j.contains(k)) keys.push_back(k);
    }
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (std::find(keys.begin(), keys.end(), it.key()) == keys.end()) keys.push_back(it.key());
  }
  for (const auto& k : keys) {
    out << YAML::Key;
    EmitString(out, k);
    out << YAML::Value;
    EmitJson(out, j.at(k), nullptr);
  }
  out << YAML::EndMap;
}

void EmitJson(YAML::Emitter& out, const json& j, const std::vector<std::string>* key_order) {
  switch (j.type()) {
    case json::value_t::null:
      out << YAML::Null;
      break;
    case json::value_t::boolean:
      out << j.get<bool>();
      break;
    case json::value_t::number_integer:
      out << j.get<int64_t>();
      break;
    case json::value_t::number_unsigned:
      out << j.get<uint64_t>();
      break;
    case json::value_t::number_float: {
      double d = j.get<double>();
      if (std::isnan(d)) {
        out << ".nan";
      } else if (std::isinf(d)) {
        out << (d > 0 ? ".inf" : "-.inf");
      } else {
        out << j.dump();  // shortest round-trip form, always with a '.' or exponent
      }
      break;
    }
    case json::value_t::string:
      EmitString(out, j.get<std::string>());
      break;
    case json::value_t::array:
      if (j.empty()) {
        out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
      } else {
        out << YAML::BeginSeq;
        for (const auto& item : j) EmitJson(out, item, key_order);
        out << YAML::EndSeq;
      }
      break;
    case json::value_t::object:
      EmitObject(out, j, key_order);
      break;
    default:
      out << YAML::Null;
      break;
  }
}

/// "key: value" for one top-level key, block style.
std::string EmitTopLevel(const std::string& key, const json& value,
                         const std::vector<std::string>* key_order = nullptr) {
  YAML::Emitter out;
  out.SetNullFormat(YAML::LowerNull);
  out.SetBoolFormat(YAML::TrueFalseBool);
  out << YAML::Block << YAML::BeginMap << YAML::Key << key << YAML::Value;
  EmitJson(out, value, key_order);
  out << YAML::EndMap;
  return out.c_str();
}

}  // namespace

namespace {
absl::StatusOr<json> YamlToJsonWithLines(const std::string& text, LineMap& lines) {
  json doc;
  try {
    YAML::Node root = YAML::Load(text);
    if (auto st = YamlToJson(root, "", 0, doc, lines); !st.ok()) return st;
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) return absl::InvalidArgumentError("invalid YAML: " + e.msg);
    return absl::InvalidArgumentError(absl::StrCat("invalid YAML at line ", e.mark.line + 1,
                                                   ", column ", e.mark.column + 1, ": ", e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid YAML: ", e.what()));
  }
  return doc;
}
}  // namespace

absl::StatusOr<nlohmann::json> YamlToJson(const std::string& text) {
  LineMap lines;
  return YamlToJsonWithLines(text, lines);
}

std::string JsonToYaml(const nlohmann::json& value) {
  YAML::Emitter out;
  out.SetNullFormat(YAML::LowerNull);
  EmitJson(out, value, nullptr);
  return std::string(out.c_str()) + "\n";
}

std::string AppConfigToYaml(const nlohmann::json& app) {
  static const std::vector<std::string> kAppOrder = {
      "name",           "route_prefix",    "import_path", "args",
      "runtime_env",    "deployments",     "logging_config", "external_scaler_enabled",
      "autoscaling_policy"};
  if (!app.is_object()) return JsonToYaml(app);
  YAML::Emitter out;
  out.SetNullFormat(YAML::LowerNull);
  out << YAML::BeginMap;
  std::vector<std::string> keys;
  for (const auto& k : kAppOrder) {
    if (app.contains(k)) keys.push_back(k);
  }
  for (auto it = app.begin(); it != app.end(); ++it) {
    if (std::find(keys.begin(), keys.end(), it.key()) == keys.end()) keys.push_back(it.key());
  }
  for (const auto& k : keys) {
    out << YAML::Key;
    EmitString(out, k);
    out << YAML::Value;
    const json& value = app.at(k);
    if (k == "deployments" && value.is_array() && !value.empty()) {
      out << YAML::BeginSeq;
      for (const json& d : value) EmitJson(out, d, &DeploymentFieldOrder());
      out << YAML::EndSeq;
    } else {
      EmitJson(out, value, nullptr);
    }
  }
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

absl::StatusOr<ServeDeployConfig> ParseServeDeployConfig(const std::string& text,
                                                         const ParseOptions& options) {
  LineMap lines;
  auto doc = YamlToJsonWithLines(text, lines);
  if (!doc.ok()) return doc.status();
  try {
    return ParseDocument(*doc, &lines, options);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid config: ", e.what()));
  }
}

absl::StatusOr<ServeDeployConfig> ParseServeDeployConfig(const nlohmann::json& doc,
                                                         const ParseOptions& options) {
  try {
    return ParseDocument(doc, nullptr, options);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid config: ", e.what()));
  }
}

bool StrictConfigFromEnv() {
  const char* v = std::getenv("SERVE_STRICT_CONFIG");
  if (v == nullptr) return false;
  std::string s(v);
  return s == "1" || s == "true" || s == "TRUE" || s == "True" || s == "yes";
}

absl::StatusOr<ServeDeployConfig> LoadServeDeployConfig(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat("config file '", path, "' does not exist"));
  }
  if (fs::is_directory(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file '", path, "' is a directory, not a file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open config file '", path, "'"));
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read config file '", path, "'"));
  }
  auto config = ParseServeDeployConfig(buf.str());
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

nlohmann::json ToJson(const ServeDeployConfig& config) {
  auto opt = [](const auto& o) { return o ? json(*o) : json(nullptr); };
  const HttpOptions& h = config.http_options;
  json http = {{"host", h.host},
               {"port", h.port},
               {"root_path", h.root_path},
               {"request_timeout_s", opt(h.request_timeout_s)},
               {"keep_alive_timeout_s", h.keep_alive_timeout_s},
               {"ssl_keyfile", opt(h.ssl_keyfile)},
               {"ssl_certfile", opt(h.ssl_certfile)},
               {"ssl_keyfile_password", opt(h.ssl_keyfile_password)},
               {"ssl_ca_certs", opt(h.ssl_ca_certs)}};
  const GrpcOptions& g = config.grpc_options;
  json grpc = {{"port", g.port},
               {"grpc_servicer_functions", g.grpc_servicer_functions},
               {"request_timeout_s", opt(g.request_timeout_s)}};
  json apps = json::array();
  for (const ApplicationConfig& app : config.applications) {
    json deployments = json::array();
    for (const DeploymentOverride& d : app.deployments) {
      json fields = d.fields.is_object() ? d.fields : json::object();
      fields["name"] = d.name;
      deployments.push_back(std::move(fields));
    }
    apps.push_back({{"name", app.name},
                    {"route_prefix", opt(app.route_prefix)},
                    {"import_path", app.import_path},
                    {"runtime_env", app.runtime_env},
                    {"args", app.args},
                    {"deployments", std::move(deployments)},
                    {"logging_config", opt(app.logging_config)},
                    {"external_scaler_enabled", app.external_scaler_enabled}});
  }
  return json{
      {"proxy_location", config.proxy_location}, {"http_options", std::move(http)},
      {"grpc_options", std::move(grpc)},         {"logging_config", opt(config.logging_config)},
      {"applications", std::move(apps)},         {"target_capacity", opt(config.target_capacity)}};
}

nlohmann::json MergeDeploymentOptions(const nlohmann::json& code_options,
                                      const nlohmann::json& override_fields) {
  json merged = code_options.is_object() ? code_options : json::object();
  if (!override_fields.is_object()) return merged;
  // Field-wise: each field present in the file replaces the code's value as a whole, so
  // ray_actor_options, user_config and autoscaling_config are never deep-merged.
  // The file picks the scaling mode: an integer num_replicas drops the code's
  // autoscaling_config; a non-null autoscaling_config drops the code's integer num_replicas.
  // When the file sets autoscaling_config and the code said num_replicas "auto", the code's
  // "auto" is expanded first (max_ongoing_requests 5 unless set) and its autoscaling defaults
  // are replaced with the file's dict as a whole.
  auto has = [&](const char* key) { return override_fields.contains(key); };
  if (has("num_replicas") && override_fields["num_replicas"].is_number_integer()) {
    merged.erase("autoscaling_config");
  }
  if (has("autoscaling_config")) {
    auto code_replicas = merged.find("num_replicas");
    bool code_auto = code_replicas != merged.end() && *code_replicas == "auto";
    if (code_auto && !has("num_replicas")) {
      auto set = [](const json& j, const char* key) {
        return j.contains(key) && !j[key].is_null();
      };
      bool code_set = set(merged, "max_ongoing_requests") || set(merged, "max_concurrent_queries");
      if (!code_set && !has("max_ongoing_requests") && !has("max_concurrent_queries")) {
        merged["max_ongoing_requests"] = 5;
      }
      merged["num_replicas"] = nullptr;
    }
    if (!override_fields["autoscaling_config"].is_null() && code_replicas != merged.end() &&
        code_replicas->is_number_integer()) {
      merged.erase("num_replicas");
    }
  }
  for (auto it = override_fields.begin(); it != override_fields.end(); ++it) {
    merged[it.key()] = it.value();
  }
  return merged;
}

std::string FormatServeBuildYaml(const std::vector<BuiltApplication>& apps,
                                 const std::vector<std::string>& grpc_servicer_functions) {
  static const std::vector<std::string> kAppOrder = {"name", "route_prefix", "import_path",
                                                     "runtime_env", "deployments"};
  static const std::vector<std::string> kHttpOrder = {"host", "port"};
  static const std::vector<std::string> kGrpcOrder = {"port", "grpc_servicer_functions"};
  static const std::vector<std::string> kLoggingOrder = {
      "encoding", "log_level", "logs_dir", "enable_access_log", "additional_log_standard_attrs"};

  std::vector<std::string> sections;
  sections.push_back(EmitTopLevel("proxy_location", "EveryNode"));
  sections.push_back(
      EmitTopLevel("http_options", json{{"host", "0.0.0.0"}, {"port", 8000}}, &kHttpOrder));
  sections.push_back(EmitTopLevel(
      "grpc_options", json{{"port", 9000}, {"grpc_servicer_functions", grpc_servicer_functions}},
      &kGrpcOrder));
  sections.push_back(EmitTopLevel("logging_config", DefaultLoggingConfig(), &kLoggingOrder));

  // Applications are emitted by hand so that the app keys and each deployment's keys keep
  // DeploymentSchema's field order.
  YAML::Emitter out;
  out.SetNullFormat(YAML::LowerNull);
  out.SetBoolFormat(YAML::TrueFalseBool);
  out << YAML::Block << YAML::BeginMap << YAML::Key << "applications" << YAML::Value;
  if (apps.empty()) {
    out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
  } else {
    out << YAML::BeginSeq;
    for (size_t i = 0; i < apps.size(); ++i) {
      std::string name = absl::StrCat("app", i + 1);
      out << YAML::BeginMap;
      out << YAML::Key << "name" << YAML::Value;
      EmitString(out, name);
      out << YAML::Key << "route_prefix" << YAML::Value;
      EmitString(out, apps.size() == 1 ? "/" : "/" + name);
      out << YAML::Key << "import_path" << YAML::Value;
      EmitString(out, apps[i].import_path);
      out << YAML::Key << "runtime_env" << YAML::Value << YAML::Flow << YAML::BeginMap
          << YAML::EndMap;
      out << YAML::Key << "deployments" << YAML::Value;
      if (apps[i].deployments.empty()) {
        out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
      } else {
        out << YAML::BeginSeq;
        for (const json& d : apps[i].deployments) EmitJson(out, d, &DeploymentFieldOrder());
        out << YAML::EndSeq;
      }
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  out << YAML::EndMap;
  sections.push_back(out.c_str());

  return absl::StrCat("# This file was generated using the `serve build` command on serve ",
                      SERVE_VERSION_STRING, ".\n\n", absl::StrJoin(sections, "\n\n"), "\n");
}

}  // namespace serve::config
