#include "config/schema.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "config/deployment_schema.h"
#include "config/document_schema.h"
#include "config/limits.h"
#include "config/yaml_json.h"

#ifndef SERVE_VERSION_STRING
#define SERVE_VERSION_STRING "0.1.0"
#endif

namespace serve::config {
namespace {

using json = nlohmann::json;
using detail::ApplicationFieldOrder;
using detail::DefaultLoggingConfig;
using detail::DeploymentFieldOrder;
using detail::EmitJson;
using detail::EmitString;
using detail::EmitterText;
using detail::EmitTopLevel;
using detail::LineMap;
using detail::OrderedKeys;
using detail::ParseDocument;
using detail::YamlToJsonWithLines;

}  // namespace

absl::StatusOr<nlohmann::json> YamlToJson(const std::string& text) {
  LineMap lines;
  return YamlToJsonWithLines(text, lines);
}

std::string JsonToYaml(const nlohmann::json& value) {
  YAML::Emitter out;
  out.SetNullFormat(YAML::LowerNull);
  EmitJson(out, value, nullptr);
  return EmitterText(out) + "\n";
}

std::string AppConfigToYaml(const nlohmann::json& app) {
  if (!app.is_object()) return JsonToYaml(app);
  YAML::Emitter out;
  out.SetNullFormat(YAML::LowerNull);
  out << YAML::BeginMap;
  for (const auto& k : OrderedKeys(app, &ApplicationFieldOrder())) {
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
  return EmitterText(out) + "\n";
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
  if (auto size = fs::file_size(path, ec); !ec && size > limits::kMaxDocumentBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": config is ", size,
                                                   " bytes; the limit is ",
                                                   limits::kMaxDocumentBytes, " bytes"));
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
  sections.push_back(EmitterText(out));

  return absl::StrCat("# This file was generated using the `serve build` command on serve ",
                      SERVE_VERSION_STRING, ".\n\n", absl::StrJoin(sections, "\n\n"), "\n");
}

}  // namespace serve::config
