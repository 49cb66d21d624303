#include "config/validator.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace serve::config::detail {
namespace {

using json = nlohmann::json;

}  // namespace

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

std::string Show(const json& j) {
  if (j.is_array() || j.is_object()) return TypeName(j);
  return j.dump();
}

std::string Validator::Describe(const std::string& path, const std::string& reason) const {
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

absl::Status Validator::Error(const std::string& path, const std::string& reason) const {
  return absl::InvalidArgumentError(Describe(path, reason));
}

absl::Status Validator::UnknownKeys(const std::string& path, const json& in,
                                    const std::set<std::string>& known,
                                    const std::set<std::string>& unsupported) const {
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

absl::Status Validator::TypeError(const std::string& path, const std::string& expected,
                                  const json& got) const {
  return Error(path, absl::StrCat("must be ", expected, " (got ", Show(got), ")"));
}

absl::StatusOr<int64_t> Validator::Int(const std::string& path, const json& j) const {
  if (j.is_number_unsigned() &&
      j.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Error(path, absl::StrCat("is out of range (got ", j.dump(), ")"));
  }
  if (!j.is_number_integer()) return TypeError(path, "an integer", j);
  return j.get<int64_t>();
}

absl::StatusOr<int> Validator::Int32(const std::string& path, const json& j) const {
  auto v = Int(path, j);
  if (!v.ok()) return v.status();
  if (*v < std::numeric_limits<int>::min() || *v > std::numeric_limits<int>::max()) {
    return Error(path, absl::StrCat("is out of range (got ", *v, ")"));
  }
  return static_cast<int>(*v);
}

absl::StatusOr<double> Validator::Number(const std::string& path, const json& j) const {
  if (!j.is_number()) return TypeError(path, "a number", j);
  return j.get<double>();
}

absl::StatusOr<std::string> Validator::String(const std::string& path, const json& j) const {
  if (!j.is_string()) return TypeError(path, "a string", j);
  return j.get<std::string>();
}

absl::Status Validator::Mapping(const std::string& path, const json& j) const {
  if (!j.is_object()) return TypeError(path, "a mapping", j);
  return absl::OkStatus();
}

absl::Status Validator::MappingOrNull(const std::string& path, const json& j) const {
  if (!j.is_object() && !j.is_null()) return TypeError(path, "a mapping or null", j);
  return absl::OkStatus();
}

absl::Status Validator::InRange(const std::string& path, const json& j,
                               const limits::Range& range) const {
  if (!j.is_number()) {
    return TypeError(path, range.integer ? "an integer" : "a number", j);
  }
  if (std::string why = limits::CheckRange(j, range); !why.empty()) return Error(path, why);
  return absl::OkStatus();
}

absl::Status Validator::InRange(const std::string& path, const json& j,
                               std::string_view field) const {
  const limits::Range* range = limits::FieldRange(field);
  if (range == nullptr) return Error(path, absl::StrCat("no range is defined for ", std::string(field)));
  return InRange(path, j, *range);
}

absl::Status Validator::PathName(const std::string& path, const std::string& name) const {
  if (std::string why = limits::CheckPathName(name); !why.empty()) return Error(path, why);
  return absl::OkStatus();
}

absl::StatusOr<int> Validator::Port(const std::string& path, const json& j) const {
  auto port = Int32(path, j);
  if (!port.ok()) return port.status();
  const limits::Range& r = *limits::FieldRange("port");
  if (*port < r.min || *port > r.max) {
    return Error(path, absl::StrCat("must be between ", r.min, " and ", r.max, " (got ", *port,
                                    ")"));
  }
  return *port;
}

void Validator::Warn(const std::string& path, const std::string& reason) const {
  if (options_.warnings != nullptr) options_.warnings->push_back(Describe(path, reason));
}

std::string Validator::Closest(const std::string& key, const std::set<std::string>& known) {
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

}  // namespace serve::config::detail
