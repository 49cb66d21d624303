// to_json/from_json and MergeFrom of the deployment options (DeploymentOptions,
// AutoscalingConfig, ActorOptions, LoggingConfig).

#include <map>
#include <optional>
#include <stdexcept>
#include <string>

#include <serve/options.h>

namespace serve {
namespace {

template <class T>
void ReadOpt(const Json& j, const char* key, std::optional<T>& out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  try {
    out = it->template get<T>();
  } catch (const Json::exception& e) {
    throw std::invalid_argument(std::string("field '") + key + "': " + e.what());
  }
}
template <class T>
void WriteOpt(Json& j, const char* key, const std::optional<T>& v) {
  if (v) j[key] = *v;
}
template <class T>
void MergeOpt(std::optional<T>& into, const std::optional<T>& from) {
  if (from) into = from;
}

}  // namespace

void DeploymentOptions::MergeFrom(const DeploymentOptions& o) {
  MergeOpt(name, o.name);
  // The replica count: what `o` sets replaces what conflicts with it here. Conflicts within `o`
  // itself are kept, for to_json to report.
  if (o.num_replicas) {
    num_replicas = o.num_replicas;
    num_replicas_auto = false;
    if (!o.autoscaling_config) autoscaling_config.reset();
  }
  if (o.num_replicas_auto) {
    num_replicas_auto = true;
    if (!o.num_replicas) num_replicas.reset();
  }
  if (o.autoscaling_config) {
    autoscaling_config = o.autoscaling_config;  // replaced whole, as in Ray
    if (!o.num_replicas) num_replicas.reset();
  }
  MergeOpt(max_ongoing_requests, o.max_ongoing_requests);
  MergeOpt(max_queued_requests, o.max_queued_requests);
  MergeOpt(user_config, o.user_config);
  MergeOpt(health_check_period_s, o.health_check_period_s);
  MergeOpt(health_check_timeout_s, o.health_check_timeout_s);
  MergeOpt(graceful_shutdown_wait_loop_s, o.graceful_shutdown_wait_loop_s);
  MergeOpt(graceful_shutdown_timeout_s, o.graceful_shutdown_timeout_s);
  MergeOpt(ray_actor_options, o.ray_actor_options);  // whole-dict override, as in Ray
  MergeOpt(max_replicas_per_node, o.max_replicas_per_node);
  MergeOpt(logging_config, o.logging_config);
}

void to_json(Json& j, const ActorOptions& o) {
  j = Json::object();
  WriteOpt(j, "num_cpus", o.num_cpus);
  WriteOpt(j, "num_gpus", o.num_gpus);
  WriteOpt(j, "memory", o.memory);
  if (!o.resources.empty()) j["resources"] = o.resources;
}
void from_json(const Json& j, ActorOptions& o) {
  if (!j.is_object()) throw std::invalid_argument("ray_actor_options must be a mapping");
  for (auto& [k, v] : j.items()) {
    if (k != "num_cpus" && k != "num_gpus" && k != "memory" && k != "resources" &&
        k != "runtime_env" && k != "accelerator_type") {
      throw std::invalid_argument("ray_actor_options: unknown field '" + k + "'");
    }
    (void)v;
  }
  ReadOpt(j, "num_cpus", o.num_cpus);
  ReadOpt(j, "num_gpus", o.num_gpus);
  ReadOpt(j, "memory", o.memory);
  if (auto it = j.find("resources"); it != j.end() && !it->is_null()) {
    o.resources = it->get<std::map<std::string, double>>();
  }
}
void to_json(Json& j, const LoggingConfig& o) {
  j = Json{{"encoding", o.encoding}, {"log_level", o.log_level},
           {"logs_dir", o.logs_dir ? Json(*o.logs_dir) : Json(nullptr)},
           {"enable_access_log", o.enable_access_log},
           {"additional_log_standard_attrs", o.additional_log_standard_attrs}};
}
void from_json(const Json& j, LoggingConfig& o) {
  o.encoding = j.value("encoding", "TEXT");
  o.log_level = j.value("log_level", "INFO");
  if (auto it = j.find("logs_dir"); it != j.end() && !it->is_null()) o.logs_dir = it->get<std::string>();
  o.enable_access_log = j.value("enable_access_log", true);
  o.additional_log_standard_attrs =
      j.value("additional_log_standard_attrs", std::vector<std::string>{});
}

void to_json(Json& j, const AutoscalingConfig& o) {
  j = Json::object();
  WriteOpt(j, "min_replicas", o.min_replicas);
  WriteOpt(j, "max_replicas", o.max_replicas);
  WriteOpt(j, "initial_replicas", o.initial_replicas);
  WriteOpt(j, "target_ongoing_requests", o.target_ongoing_requests);
  WriteOpt(j, "metrics_interval_s", o.metrics_interval_s);
  WriteOpt(j, "look_back_period_s", o.look_back_period_s);
  WriteOpt(j, "upscale_delay_s", o.upscale_delay_s);
  WriteOpt(j, "downscale_delay_s", o.downscale_delay_s);
  WriteOpt(j, "downscale_to_zero_delay_s", o.downscale_to_zero_delay_s);
  WriteOpt(j, "smoothing_factor", o.smoothing_factor);
  WriteOpt(j, "upscale_smoothing_factor", o.upscale_smoothing_factor);
  WriteOpt(j, "downscale_smoothing_factor", o.downscale_smoothing_factor);
  WriteOpt(j, "upscaling_factor", o.upscaling_factor);
  WriteOpt(j, "downscaling_factor", o.downscaling_factor);
  WriteOpt(j, "aggregation_function", o.aggregation_function);
  WriteOpt(j, "policy", o.policy);
}
void from_json(const Json& j, AutoscalingConfig& o) {
  if (!j.is_object()) throw std::invalid_argument("autoscaling_config must be a mapping");
  auto read = [&](const char* key, auto& out) {
    try {
      ReadOpt(j, key, out);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("autoscaling_config: ") + e.what());
    }
  };
  read("min_replicas", o.min_replicas);
  read("max_replicas", o.max_replicas);
  read("initial_replicas", o.initial_replicas);
  read("target_ongoing_requests", o.target_ongoing_requests);
  if (!o.target_ongoing_requests) {  // deprecated name
    read("target_num_ongoing_requests_per_replica", o.target_ongoing_requests);
  }
  read("metrics_interval_s", o.metrics_interval_s);
  read("look_back_period_s", o.look_back_period_s);
  read("upscale_delay_s", o.upscale_delay_s);
  read("downscale_delay_s", o.downscale_delay_s);
  read("downscale_to_zero_delay_s", o.downscale_to_zero_delay_s);
  read("smoothing_factor", o.smoothing_factor);
  read("upscale_smoothing_factor", o.upscale_smoothing_factor);
  read("downscale_smoothing_factor", o.downscale_smoothing_factor);
  read("upscaling_factor", o.upscaling_factor);
  read("downscaling_factor", o.downscaling_factor);
  read("aggregation_function", o.aggregation_function);
  read("policy", o.policy);
}

void to_json(Json& j, const DeploymentOptions& o) {
  if (o.num_replicas && o.num_replicas_auto) {
    throw std::invalid_argument("num_replicas: set both to a number and to \"auto\"");
  }
  if (o.num_replicas && o.autoscaling_config) {
    throw std::invalid_argument(
        "num_replicas: manually setting num_replicas is not allowed when autoscaling_config is "
        "provided");
  }
  j = Json::object();
  WriteOpt(j, "name", o.name);
  WriteOpt(j, "num_replicas", o.num_replicas);
  if (o.num_replicas_auto) j["num_replicas"] = "auto";
  WriteOpt(j, "autoscaling_config", o.autoscaling_config);
  WriteOpt(j, "max_ongoing_requests", o.max_ongoing_requests);
  WriteOpt(j, "max_queued_requests", o.max_queued_requests);
  WriteOpt(j, "user_config", o.user_config);
  WriteOpt(j, "health_check_period_s", o.health_check_period_s);
  WriteOpt(j, "health_check_timeout_s", o.health_check_timeout_s);
  WriteOpt(j, "graceful_shutdown_wait_loop_s", o.graceful_shutdown_wait_loop_s);
  WriteOpt(j, "graceful_shutdown_timeout_s", o.graceful_shutdown_timeout_s);
  WriteOpt(j, "ray_actor_options", o.ray_actor_options);
  WriteOpt(j, "max_replicas_per_node", o.max_replicas_per_node);
  WriteOpt(j, "logging_config", o.logging_config);
}
void from_json(const Json& j, DeploymentOptions& o) {
  if (!j.is_object()) throw std::invalid_argument("deployment options must be a mapping");
  ReadOpt(j, "name", o.name);
  if (auto it = j.find("num_replicas"); it != j.end() && it->is_string()) {
    if (*it != "auto") {
      throw std::invalid_argument("field 'num_replicas': must be an integer or \"auto\" (got " +
                                  it->dump() + ")");
    }
    o.num_replicas_auto = true;
  } else {
    ReadOpt(j, "num_replicas", o.num_replicas);
  }
  if (auto it = j.find("autoscaling_config"); it != j.end() && !it->is_null()) {
    o.autoscaling_config = it->get<AutoscalingConfig>();
  }
  if (o.num_replicas && o.autoscaling_config) {
    throw std::invalid_argument(
        "field 'num_replicas': manually setting num_replicas is not allowed when "
        "autoscaling_config is provided");
  }
  ReadOpt(j, "max_ongoing_requests", o.max_ongoing_requests);
  ReadOpt(j, "max_queued_requests", o.max_queued_requests);
  if (auto it = j.find("user_config"); it != j.end() && !it->is_null()) o.user_config = *it;
  ReadOpt(j, "health_check_period_s", o.health_check_period_s);
  ReadOpt(j, "health_check_timeout_s", o.health_check_timeout_s);
  ReadOpt(j, "graceful_shutdown_wait_loop_s", o.graceful_shutdown_wait_loop_s);
  ReadOpt(j, "graceful_shutdown_timeout_s", o.graceful_shutdown_timeout_s);
  if (auto it = j.find("ray_actor_options"); it != j.end() && !it->is_null()) {
    o.ray_actor_options = it->get<ActorOptions>();
  }
  ReadOpt(j, "max_replicas_per_node", o.max_replicas_per_node);
  if (auto it = j.find("logging_config"); it != j.end() && !it->is_null()) {
    o.logging_config = it->get<LoggingConfig>();
  }
}

}  // namespace serve
