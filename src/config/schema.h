#pragma once

// Ray Serve's declarative config (ServeDeploySchema and everything under it, spec §2), parsed
// from YAML or JSON with Ray's defaults and validation rules. Errors are kInvalidArgument whose
// message names the field path (e.g. "applications[1].deployments[0].max_ongoing_requests"),
// the reason, and the YAML line when known.

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace serve::config {

struct HttpOptions {
  std::string host = "0.0.0.0";
  int port = 8000;
  std::string root_path;
  std::optional<double> request_timeout_s;
  double keep_alive_timeout_s = 90;
  std::optional<std::string> ssl_keyfile;
  std::optional<std::string> ssl_certfile;
  std::optional<std::string> ssl_keyfile_password;
  std::optional<std::string> ssl_ca_certs;
};

struct GrpcOptions {
  int port = 9000;
  std::vector<std::string> grpc_servicer_functions;
  std::optional<double> request_timeout_s;
};

/// One entry of `applications[].deployments`: only the fields present in the file, validated
/// (DeploymentSchema field names and rules). `name` is required.
struct DeploymentOverride {
  std::string name;
  nlohmann::json fields;  ///< the set fields, including "name"
};

struct ApplicationConfig {
  std::string name = "default";
  std::optional<std::string> route_prefix = "/";  ///< nullopt: `route_prefix: null`
  std::string import_path;
  nlohmann::json runtime_env = nlohmann::json::object();
  nlohmann::json args = nlohmann::json::object();
  std::vector<DeploymentOverride> deployments;
  std::optional<nlohmann::json> logging_config;
  bool external_scaler_enabled = false;
  nlohmann::json submitted;  ///< the application exactly as given (set fields only)
};

struct ServeDeployConfig {
  std::string proxy_location = "EveryNode";  ///< Disabled | HeadOnly | EveryNode
  HttpOptions http_options;
  GrpcOptions grpc_options;
  std::optional<nlohmann::json> logging_config;
  std::vector<ApplicationConfig> applications;
  std::optional<double> target_capacity;
};

/// Unknown fields (misspellings such as `num_replica`) are ignored, as Ray ignores them; each
/// one is described in `warnings` ("<path>: unknown field (did you mean 'num_replicas'?);
/// ignored (line N)"). With `strict`, the first one is an error instead. Fields Ray knows
/// but this port does not act on are always warnings.
struct ParseOptions {
  bool strict = false;
  std::vector<std::string>* warnings = nullptr;
};

/// Parses YAML or JSON text (JSON is YAML). The legacy single-application form (top-level
/// import_path, no `applications`) is converted to a one-application config as Ray does.
absl::StatusOr<ServeDeployConfig> ParseServeDeployConfig(const std::string& text,
                                                         const ParseOptions& options = {});
/// Same from an already-parsed JSON document (the REST PUT body).
absl::StatusOr<ServeDeployConfig> ParseServeDeployConfig(const nlohmann::json& doc,
                                                         const ParseOptions& options = {});
/// $SERVE_STRICT_CONFIG is set to 1 (or true/yes): the CLI rejects unknown config fields.
bool StrictConfigFromEnv();
/// Reads and parses a file; the error names the file.
absl::StatusOr<ServeDeployConfig> LoadServeDeployConfig(const std::string& path);

/// YAML (or JSON) text to JSON with PyYAML's scalar rules; errors carry the line.
absl::StatusOr<nlohmann::json> YamlToJson(const std::string& text);
/// JSON to block-style YAML (nulls as `null`).
std::string JsonToYaml(const nlohmann::json& value);
/// An application's config (`serve config`) as YAML with its fields in the schema's order
/// (ServeApplicationSchema, then DeploymentSchema for each deployment); fields the schema does
/// not know follow in their own order.
std::string AppConfigToYaml(const nlohmann::json& app);

/// JSON with every field (defaults included), as `serve config`/REST would show it.
nlohmann::json ToJson(const ServeDeployConfig& config);

/// Config-file precedence (seed "Order of Priority"): starts from `code_options` (the options
/// set in code, DeploymentSchema names) and replaces each field present in
/// `override_fields`; ray_actor_options, user_config and autoscaling_config are replaced as
/// whole dicts. The file picks the scaling mode: an integer `num_replicas` drops the code's
/// `autoscaling_config`; a non-null `autoscaling_config` drops the code's integer
/// `num_replicas`, and replaces a code `num_replicas: "auto"` (keeping its implied
/// max_ongoing_requests 5 unless one is set) so that only the file's dict applies.
nlohmann::json MergeDeploymentOptions(const nlohmann::json& code_options,
                                      const nlohmann::json& override_fields);

/// One application for `serve build`: its import path and the deployments found in code,
/// each as DeploymentSchema JSON with the code's options over the defaults.
struct BuiltApplication {
  std::string import_path;
  std::vector<nlohmann::json> deployments;
};

/// The YAML `serve build` prints: a generated-by header comment, proxy_location EveryNode,
/// http_options {host 0.0.0.0, port 8000}, grpc_options {port 9000, grpc_servicer_functions},
/// the default logging_config, and applications app1, app2, ... with route_prefix "/" for a
/// single application or "/<name>" for several; blank lines between top-level keys.
std::string FormatServeBuildYaml(const std::vector<BuiltApplication>& apps,
                                 const std::vector<std::string>& grpc_servicer_functions = {});

}  // namespace serve::config
