#include "config/deployment_schema.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"

namespace serve::config::detail {
namespace {

using json = nlohmann::json;

absl::Status ValidateRayActorOptions(const Validator& v, const std::string& path, const json& in) {
  if (in.is_null()) return absl::OkStatus();
  if (auto st = v.Mapping(path, in); !st.ok()) return st;
  for (auto it = in.begin(); it != in.end(); ++it) {
    const std::string& key = it.key();
    const json& val = it.value();
    std::string p = Join(path, key);
    if (key == "num_cpus" || key == "num_gpus" || key == "memory" || key == "object_store_memory") {
      if (val.is_null()) continue;
      if (auto st = v.InRange(p, val, key); !st.ok()) return st;
    } else if (key == "resources") {
      if (auto st = v.Mapping(p, val); !st.ok()) return st;
      for (auto r = val.begin(); r != val.end(); ++r) {
        if (auto st = v.InRange(Join(p, r.key()), r.value(), limits::kCustomResourceRange);
            !st.ok()) {
          return st;
        }
      }
    } else if (key == "runtime_env") {
      if (auto st = ValidateRuntimeEnv(v, p, val); !st.ok()) return st;
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
  struct Field {
    const char* name;
    bool nullable;
  };
  // Ranges: limits::FieldRange.
  static const Field kNumbers[] = {
      {"target_ongoing_requests", false},   {"metrics_interval_s", false},
      {"look_back_period_s", false},        {"smoothing_factor", false},
      {"upscale_smoothing_factor", true},   {"downscale_smoothing_factor", true},
      {"upscaling_factor", true},           {"downscaling_factor", true},
      {"upscale_delay_s", false},           {"downscale_delay_s", false},
      {"downscale_to_zero_delay_s", true}};
  for (const Field& b : kNumbers) {
    auto it = in.find(b.name);
    if (it == in.end() || (b.nullable && it->is_null())) continue;
    if (auto st = v.InRange(P(b.name), *it, b.name); !st.ok()) return st;
  }
  int64_t min_replicas = 1;
  int64_t max_replicas = 1;
  if (auto it = in.find("min_replicas"); it != in.end()) {
    if (auto st = v.InRange(P("min_replicas"), *it, "min_replicas"); !st.ok()) return st;
    min_replicas = it->get<int64_t>();
  }
  if (auto it = in.find("max_replicas"); it != in.end()) {
    if (auto st = v.InRange(P("max_replicas"), *it, "max_replicas"); !st.ok()) return st;
    max_replicas = it->get<int64_t>();
  }
  if (max_replicas < min_replicas) {
    return v.Error(in.contains("max_replicas") ? P("max_replicas") : path,
                   absl::StrCat("max_replicas (", max_replicas, ") must be >= min_replicas (",
                                min_replicas, ")"));
  }
  if (auto it = in.find("initial_replicas"); it != in.end() && !it->is_null()) {
    if (auto st = v.InRange(P("initial_replicas"), *it, "initial_replicas"); !st.ok()) return st;
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

}  // namespace

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
      if (val.is_null()) continue;  // the default encoding
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
    if (!out.contains("encoding")) out["encoding"] = DefaultLoggingConfig()["encoding"];
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
  std::string encoding = DefaultLogEncoding() == LogEncoding::kJson ? "JSON" : "TEXT";
  return json{{"encoding", encoding},
              {"log_level", "INFO"},
              {"logs_dir", nullptr},
              {"enable_access_log", true},
              {"additional_log_standard_attrs", json::array()}};
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
  if (auto st = v.PathName(P("name"), *name); !st.ok()) return st;
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
      if (auto st = v.InRange(P("num_replicas"), *it, "num_replicas"); !st.ok()) return st;
    } else {
      return v.TypeError(P("num_replicas"), "a positive integer, \"auto\" or null", *it);
    }
  }
  if (auto it = f.find("max_ongoing_requests"); it != f.end()) {
    if (auto st = v.InRange(P("max_ongoing_requests"), *it, "max_ongoing_requests"); !st.ok()) {
      return st;
    }
  }
  if (auto it = f.find("max_queued_requests"); it != f.end()) {
    auto q = v.Int32(P("max_queued_requests"), *it);
    if (!q.ok()) return q.status();
    if (*q != -1 && (*q < 1 || *q > limits::kMaxQueuedRequests)) {
      return v.Error(P("max_queued_requests"),
                     absl::StrCat("must be -1 (no limit) or between 1 and ",
                                  limits::kMaxQueuedRequests, " (got ", *q, ")"));
    }
  }
  if (auto it = f.find("user_config"); it != f.end()) {
    if (auto st = v.MappingOrNull(P("user_config"), *it); !st.ok()) return st;
  }
  for (const char* key : {"graceful_shutdown_wait_loop_s", "graceful_shutdown_timeout_s",
                          "health_check_period_s", "health_check_timeout_s"}) {
    if (auto it = f.find(key); it != f.end()) {
      if (auto st = v.InRange(P(key), *it, key); !st.ok()) return st;
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
        if (auto st = v.InRange(Join(Index(p, i), r.key()), r.value(), limits::kBundleRange);
            !st.ok()) {
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
    if (*n < 1 || *n > limits::kMaxReplicasPerNode) {
      return v.Error(P("max_replicas_per_node"),
                     absl::StrCat("must be between 1 and ", limits::kMaxReplicasPerNode,
                                  " or null (got ", *n, ")"));
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
    for (const char* key : {"request_routing_stats_period_s", "request_routing_stats_timeout_s",
                            "initial_backoff_s", "max_backoff_s", "backoff_multiplier"}) {
      if (auto s = it->find(key); s != it->end()) {
        if (auto st = v.InRange(Join(p, key), *s, key); !st.ok()) return st;
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

absl::Status ValidateRuntimeEnv(const Validator& v, const std::string& path, const json& in) {
  if (auto st = v.Mapping(path, in); !st.ok()) return st;
  auto env_vars = in.find("env_vars");
  if (env_vars == in.end() || env_vars->is_null()) return absl::OkStatus();
  std::string p = Join(path, "env_vars");
  if (auto st = v.Mapping(p, *env_vars); !st.ok()) return st;
  for (auto it = env_vars->begin(); it != env_vars->end(); ++it) {
    if (std::string why = limits::CheckEnvVarName(it.key()); !why.empty()) {
      return v.Error(Join(p, it.key()), absl::StrCat("environment variable ", it.key(), " ", why));
    }
    if (!it.value().is_string()) return v.TypeError(Join(p, it.key()), "a string", it.value());
  }
  return absl::OkStatus();
}

bool ConfiguresAutoscaling(const DeploymentOverride& d) {
  auto it = d.fields.find("autoscaling_config");
  return it != d.fields.end() && !it->is_null();
}

}  // namespace serve::config::detail
