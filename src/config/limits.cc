#include "config/limits.h"

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace serve::config::limits {
namespace {

using json = nlohmann::json;

std::string FormatNumber(double d) {
  if (d == std::floor(d) && std::fabs(d) < 1e15) return absl::StrCat(static_cast<int64_t>(d));
  return absl::StrCat(d);
}

/// How a non-finite value reads in a message (JSON's dump writes them as "null").
std::string ShowNumber(const json& j) {
  if (j.is_number_float()) {
    double d = j.get<double>();
    if (std::isnan(d)) return "NaN";
    if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  }
  return j.dump();
}

}  // namespace

const Range* FieldRange(std::string_view field) {
  static const std::map<std::string, Range, std::less<>> kRanges = {
      // Replica counts and request limits.
      {"num_replicas", {1, false, kMaxReplicas, true}},
      {"min_replicas", {0, false, kMaxReplicas, true}},
      {"max_replicas", {1, false, kMaxReplicas, true}},
      {"initial_replicas", {0, false, kMaxReplicas, true}},
      {"max_ongoing_requests", {1, false, kMaxOngoingRequests, true}},
      {"max_replicas_per_node", {1, false, kMaxReplicasPerNode, true}},
      // Durations.
      {"health_check_period_s", {0, true, kMaxDurationS, false}},
      {"health_check_timeout_s", {0, true, kMaxDurationS, false}},
      {"graceful_shutdown_wait_loop_s", {0, false, kMaxDurationS, false}},
      {"graceful_shutdown_timeout_s", {0, false, kMaxDurationS, false}},
      {"metrics_interval_s", {0, true, kMaxDurationS, false}},
      {"look_back_period_s", {0, true, kMaxDurationS, false}},
      {"upscale_delay_s", {0, false, kMaxDurationS, false}},
      {"downscale_delay_s", {0, false, kMaxDurationS, false}},
      {"downscale_to_zero_delay_s", {0, false, kMaxDurationS, false}},
      {"request_timeout_s", {0, true, kMaxDurationS, false}},
      {"keep_alive_timeout_s", {0, false, kMaxDurationS, false}},
      {"request_routing_stats_period_s", {0, true, kMaxDurationS, false}},
      {"request_routing_stats_timeout_s", {0, true, kMaxDurationS, false}},
      {"initial_backoff_s", {0, true, kMaxDurationS, false}},
      {"max_backoff_s", {0, true, kMaxDurationS, false}},
      // Autoscaling targets and factors.
      {"target_ongoing_requests", {0, true, kMaxTargetOngoingRequests, false}},
      {"smoothing_factor", {0, true, kMaxScalingFactor, false}},
      {"upscale_smoothing_factor", {0, true, kMaxScalingFactor, false}},
      {"downscale_smoothing_factor", {0, true, kMaxScalingFactor, false}},
      {"upscaling_factor", {0, true, kMaxScalingFactor, false}},
      {"downscaling_factor", {0, true, kMaxScalingFactor, false}},
      {"backoff_multiplier", {0, true, kMaxScalingFactor, false}},
      // Resources (ray_actor_options).
      {"num_cpus", {0, false, kMaxResourceUnits, false}},
      {"num_gpus", {0, false, kMaxResourceUnits, false}},
      {"memory", {0, false, kMaxMemoryBytes, false}},
      {"object_store_memory", {0, false, kMaxMemoryBytes, false}},
      // Other.
      {"port", {0, false, 65535, true}},
      {"target_capacity", {0, false, 100, false}},
  };
  auto it = kRanges.find(field);
  return it == kRanges.end() ? nullptr : &it->second;
}

std::string CheckRange(const json& j, const Range& r) {
  if (!j.is_number()) return absl::StrCat("must be a number (got ", j.dump(), ")");
  if (j.is_number_float()) {
    double d = j.get<double>();
    if (!std::isfinite(d)) return absl::StrCat("must be a finite number (got ", ShowNumber(j), ")");
    if (r.integer) return absl::StrCat("must be an integer (got ", ShowNumber(j), ")");
  }
  // Integers compare exactly: a uint64 above int64's range is out of every range here.
  bool too_big = j.is_number_unsigned() &&
                 j.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  double d = j.get<double>();
  bool below = r.min_exclusive ? !(d > r.min) : !(d >= r.min);
  if (below) {
    // An integer range starting at 1 reads "> 0", as pydantic's PositiveInt does.
    if (r.min_exclusive || (r.integer && r.min == 1)) {
      return absl::StrCat("must be > ", FormatNumber(r.min_exclusive ? r.min : r.min - 1),
                          " (got ", ShowNumber(j), ")");
    }
    return absl::StrCat("must be >= ", FormatNumber(r.min), " (got ", ShowNumber(j), ")");
  }
  if (too_big || !(d <= r.max)) {
    return absl::StrCat("must be <= ", FormatNumber(r.max), " (got ", ShowNumber(j), ")");
  }
  return "";
}

std::string CheckNesting(const json& j, int max_depth) {
  // Iterative, so that checking a hostile document cannot itself exhaust the stack.
  std::vector<std::pair<const json*, int>> stack = {{&j, 0}};
  while (!stack.empty()) {
    auto [node, depth] = stack.back();
    stack.pop_back();
    if (!node->is_structured()) continue;
    if (depth + 1 > max_depth) return absl::StrCat("nested deeper than ", max_depth, " levels");
    for (const json& child : *node) stack.emplace_back(&child, depth + 1);
  }
  return "";
}

json ParseBoundedJson(std::string_view text, std::string* error) {
  auto fail = [&](std::string why) {
    if (error != nullptr) *error = std::move(why);
    return json(json::value_t::discarded);
  };
  if (text.size() > kMaxDocumentBytes) {
    return fail(absl::StrCat("document is ", text.size(), " bytes; the limit is ",
                             kMaxDocumentBytes, " bytes"));
  }
  bool too_deep = false;
  // The callback sees each container's depth as the parser opens it; returning false on a
  // start event stops descending, so a deep document is never materialised.
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json&) {
    if ((event == json::parse_event_t::object_start ||
         event == json::parse_event_t::array_start) &&
        depth >= kMaxNestingDepth) {
      too_deep = true;
      return false;
    }
    return true;
  };
  json doc = json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/false);
  if (too_deep) return fail(absl::StrCat("document is nested deeper than ", kMaxNestingDepth,
                                         " levels"));
  if (doc.is_discarded()) return fail("not valid JSON");
  return doc;
}

std::string CheckPathName(std::string_view name) {
  if (name.empty()) return "must be a non-empty string";
  if (name.size() > kMaxNameBytes) {
    return absl::StrCat("must be at most ", kMaxNameBytes, " bytes (got ", name.size(), ")");
  }
  if (name == "." || name == "..") return absl::StrCat("cannot be \"", std::string(name), "\"");
  for (char c : name) {
    if (c == '/' || c == '\\') return "cannot contain '/' or '\\'";
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return "cannot contain NUL or other control characters";
    }
  }
  return "";
}

std::string CheckEnvVarName(std::string_view name) {
  if (name.empty()) return "must have a non-empty name";
  for (char c : name) {
    if (c == '=' || c == '\0') return "cannot have '=' or NUL in its name";
  }
  auto starts = [&](std::string_view prefix) { return name.substr(0, prefix.size()) == prefix; };
  // The dynamic loader and the C library read these before any of the runtime's code runs.
  if (starts("LD_") || name == "GLIBC_TUNABLES" || starts("MALLOC_")) {
    return "changes how the dynamic loader or the C library loads the runtime; not allowed";
  }
  // The runtime's own wiring and credentials, set by the node agent for each process.
  static const std::array<std::string_view, 11> kRuntime = {
      "SERVE_CLUSTER_TOKEN",       "SERVE_AGENT_ADDRESS",     "SERVE_NODE_IP",
      "SERVE_REDIS_ADDRESS",       "SERVE_REDIS_PASSWORD",    "SERVE_DASHBOARD_ADDRESS",
      "RAY_DASHBOARD_ADDRESS",     "SERVE_BIN_DIR",           "SERVE_TEMP_DIR",
      "SERVE_REST_TRUST_LOOPBACK", "SERVE_REST_ALLOWED_HOSTS"};
  for (std::string_view v : kRuntime) {
    // SERVE_CLUSTER_TOKEN covers SERVE_CLUSTER_TOKEN_FILE and any other SERVE_CLUSTER_TOKEN*.
    if (name == v || (v == "SERVE_CLUSTER_TOKEN" && starts(v))) {
      return "is set by the runtime itself (see docs/limits.md); not allowed";
    }
  }
  return "";
}

size_t UnacceptableYamlCharOffset(std::string_view text) {
  const auto* b = reinterpret_cast<const unsigned char*>(text.data());
  size_t i = 0, n = text.size();
  while (i < n) {
    unsigned char c = b[i];
    size_t len;
    uint32_t cp;
    unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
    if (c < 0x80) {
      len = 1;
      cp = c;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return i;
    }
    if (len > 1 && (n - i < len || b[i + 1] < lo || b[i + 1] > hi)) return i;
    for (size_t k = 1; k < len; ++k) {
      if (b[i + k] < 0x80 || b[i + k] > 0xBF) return i;
      cp = (cp << 6) | (b[i + k] & 0x3F);
    }
    bool printable = cp == 0x09 || cp == 0x0A || cp == 0x0D || (cp >= 0x20 && cp <= 0x7E) ||
                     cp == 0x85 || (cp >= 0xA0 && cp <= 0xFFFD) || cp >= 0x10000;
    if (!printable) return i;
    i += len;
  }
  return std::string_view::npos;
}

}  // namespace serve::config::limits
