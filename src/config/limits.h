#pragma once

// Input limits: the one place where every bound on what a config, a REST body or a
// runtime_env may hold is defined, with its rationale. docs/limits.md lists them for users.
// Values outside a limit are rejected at validation, before any work starts, with the field's
// path and the reason.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace serve::config::limits {

// --- Numbers -----------------------------------------------------------------------------------

/// Replica counts (num_replicas, autoscaling min/max/initial_replicas). Well above what one
/// controller drives; keeps every count and product of counts inside `int`.
inline constexpr int64_t kMaxReplicas = 10'000;
/// max_ongoing_requests per replica.
inline constexpr int64_t kMaxOngoingRequests = 1'000'000;
/// max_queued_requests per caller (-1 means no limit).
inline constexpr int64_t kMaxQueuedRequests = 100'000'000;
/// Ray's own bound on max_replicas_per_node.
inline constexpr int64_t kMaxReplicasPerNode = 100;
/// Every duration in seconds (*_s fields): about 115 days. Larger values are typos, and
/// seconds-to-nanoseconds conversions stay far inside int64.
inline constexpr double kMaxDurationS = 1e7;
/// autoscaling target_ongoing_requests.
inline constexpr double kMaxTargetOngoingRequests = 1e6;
/// Autoscaling smoothing/scaling factors: multipliers of a replica-count delta.
inline constexpr double kMaxScalingFactor = 100;
/// num_cpus, num_gpus and custom resource amounts in ray_actor_options.
inline constexpr double kMaxResourceUnits = 1e6;
/// memory / object_store_memory in bytes, and placement-group bundle amounts (which may hold
/// memory): 2^60 bytes.
inline constexpr double kMaxMemoryBytes = 1152921504606846976.0;

/// An accepted numeric range. `integer` rejects non-integral values (1.5, 1e30 as a float).
struct Range {
  double min;
  bool min_exclusive;  ///< min itself is not allowed ("must be > min")
  double max;
  bool integer;
};

/// Custom resources in ray_actor_options.resources.
inline constexpr Range kCustomResourceRange = {0, false, kMaxResourceUnits, false};
/// Placement-group bundle amounts (CPU, GPU, memory, custom).
inline constexpr Range kBundleRange = {0, false, kMaxMemoryBytes, false};
/// max_queued_requests when not -1.
inline constexpr Range kQueuedRequestsRange = {1, false, kMaxQueuedRequests, true};

/// The range of a numeric DeploymentSchema / AutoscalingConfig / http_options / grpc_options
/// / request_router_config field, by its canonical name ("num_replicas", "min_replicas",
/// "health_check_period_s", "upscaling_factor", "port", ...); nullptr for a name without one.
const Range* FieldRange(std::string_view field);

/// "" when `j` is a number inside `r`. Otherwise the reason, e.g. "must be a finite number
/// (got NaN)", "must be an integer (got 1.5)", "must be <= 10000 (got 100000)",
/// "must be > 0 (got 0)", "must be >= 0 (got -1)".
std::string CheckRange(const nlohmann::json& j, const Range& r);

// --- Documents ---------------------------------------------------------------------------------

/// Nesting depth of any JSON/YAML document (config file, REST body, user_config, args). Real
/// configs nest under 10; the bound keeps recursive conversions far from the stack limit.
inline constexpr int kMaxNestingDepth = 64;
/// Size of a config file or a REST body: configs are kilobytes.
inline constexpr size_t kMaxDocumentBytes = 8 * 1024 * 1024;
/// Nodes of a YAML document after expanding aliases (a "billion laughs" document expands a
/// few lines into 10^9 nodes).
inline constexpr size_t kMaxYamlNodes = 1'000'000;

/// "" when `j` nests at most `max_depth` levels (a scalar is depth 0, [1] is depth 1); else
/// "nested deeper than N levels".
std::string CheckNesting(const nlohmann::json& j, int max_depth = kMaxNestingDepth);

/// Parses JSON `text`, rejecting documents over kMaxDocumentBytes or nested deeper than
/// kMaxNestingDepth without building them. On failure returns a discarded value and sets
/// `error` (when non-null) to the reason.
nlohmann::json ParseBoundedJson(std::string_view text, std::string* error = nullptr);

/// The offset of the first character of `text` a YAML document may not hold, or npos: bytes
/// that are not well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
/// U+10FFFF), and characters outside PyYAML's printable set (controls other than tab, LF, CR
/// and U+0085; U+FFFE, U+FFFF). Ray reads configs with PyYAML, which refuses them too; and the
/// JSON a config becomes is written out again (REST, checkpoints).
size_t UnacceptableYamlCharOffset(std::string_view text);

// --- Names and environment ---------------------------------------------------------------------

/// Application and deployment names become file and directory names (logs, working dirs).
inline constexpr size_t kMaxNameBytes = 128;

/// "" when `name` is usable in a file path: 1..kMaxNameBytes bytes, no '/', '\\' or NUL or
/// other control characters, not "." or "..". Otherwise the reason.
std::string CheckPathName(std::string_view name);

/// "" when runtime_env.env_vars may set `name`. Refused, with the reason: names that are empty
/// or hold '=' or NUL; the dynamic loader's and C library's variables (every LD_*, e.g.
/// LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT; GLIBC_TUNABLES; MALLOC_*); and the runtime's own
/// wiring and credentials (SERVE_CLUSTER_TOKEN*, SERVE_AGENT_ADDRESS, SERVE_NODE_IP,
/// SERVE_REDIS_ADDRESS, SERVE_REDIS_PASSWORD, SERVE_DASHBOARD_ADDRESS, RAY_DASHBOARD_ADDRESS,
/// SERVE_BIN_DIR, SERVE_TEMP_DIR, SERVE_REST_TRUST_LOOPBACK, SERVE_REST_ALLOWED_HOSTS).
/// Tuning variables (RAY_SERVE_*, SERVE_APP_PATH, ...) stay allowed.
std::string CheckEnvVarName(std::string_view name);

}  // namespace serve::config::limits
