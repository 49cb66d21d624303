#include "config/deployment_config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "config/limits.h"
#include "config/logging_config.h"

namespace serve::config {
namespace {

using json = nlohmann::json;

constexpr const char* kDefaultPolicyNames[] = {
    "ray.serve.autoscaling_policy:default_autoscaling_policy",
    "ray.serve.autoscaling_policy.default_autoscaling_policy",
    "ray.serve.autoscaling_policy:replica_queue_length_autoscaling_policy",
};

absl::Status FieldError(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError("deployment option '" + field + "': " + why);
}

/// Reads `j[key]` into `out` when present and not null; `field` names it in errors. A value
/// outside the field's range (limits::FieldRange of `key`, else of `field`) is an error.
template <class T>
absl::Status Read(const json& j, const std::string& key, T& out, const std::string& field) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  const limits::Range* range = limits::FieldRange(key);
  if (range == nullptr) range = limits::FieldRange(field);
  if (range != nullptr && it->is_number()) {
    if (std::string why = limits::CheckRange(*it, *range); !why.empty()) {
      return FieldError(field, why);
    }
  }
  if constexpr (std::is_same_v<T, int>) {
    if (!it->is_number_integer()) return FieldError(field, "must be an integer, got " + it->dump());
    if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT32_MAX)) {
      return FieldError(field, "is out of range: " + it->dump());
    }
    auto v = it->get<int64_t>();
    if (v < INT32_MIN || v > INT32_MAX) return FieldError(field, "is out of range: " + it->dump());
  } else if constexpr (std::is_same_v<T, double>) {
    if (!it->is_number()) return FieldError(field, "must be a number, got " + it->dump());
  }
  out = it->get<T>();
  return absl::OkStatus();
}

template <class T>
absl::Status Read(const json& j, const char* key, T& out) {
  return Read(j, key, out, key);
}

template <class T>
absl::Status ReadOptional(const json& j, const std::string& key, std::optional<T>& out,
                          const std::string& field) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  T v{};
  if (auto st = Read(j, key, v, field); !st.ok()) return st;
  out = v;
  return absl::OkStatus();
}

/// Copies `in` with deprecated aliases renamed (the canonical name wins when both are given).
/// `written` maps each canonical name to the key as written.
json RenameAliases(const json& in, const std::map<std::string, std::string>& aliases,
                   std::map<std::string, std::string>& written) {
  json out = json::object();
  for (auto it = in.begin(); it != in.end(); ++it) {
    std::string canon = it.key();
    if (auto a = aliases.find(canon); a != aliases.end()) {
      canon = a->second;
      if (in.contains(canon)) continue;
    }
    out[canon] = it.value();
    written[canon] = it.key();
  }
  return out;
}

/// Reads and validates an autoscaling_config mapping whose aliases are already renamed.
absl::StatusOr<AutoscalingConfig> ResolveAutoscaling(
    const json& a, const std::map<std::string, std::string>& written) {
  auto name = [&](const std::string& canon) {
    auto it = written.find(canon);
    return "autoscaling_config." + (it == written.end() ? canon : it->second);
  };
  AutoscalingConfig c;
  struct Number {
    const char* key;
    double* out;
    bool strict;  // > 0 when set, else >= 0
  };
  const Number numbers[] = {{"target_ongoing_requests", &c.target_ongoing_requests, true},
                            {"metrics_interval_s", &c.metrics_interval_s, true},
                            {"look_back_period_s", &c.look_back_period_s, true},
                            {"smoothing_factor", &c.smoothing_factor, true},
                            {"upscale_delay_s", &c.upscale_delay_s, false},
                            {"downscale_delay_s", &c.downscale_delay_s, false}};
  for (const Number& n : numbers) {
    if (auto st = Read(a, n.key, *n.out, name(n.key)); !st.ok()) return st;
    if (n.strict ? !(*n.out > 0) : !(*n.out >= 0)) {
      return FieldError(name(n.key), n.strict ? "must be > 0" : "must be >= 0");
    }
  }
  struct OptionalNumber {
    const char* key;
    std::optional<double>* out;
    bool strict;
  };
  const OptionalNumber optionals[] = {
      {"upscale_smoothing_factor", &c.upscale_smoothing_factor, true},
      {"downscale_smoothing_factor", &c.downscale_smoothing_factor, true},
      {"upscaling_factor", &c.upscaling_factor, true},
      {"downscaling_factor", &c.downscaling_factor, true},
      {"downscale_to_zero_delay_s", &c.downscale_to_zero_delay_s, false}};
  for (const OptionalNumber& n : optionals) {
    if (auto st = ReadOptional(a, n.key, *n.out, name(n.key)); !st.ok()) return st;
    if (*n.out && (n.strict ? !(**n.out > 0) : !(**n.out >= 0))) {
      return FieldError(name(n.key), n.strict ? "must be > 0" : "must be >= 0");
    }
  }
  if (auto st = Read(a, "min_replicas", c.min_replicas, name("min_replicas")); !st.ok()) return st;
  if (auto st = Read(a, "max_replicas", c.max_replicas, name("max_replicas")); !st.ok()) return st;
  if (auto st = ReadOptional(a, "initial_replicas", c.initial_replicas, name("initial_replicas"));
      !st.ok()) {
    return st;
  }
  if (c.min_replicas < 0) return FieldError(name("min_replicas"), "must be >= 0");
  if (c.max_replicas < 1) return FieldError(name("max_replicas"), "must be >= 1");
  if (c.max_replicas < c.min_replicas) {
    return FieldError(a.contains("max_replicas") ? name("max_replicas") : name("min_replicas"),
                      "max_replicas (" + std::to_string(c.max_replicas) +
                          ") must be >= min_replicas (" + std::to_string(c.min_replicas) + ")");
  }
  if (c.initial_replicas &&
      (*c.initial_replicas < c.min_replicas || *c.initial_replicas > c.max_replicas)) {
    return FieldError(name("initial_replicas"),
                      "must be between min_replicas (" + std::to_string(c.min_replicas) +
                          ") and max_replicas (" + std::to_string(c.max_replicas) + "), got " +
                          std::to_string(*c.initial_replicas));
  }
  if (auto it = a.find("aggregation_function"); it != a.end() && !it->is_null()) {
    if (!it->is_string() || (*it != "mean" && *it != "max" && *it != "min")) {
      return FieldError(name("aggregation_function"),
                        "must be one of mean, max, min, got " + it->dump());
    }
    c.aggregation_function = it->get<std::string>();
  }
  if (auto it = a.find("policy"); it != a.end() && !it->is_null()) {
    // A policy name, or Ray's {policy_function: name} form.
    const json* p = &*it;
    if (p->is_object()) {
      auto f = p->find("policy_function");
      if (f == p->end() || f->is_null()) {
        p = nullptr;
      } else {
        p = &*f;
      }
    }
    if (p != nullptr) {
      if (!p->is_string()) {
        return FieldError(name("policy"), "must be a policy name or null, got " + it->dump());
      }
      c.policy = p->get<std::string>();
      for (const char* d : kDefaultPolicyNames) {
        if (c.policy == d) c.policy.clear();
      }
    }
  }
  return c;
}

}  // namespace

double AutoscalingConfig::UpscalingFactor() const {
  if (upscaling_factor) return *upscaling_factor;
  if (upscale_smoothing_factor) return *upscale_smoothing_factor;
  return smoothing_factor;
}

double AutoscalingConfig::DownscalingFactor() const {
  if (downscaling_factor) return *downscaling_factor;
  if (downscale_smoothing_factor) return *downscale_smoothing_factor;
  return smoothing_factor;
}

int ApplyTargetCapacity(int num_replicas, std::optional<double> target_capacity) {
  if (!target_capacity || *target_capacity == 100) return num_replicas;
  if (*target_capacity <= 0 || num_replicas == 0) return 0;
  double adjusted = std::floor(num_replicas * *target_capacity / 100.0 + 0.5);
  return std::max(1, static_cast<int>(adjusted));
}

absl::StatusOr<DeploymentConfig> ResolveDeploymentConfig(const json& o) {
  DeploymentConfig c;
  if (!o.is_object()) return absl::InvalidArgumentError("deployment options must be a mapping");
  if (auto it = o.find("name"); it != o.end() && it->is_string()) c.name = it->get<std::string>();
  if (c.name.empty()) return FieldError("name", "is required");
  if (std::string why = limits::CheckPathName(c.name); !why.empty()) return FieldError("name", why);

  // num_replicas: a positive integer, "auto" (autoscaling with the seed's defaults) or null.
  bool auto_replicas = false;
  bool explicit_replicas = false;
  if (auto it = o.find("num_replicas"); it != o.end() && !it->is_null()) {
    if (it->is_string()) {
      if (*it != "auto") {
        return FieldError("num_replicas",
                          "must be a positive integer, \"auto\" or null, got " + it->dump());
      }
      auto_replicas = true;
    } else {
      if (auto st = Read(o, "num_replicas", c.num_replicas); !st.ok()) return st;
      explicit_replicas = true;
    }
  }
  // max_concurrent_queries is the deprecated name of max_ongoing_requests.
  const char* max_ongoing_key =
      o.contains("max_ongoing_requests") && !o["max_ongoing_requests"].is_null()
          ? "max_ongoing_requests"
          : "max_concurrent_queries";
  bool max_ongoing_set = o.contains(max_ongoing_key) && !o[max_ongoing_key].is_null();
  for (auto st : {Read(o, max_ongoing_key, c.max_ongoing_requests, "max_ongoing_requests"),
                  Read(o, "max_queued_requests", c.max_queued_requests),
                  Read(o, "health_check_period_s", c.health_check_period_s),
                  Read(o, "health_check_timeout_s", c.health_check_timeout_s),
                  Read(o, "graceful_shutdown_wait_loop_s", c.graceful_shutdown_wait_loop_s),
                  Read(o, "graceful_shutdown_timeout_s", c.graceful_shutdown_timeout_s)}) {
    if (!st.ok()) return st;
  }
  if (auto it = o.find("user_config"); it != o.end() && !it->is_null()) {
    if (std::string why = limits::CheckNesting(*it); !why.empty()) {
      return FieldError("user_config", why);
    }
    c.user_config = *it;
  }
  if (auto it = o.find("ray_actor_options"); it != o.end() && !it->is_null()) {
    c.ray_actor_options = *it;  // whole-dict override
    if (!c.ray_actor_options.contains("num_cpus")) c.ray_actor_options["num_cpus"] = 1.0;
  }
  if (auto it = o.find("max_replicas_per_node"); it != o.end() && !it->is_null()) {
    int n = 0;
    if (auto st = Read(o, "max_replicas_per_node", n); !st.ok()) return st;
    c.max_replicas_per_node = n;
  }
  if (auto it = o.find("logging_config"); it != o.end() && !it->is_null()) {
    auto lc = ValidateLoggingConfig(*it, "logging_config", /*fill_defaults=*/false);
    if (!lc.ok()) {
      return absl::InvalidArgumentError("deployment option " + std::string(lc.status().message()));
    }
    c.logging_config = *lc;
  }

  // autoscaling_config (whole dict); with num_replicas "auto" the seed's auto defaults
  // {min 1, max 100, target 2} sit under the user's fields.
  json autoscaling = nullptr;
  std::map<std::string, std::string> written;
  if (auto it = o.find("autoscaling_config"); it != o.end() && !it->is_null()) {
    if (!it->is_object()) {
      return FieldError("autoscaling_config", "must be a mapping or null, got " + it->dump());
    }
    static const std::map<std::string, std::string> kAliases = {
        {"target_num_ongoing_requests_per_replica", "target_ongoing_requests"}};
    autoscaling = RenameAliases(*it, kAliases, written);
  }
  if (explicit_replicas && !autoscaling.is_null()) {
    return FieldError("num_replicas",
                      "manually setting num_replicas is not allowed when autoscaling_config is "
                      "provided");
  }
  if (auto_replicas) {
    json expanded = {{"min_replicas", 1}, {"max_replicas", 100}, {"target_ongoing_requests", 2}};
    if (!autoscaling.is_null()) expanded.update(autoscaling);
    autoscaling = std::move(expanded);
    if (!max_ongoing_set) c.max_ongoing_requests = 5;
  }
  if (!autoscaling.is_null()) {
    auto a = ResolveAutoscaling(autoscaling, written);
    if (!a.ok()) return a.status();
    c.autoscaling_config = *std::move(a);
  }

  if (c.num_replicas <= 0) return FieldError("num_replicas", "must be > 0");
  if (c.max_ongoing_requests <= 0) return FieldError("max_ongoing_requests", "must be > 0");
  if (c.max_queued_requests != -1 &&
      !limits::CheckRange(json(c.max_queued_requests), limits::kQueuedRequestsRange).empty()) {
    return FieldError("max_queued_requests",
                      "must be -1 (no limit) or between 1 and " +
                          std::to_string(limits::kMaxQueuedRequests));
  }
  if (c.health_check_period_s <= 0) return FieldError("health_check_period_s", "must be > 0");
  if (c.health_check_timeout_s <= 0) return FieldError("health_check_timeout_s", "must be > 0");
  if (c.graceful_shutdown_wait_loop_s < 0) {
    return FieldError("graceful_shutdown_wait_loop_s", "must be >= 0");
  }
  if (c.graceful_shutdown_timeout_s < 0) {
    return FieldError("graceful_shutdown_timeout_s", "must be >= 0");
  }
  for (const char* k : {"num_cpus", "num_gpus", "memory", "object_store_memory"}) {
    if (auto it = c.ray_actor_options.find(k); it != c.ray_actor_options.end() && !it->is_null()) {
      if (!it->is_number()) {
        return FieldError(std::string("ray_actor_options.") + k, "must be a number >= 0");
      }
      if (std::string why = limits::CheckRange(*it, *limits::FieldRange(k)); !why.empty()) {
        return FieldError(std::string("ray_actor_options.") + k, why);
      }
    }
  }
  if (auto it = c.ray_actor_options.find("resources");
      it != c.ray_actor_options.end() && it->is_object()) {
    for (auto r = it->begin(); r != it->end(); ++r) {
      if (std::string why = limits::CheckRange(r.value(), limits::kCustomResourceRange);
          !why.empty()) {
        return FieldError("ray_actor_options.resources." + r.key(), why);
      }
    }
  }
  return c;
}

json ToJson(const AutoscalingConfig& a) {
  auto opt = [](const auto& v) { return v ? json(*v) : json(nullptr); };
  return json{{"min_replicas", a.min_replicas},
              {"initial_replicas", opt(a.initial_replicas)},
              {"max_replicas", a.max_replicas},
              {"target_ongoing_requests", a.target_ongoing_requests},
              {"metrics_interval_s", a.metrics_interval_s},
              {"look_back_period_s", a.look_back_period_s},
              {"smoothing_factor", a.smoothing_factor},
              {"upscale_smoothing_factor", opt(a.upscale_smoothing_factor)},
              {"downscale_smoothing_factor", opt(a.downscale_smoothing_factor)},
              {"upscaling_factor", opt(a.upscaling_factor)},
              {"downscaling_factor", opt(a.downscaling_factor)},
              {"upscale_delay_s", a.upscale_delay_s},
              {"downscale_delay_s", a.downscale_delay_s},
              {"downscale_to_zero_delay_s", opt(a.downscale_to_zero_delay_s)},
              {"aggregation_function", a.aggregation_function},
              {"policy", a.policy.empty() ? json(nullptr) : json(a.policy)}};
}

json ToJson(const DeploymentConfig& c) {
  json j = {{"name", c.name},
            {"max_ongoing_requests", c.max_ongoing_requests},
            {"max_queued_requests", c.max_queued_requests},
            {"user_config", c.user_config ? *c.user_config : json(nullptr)},
            {"graceful_shutdown_wait_loop_s", c.graceful_shutdown_wait_loop_s},
            {"graceful_shutdown_timeout_s", c.graceful_shutdown_timeout_s},
            {"health_check_period_s", c.health_check_period_s},
            {"health_check_timeout_s", c.health_check_timeout_s},
            {"ray_actor_options", c.ray_actor_options}};
  // Either num_replicas or autoscaling_config, as Ray's DeploymentSchema view shows it.
  if (c.autoscaling_config) {
    j["autoscaling_config"] = ToJson(*c.autoscaling_config);
  } else {
    j["num_replicas"] = c.num_replicas;
  }
  if (c.max_replicas_per_node) j["max_replicas_per_node"] = *c.max_replicas_per_node;
  if (c.logging_config) j["logging_config"] = *c.logging_config;
  return j;
}

}  // namespace serve::config
