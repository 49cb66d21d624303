#include "config/deployment_config.h"

#include <cstdint>

namespace serve::config {
namespace {

absl::Status FieldError(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError("deployment option '" + field + "': " + why);
}

template <class T>
absl::Status Read(const nlohmann::json& j, const char* key, T& out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if constexpr (std::is_same_v<T, int>) {
    if (!it->is_number_integer()) return FieldError(key, "must be an integer, got " + it->dump());
    auto v = it->get<int64_t>();
    if (v < INT32_MIN || v > INT32_MAX) return FieldError(key, "is out of range: " + it->dump());
  } else if constexpr (std::is_same_v<T, double>) {
    if (!it->is_number()) return FieldError(key, "must be a number, got " + it->dump());
  }
  out = it->get<T>();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DeploymentConfig> ResolveDeploymentConfig(const nlohmann::json& o) {
  DeploymentConfig c;
  if (!o.is_object()) return absl::InvalidArgumentError("deployment options must be a mapping");
  if (auto it = o.find("name"); it != o.end() && it->is_string()) c.name = it->get<std::string>();
  if (c.name.empty()) return FieldError("name", "is required");
  for (auto st : {Read(o, "num_replicas", c.num_replicas),
                  Read(o, "max_ongoing_requests", c.max_ongoing_requests),
                  Read(o, "max_queued_requests", c.max_queued_requests),
                  Read(o, "health_check_period_s", c.health_check_period_s),
                  Read(o, "health_check_timeout_s", c.health_check_timeout_s),
                  Read(o, "graceful_shutdown_wait_loop_s", c.graceful_shutdown_wait_loop_s),
                  Read(o, "graceful_shutdown_timeout_s", c.graceful_shutdown_timeout_s)}) {
    if (!st.ok()) return st;
  }
  if (auto it = o.find("user_config"); it != o.end() && !it->is_null()) c.user_config = *it;
  if (auto it = o.find("ray_actor_options"); it != o.end() && !it->is_null()) {
    c.ray_actor_options = *it;  // whole-dict override
    if (!c.ray_actor_options.contains("num_cpus")) c.ray_actor_options["num_cpus"] = 1.0;
  }
  if (auto it = o.find("max_replicas_per_node"); it != o.end() && !it->is_null()) {
    if (!it->is_number_integer()) return FieldError("max_replicas_per_node", "must be an integer");
    c.max_replicas_per_node = it->get<int>();
    if (*c.max_replicas_per_node < 1 || *c.max_replicas_per_node > 100) {
      return FieldError("max_replicas_per_node", "must be between 1 and 100");
    }
  }
  if (auto it = o.find("logging_config"); it != o.end() && !it->is_null()) c.logging_config = *it;

  if (c.num_replicas <= 0) return FieldError("num_replicas", "must be > 0");
  if (c.max_ongoing_requests <= 0) return FieldError("max_ongoing_requests", "must be > 0");
  if (c.max_queued_requests != -1 && c.max_queued_requests < 1) {
    return FieldError("max_queued_requests", "must be -1 (no limit) or >= 1");
  }
  if (c.health_check_period_s <= 0) return FieldError("health_check_period_s", "must be > 0");
  if (c.health_check_timeout_s <= 0) return FieldError("health_check_timeout_s", "must be > 0");
  if (c.graceful_shutdown_wait_loop_s < 0) {
    return FieldError("graceful_shutdown_wait_loop_s", "must be >= 0");
  }
  if (c.graceful_shutdown_timeout_s < 0) {
    return FieldError("graceful_shutdown_timeout_s", "must be >= 0");
  }
  for (const char* k : {"num_cpus", "num_gpus", "memory"}) {
    if (auto it = c.ray_actor_options.find(k); it != c.ray_actor_options.end() && !it->is_null()) {
      if (!it->is_number() || it->get<double>() < 0) {
        return FieldError(std::string("ray_actor_options.") + k, "must be a number >= 0");
      }
    }
  }
  return c;
}

nlohmann::json ToJson(const DeploymentConfig& c) {
  nlohmann::json j = {{"name", c.name},
                      {"num_replicas", c.num_replicas},
                      {"max_ongoing_requests", c.max_ongoing_requests},
                      {"max_queued_requests", c.max_queued_requests},
                      {"user_config", c.user_config ? *c.user_config : nlohmann::json(nullptr)},
                      {"graceful_shutdown_wait_loop_s", c.graceful_shutdown_wait_loop_s},
                      {"graceful_shutdown_timeout_s", c.graceful_shutdown_timeout_s},
                      {"health_check_period_s", c.health_check_period_s},
                      {"health_check_timeout_s", c.health_check_timeout_s},
                      {"ray_actor_options", c.ray_actor_options}};
  if (c.max_replicas_per_node) j["max_replicas_per_node"] = *c.max_replicas_per_node;
  if (c.logging_config) j["logging_config"] = *c.logging_config;
  return j;
}

}  // namespace serve::config
