// Unit tests of the declarative config schema (spec §2): parsing, defaults, validation errors
// with field paths and YAML lines, the legacy single-app form, precedence merging and
// `serve build` output.

#include "config/schema.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace serve::config {
namespace {

namespace fs = std::filesystem;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

// Parses `text` expecting failure; returns the error message.
std::string ParseError(const std::string& text) {
  auto c = ParseServeDeployConfig(text);
  EXPECT_FALSE(c.ok()) << "accepted:\n" << text;
  if (c.ok()) return "";
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  return std::string(c.status().message());
}

std::string ParseError(const json& doc) {
  auto c = ParseServeDeployConfig(doc);
  EXPECT_FALSE(c.ok()) << "accepted: " << doc.dump();
  if (c.ok()) return "";
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  return std::string(c.status().message());
}

// A one-app, one-deployment JSON config whose deployment has `fields` on top of its name.
json OneDeployment(const json& fields) {
  json d = {{"name", "Model"}};
  d.update(fields);
  return {{"applications", {{{"name", "app"}, {"import_path", "mod:app"}, {"deployments", {d}}}}}};
}

std::string DeploymentError(const json& fields) { return ParseError(OneDeployment(fields)); }

const DeploymentOverride& OnlyDeployment(const ServeDeployConfig& c) {
  return c.applications.at(0).deployments.at(0);
}

constexpr char kFullYaml[] = R"(
proxy_location: HeadOnly
http_options:
  host: 127.0.0.1
  port: 8123
  root_path: /serve
  request_timeout_s: 12.5
  keep_alive_timeout_s: 30
  ssl_keyfile: /k.pem
  ssl_certfile: /c.pem
  ssl_keyfile_password: secret
  ssl_ca_certs: /ca.pem
  some_future_option: 1
grpc_options:
  port: 9100
  grpc_servicer_functions:
    - pkg.mod:add_Servicer_to_server
  request_timeout_s: 3
logging_config:
  encoding: JSON
  log_level: 10
  logs_dir: /tmp/logs
  enable_access_log: false
  additional_log_standard_attrs: [name, name, lineno]
target_capacity: 50
unknown_top_level: ignored
applications:
  - name: app1
    route_prefix: /app1
    import_path: pkg.mod:app
    runtime_env:
      env_vars:
        A: "1"
    args:
      model: "123"
      threshold: 0.5
      enabled: yes
    external_scaler_enabled: false
    logging_config:
      log_level: WARNING
    deployments:
      - name: Translator
        num_replicas: 2
        max_ongoing_requests: 7
        max_queued_requests: -1
        user_config:
          language: french
          version: "2"
        graceful_shutdown_wait_loop_s: 1.5
        graceful_shutdown_timeout_s: 0
        health_check_period_s: 3
        health_check_timeout_s: 4.5
        ray_actor_options:
          num_cpus: 0.5
          num_gpus: 0
          memory: 1024
          resources: {custom: 1}
          accelerator_type: A100
          runtime_env: {}
        max_replicas_per_node: 3
        logging_config:
          log_level: DEBUG
        request_router_config:
          request_router_class: mod:Router
          request_router_kwargs: {k: v}
      - name: Summarizer
        autoscaling_config:
          min_replicas: 0
          initial_replicas: 1
          max_replicas: 5
          target_ongoing_requests: 3
          upscale_delay_s: 1
          downscale_delay_s: 2
        placement_group_bundles:
          - {CPU: 1}
          - {GPU: 1}
        placement_group_strategy: STRICT_PACK
  - name: app2
    route_prefix: null
    import_path: other.app
)";

// ---- Parsing and defaults ------------------------------------------------------------------

TEST(SchemaParseTest, FullMultiAppYaml) {
  auto c = ParseServeDeployConfig(std::string(kFullYaml));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->proxy_location, "HeadOnly");
  EXPECT_EQ(c->http_options.host, "127.0.0.1");
  EXPECT_EQ(c->http_options.port, 8123);
  EXPECT_EQ(c->http_options.root_path, "/serve");
  EXPECT_EQ(c->http_options.request_timeout_s, 12.5);
  EXPECT_EQ(c->http_options.keep_alive_timeout_s, 30);
  EXPECT_EQ(c->http_options.ssl_keyfile, "/k.pem");
  EXPECT_EQ(c->http_options.ssl_certfile, "/c.pem");
  EXPECT_EQ(c->http_options.ssl_keyfile_password, "secret");
  EXPECT_EQ(c->http_options.ssl_ca_certs, "/ca.pem");
  EXPECT_EQ(c->grpc_options.port, 9100);
  EXPECT_EQ(c->grpc_options.grpc_servicer_functions,
            std::vector<std::string>{"pkg.mod:add_Servicer_to_server"});
  EXPECT_EQ(c->grpc_options.request_timeout_s, 3);
  ASSERT_TRUE(c->logging_config.has_value());
  EXPECT_EQ((*c->logging_config)["encoding"], "JSON");
  EXPECT_EQ((*c->logging_config)["log_level"], "DEBUG");  // 10 -> name
  EXPECT_EQ((*c->logging_config)["logs_dir"], "/tmp/logs");
  EXPECT_EQ((*c->logging_config)["enable_access_log"], false);
  EXPECT_EQ((*c->logging_config)["additional_log_standard_attrs"], json({"name", "lineno"}));
  EXPECT_EQ(c->target_capacity, 50);

  ASSERT_EQ(c->applications.size(), 2u);
  const ApplicationConfig& app1 = c->applications[0];
  EXPECT_EQ(app1.name, "app1");
  EXPECT_EQ(app1.route_prefix, "/app1");
  EXPECT_EQ(app1.import_path, "pkg.mod:app");
  EXPECT_EQ(app1.runtime_env, json({{"env_vars", {{"A", "1"}}}}));
  // Scalar types survive: quoted strings stay strings, plain numbers/bools become typed.
  EXPECT_EQ(app1.args, json({{"model", "123"}, {"threshold", 0.5}, {"enabled", true}}));
  EXPECT_TRUE(app1.args["model"].is_string());
  EXPECT_TRUE(app1.args["threshold"].is_number_float());
  EXPECT_FALSE(app1.external_scaler_enabled);
  ASSERT_TRUE(app1.logging_config.has_value());
  EXPECT_EQ((*app1.logging_config)["log_level"], "WARNING");
  EXPECT_EQ((*app1.logging_config)["encoding"], "TEXT");  // defaults filled

  ASSERT_EQ(app1.deployments.size(), 2u);
  const DeploymentOverride& t = app1.deployments[0];
  EXPECT_EQ(t.name, "Translator");
  EXPECT_EQ(t.fields["num_replicas"], 2);
  EXPECT_TRUE(t.fields["num_replicas"].is_number_integer());
  EXPECT_EQ(t.fields["max_ongoing_requests"], 7);
  EXPECT_EQ(t.fields["max_queued_requests"], -1);
  EXPECT_EQ(t.fields["user_config"], json({{"language", "french"}, {"version", "2"}}));
  EXPECT_EQ(t.fields["graceful_shutdown_wait_loop_s"], 1.5);
  EXPECT_EQ(t.fields["graceful_shutdown_timeout_s"], 0);
  EXPECT_EQ(t.fields["health_check_period_s"], 3);
  EXPECT_EQ(t.fields["health_check_timeout_s"], 4.5);
  EXPECT_EQ(t.fields["ray_actor_options"]["num_cpus"], 0.5);
  EXPECT_EQ(t.fields["ray_actor_options"]["resources"], json({{"custom", 1}}));
  EXPECT_EQ(t.fields["ray_actor_options"]["accelerator_type"], "A100");
  EXPECT_EQ(t.fields["max_replicas_per_node"], 3);
  EXPECT_EQ(t.fields["logging_config"], json({{"log_level", "DEBUG"}}));  // set fields only
  EXPECT_EQ(t.fields["request_router_config"]["request_router_class"], "mod:Router");
  EXPECT_FALSE(t.fields.contains("autoscaling_config"));

  const DeploymentOverride& s = app1.deployments[1];
  EXPECT_EQ(s.name, "Summarizer");
  EXPECT_EQ(s.fields["autoscaling_config"]["max_replicas"], 5);
  EXPECT_EQ(s.fields["placement_group_bundles"], json({{{"CPU", 1}}, {{"GPU", 1}}}));
  EXPECT_EQ(s.fields["placement_group_strategy"], "STRICT_PACK");
  EXPECT_EQ(s.fields.size(), 4u);  // name + the three set fields

  const ApplicationConfig& app2 = c->applications[1];
  EXPECT_EQ(app2.name, "app2");
  EXPECT_FALSE(app2.route_prefix.has_value());
  EXPECT_EQ(app2.import_path, "other.app");
  EXPECT_TRUE(app2.deployments.empty());
}

TEST(SchemaParseTest, DefaultsFilled) {
  auto c = ParseServeDeployConfig(std::string("applications:\n  - import_path: mod:app\n"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->proxy_location, "EveryNode");
  EXPECT_EQ(c->http_options.host, "0.0.0.0");
  EXPECT_EQ(c->http_options.port, 8000);
  EXPECT_EQ(c->http_options.root_path, "");
  EXPECT_FALSE(c->http_options.request_timeout_s.has_value());
  EXPECT_EQ(c->http_options.keep_alive_timeout_s, 90);
  EXPECT_FALSE(c->http_options.ssl_keyfile.has_value());
  EXPECT_EQ(c->grpc_options.port, 9000);
  EXPECT_TRUE(c->grpc_options.grpc_servicer_functions.empty());
  EXPECT_FALSE(c->grpc_options.request_timeout_s.has_value());
  EXPECT_FALSE(c->logging_config.has_value());
  EXPECT_FALSE(c->target_capacity.has_value());
  ASSERT_EQ(c->applications.size(), 1u);
  const ApplicationConfig& app = c->applications[0];
  EXPECT_EQ(app.name, "default");
  EXPECT_EQ(app.route_prefix, "/");
  EXPECT_EQ(app.runtime_env, json::object());
  EXPECT_EQ(app.args, json::object());
  EXPECT_TRUE(app.deployments.empty());
  EXPECT_FALSE(app.logging_config.has_value());
  EXPECT_FALSE(app.external_scaler_enabled);
  EXPECT_EQ(app.submitted, json({{"import_path", "mod:app"}}));

  json j = ToJson(*c);
  EXPECT_EQ(j["proxy_location"], "EveryNode");
  EXPECT_EQ(j["http_options"], json({{"host", "0.0.0.0"},
                                     {"port", 8000},
                                     {"root_path", ""},
                                     {"request_timeout_s", nullptr},
                                     {"keep_alive_timeout_s", 90.0},
                                     {"ssl_keyfile", nullptr},
                                     {"ssl_certfile", nullptr},
                                     {"ssl_keyfile_password", nullptr},
                                     {"ssl_ca_certs", nullptr}}));
  EXPECT_EQ(j["grpc_options"], json({{"port", 9000},
                                     {"grpc_servicer_functions", json::array()},
                                     {"request_timeout_s", nullptr}}));
  EXPECT_TRUE(j["logging_config"].is_null());
  EXPECT_TRUE(j["target_capacity"].is_null());
  EXPECT_EQ(j["applications"][0], json({{"name", "default"},
                                        {"route_prefix", "/"},
                                        {"import_path", "mod:app"},
                                        {"runtime_env", json::object()},
                                        {"args", json::object()},
                                        {"deployments", json::array()},
                                        {"logging_config", nullptr},
                                        {"external_scaler_enabled", false}}));
}

TEST(SchemaParseTest, EmptyApplicationsListIsValid) {
  auto c = ParseServeDeployConfig(json{{"applications", json::array()}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->applications.empty());
}

TEST(SchemaParseTest, JsonTextIsAccepted) {
  auto c = ParseServeDeployConfig(std::string(
      R"({"applications": [{"name": "a", "import_path": "m:a", "args": {"n": "5", "m": 5}}]})"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->applications[0].args, json({{"n", "5"}, {"m", 5}}));
}

TEST(SchemaParseTest, YamlScalarTyping) {
  auto c = ParseServeDeployConfig(std::string(R"(
applications:
  - import_path: m:a
    args:
      i: 42
      neg: -7
      f: 1.0
      e: 1.5e3
      t: true
      off: off
      n: null
      tilde: ~
      empty:
      s: hello
      qs: 'true'
      qn: "42"
      lit: |
        line
      ver: 1.2.3
)"));
  ASSERT_TRUE(c.ok()) << c.status();
  const json& a = c->applications[0].args;
  EXPECT_TRUE(a["i"].is_number_integer());
  EXPECT_EQ(a["i"], 42);
  EXPECT_EQ(a["neg"], -7);
  EXPECT_TRUE(a["f"].is_number_float());
  EXPECT_EQ(a["e"], 1500.0);
  EXPECT_EQ(a["t"], true);
  EXPECT_EQ(a["off"], false);
  EXPECT_TRUE(a["n"].is_null());
  EXPECT_TRUE(a["tilde"].is_null());
  EXPECT_TRUE(a["empty"].is_null());
  EXPECT_EQ(a["s"], "hello");
  EXPECT_EQ(a["qs"], "true");
  EXPECT_EQ(a["qn"], "42");
  EXPECT_EQ(a["lit"], "line\n");
  EXPECT_EQ(a["ver"], "1.2.3");
}

TEST(SchemaParseTest, UnknownFieldsIgnored) {
  auto c = ParseServeDeployConfig(
      json{{"future_field", 1},
           {"http_options", {{"future", true}}},
           {"applications",
            {{{"import_path", "m:a"},
              {"app_future", 2},
              {"deployments", {{{"name", "D"}, {"not_a_field", 3}, {"num_replicas", 2}}}}}}}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(OnlyDeployment(*c).fields, json({{"name", "D"}, {"num_replicas", 2}}));
  // `submitted` is the application exactly as given.
  EXPECT_TRUE(c->applications[0].submitted.contains("app_future"));
}

TEST(SchemaParseTest, ToJsonRoundTrips) {
  auto c = ParseServeDeployConfig(std::string(kFullYaml));
  ASSERT_TRUE(c.ok()) << c.status();
  json j = ToJson(*c);
  EXPECT_EQ(j["applications"][0]["deployments"][0]["num_replicas"], 2);
  EXPECT_TRUE(j["applications"][1]["route_prefix"].is_null());
  EXPECT_EQ(j["target_capacity"], 50.0);
  auto again = ParseServeDeployConfig(j);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(ToJson(*again), j);
}

TEST(SchemaParseTest, SubmittedKeepsOnlyGivenFields) {
  auto c = ParseServeDeployConfig(std::string(kFullYaml));
  ASSERT_TRUE(c.ok()) << c.status();
  const json& sub = c->applications[1].submitted;
  EXPECT_EQ(sub, json({{"name", "app2"}, {"route_prefix", nullptr}, {"import_path", "other.app"}}));
}

TEST(SchemaParseTest, LoadFromFile) {
  fs::path dir = fs::temp_directory_path() / ("schema_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path file = dir / "serve.yaml";
  {
    std::ofstream out(file);
    out << "applications:\n  - name: a\n    import_path: m:a\n";
  }
  auto c = LoadServeDeployConfig(file.string());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->applications[0].name, "a");

  {
    std::ofstream out(file);
    out << "applications:\n  - name: a\n    import_path: nodot\n";
  }
  auto bad = LoadServeDeployConfig(file.string());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr(file.string()));
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("applications[0].import_path"));

  auto missing = LoadServeDeployConfig((dir / "nope.yaml").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("nope.yaml"));

  auto is_dir = LoadServeDeployConfig(dir.string());
  ASSERT_FALSE(is_dir.ok());
  EXPECT_THAT(std::string(is_dir.status().message()), HasSubstr(dir.string()));
  fs::remove_all(dir);
}

// ---- YAML errors and line numbers ----------------------------------------------------------

TEST(SchemaYamlTest, SyntaxErrorNamesLine) {
  std::string msg = ParseError(std::string("applications:\n  - name: a\n    import_path: [m:a\n"));
  EXPECT_THAT(msg, HasSubstr("invalid YAML"));
  EXPECT_THAT(msg, HasSubstr("line"));
}

TEST(SchemaYamlTest, BadFieldNamesPathAndLine) {
  std::string msg = ParseError(std::string(R"(applications:
  - name: a
    import_path: m:a
    deployments:
      - name: A
        num_replicas: 1
      - name: B
        max_ongoing_requests: 0
)"));
  EXPECT_THAT(msg, HasSubstr("applications[0].deployments[1].max_ongoing_requests: must be > 0 "
                             "(got 0)"));
  EXPECT_THAT(msg, HasSubstr("line 8"));
}

TEST(SchemaYamlTest, MissingFieldUsesEnclosingLine) {
  std::string msg = ParseError(std::string("applications:\n  - name: a\n  - name: b\n"));
  EXPECT_THAT(msg, HasSubstr("applications[0].import_path: field required"));
  EXPECT_THAT(msg, HasSubstr("line 2"));
}

TEST(SchemaYamlTest, JsonDocumentHasNoLine) {
  std::string msg = DeploymentError({{"max_ongoing_requests", 0}});
  EXPECT_THAT(msg, HasSubstr("applications[0].deployments[0].max_ongoing_requests"));
  EXPECT_THAT(msg, Not(HasSubstr("line")));
}

TEST(SchemaYamlTest, NonMappingDocument) {
  EXPECT_THAT(ParseError(std::string("- a\n- b\n")), HasSubstr("must be a mapping"));
  EXPECT_THAT(ParseError(std::string("")), HasSubstr("must be a mapping"));
}

// ---- Top-level validation ------------------------------------------------------------------

TEST(SchemaValidationTest, ApplicationsRequired) {
  EXPECT_THAT(ParseError(json{{"proxy_location", "EveryNode"}}),
              HasSubstr("applications: field required"));
  EXPECT_THAT(ParseError(json{{"applications", {{"a", 1}}}}), HasSubstr("applications"));
}

TEST(SchemaValidationTest, ProxyLocation) {
  for (const char* ok : {"Disabled", "HeadOnly", "EveryNode"}) {
    auto c = ParseServeDeployConfig(json{{"proxy_location", ok}, {"applications", json::array()}});
    EXPECT_TRUE(c.ok()) << ok << ": " << c.status();
  }
  EXPECT_THAT(ParseError(json{{"proxy_location", "everynode"}, {"applications", json::array()}}),
              HasSubstr("proxy_location: must be one of Disabled, HeadOnly, EveryNode"));
}

TEST(SchemaValidationTest, TargetCapacity) {
  EXPECT_TRUE(
      ParseServeDeployConfig(json{{"target_capacity", nullptr}, {"applications", json::array()}})
          .ok());
  EXPECT_TRUE(
      ParseServeDeployConfig(json{{"target_capacity", 0}, {"applications", json::array()}}).ok());
  EXPECT_THAT(ParseError(json{{"target_capacity", 101}, {"applications", json::array()}}),
              HasSubstr("target_capacity: must be between 0 and 100"));
  EXPECT_THAT(ParseError(json{{"target_capacity", -1}, {"applications", json::array()}}),
              HasSubstr("target_capacity"));
}

TEST(SchemaValidationTest, HttpOptions) {
  auto with_http = [](const json& http) {
    return json{{"http_options", http}, {"applications", json::array()}};
  };
  EXPECT_THAT(ParseError(with_http({{"port", "80"}})),
              HasSubstr("http_options.port: must be an integer"));
  EXPECT_THAT(ParseError(with_http({{"port", 70000}})), HasSubstr("http_options.port"));
  EXPECT_THAT(ParseError(with_http({{"host", 1}})), HasSubstr("http_options.host"));
  EXPECT_THAT(ParseError(with_http({{"ssl_keyfile", "/k"}})),
              HasSubstr("http_options.ssl_keyfile: ssl_keyfile and ssl_certfile must be given "
                        "together"));
  EXPECT_THAT(ParseError(with_http({{"ssl_certfile", "/c"}})),
              HasSubstr("http_options.ssl_certfile"));
  EXPECT_THAT(ParseError(with_http({{"request_timeout_s", "x"}})),
              HasSubstr("http_options.request_timeout_s"));
  EXPECT_THAT(ParseError(with_http(json::array())), HasSubstr("http_options: must be a mapping"));
}

TEST(SchemaValidationTest, GrpcOptions) {
  auto with_grpc = [](const json& grpc) {
    return json{{"grpc_options", grpc}, {"applications", json::array()}};
  };
  EXPECT_THAT(ParseError(with_grpc({{"grpc_servicer_functions", "a:b"}})),
              HasSubstr("grpc_options.grpc_servicer_functions: must be a list"));
  EXPECT_THAT(ParseError(with_grpc({{"grpc_servicer_functions", {"a:b", 3}}})),
              HasSubstr("grpc_options.grpc_servicer_functions[1]"));
  EXPECT_THAT(ParseError(with_grpc({{"port", 1.5}})), HasSubstr("grpc_options.port"));
}

TEST(SchemaValidationTest, TopLevelLoggingConfig) {
  auto with_logging = [](const json& lc) {
    return json{{"logging_config", lc}, {"applications", json::array()}};
  };
  auto ok = ParseServeDeployConfig(with_logging({{"log_level", "ERROR"}}));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok->logging_config, json({{"encoding", "TEXT"},
                                       {"log_level", "ERROR"},
                                       {"logs_dir", nullptr},
                                       {"enable_access_log", true},
                                       {"additional_log_standard_attrs", json::array()}}));
  EXPECT_THAT(ParseError(with_logging({{"encoding", "XML"}})),
              HasSubstr("logging_config.encoding: must be one of TEXT, JSON"));
  EXPECT_THAT(ParseError(with_logging({{"log_level", "info"}})),
              HasSubstr("logging_config.log_level"));
  EXPECT_THAT(ParseError(with_logging({{"log_level", 15}})), HasSubstr("logging_config.log_level"));
  EXPECT_THAT(ParseError(with_logging({{"enable_access_log", "yes"}})),
              HasSubstr("logging_config.enable_access_log: must be a boolean"));
  EXPECT_THAT(ParseError(with_logging({{"additional_log_standard_attrs", {"bogus"}}})),
              HasSubstr("logging_config.additional_log_standard_attrs[0]"));
  EXPECT_THAT(ParseError(with_logging({{"colour", "red"}})),
              HasSubstr("logging_config.colour: unknown logging_config field"));
  for (auto [level, name] : std::vector<std::pair<int, std::string>>{
           {10, "DEBUG"}, {20, "INFO"}, {30, "WARNING"}, {40, "ERROR"}, {50, "CRITICAL"}}) {
    auto c = ParseServeDeployConfig(with_logging({{"log_level", level}}));
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ((*c->logging_config)["log_level"], name);
  }
}

// ---- Application validation ----------------------------------------------------------------

json App(const json& fields) {
  json app = {{"import_path", "mod:app"}};
  app.update(fields);
  return app;
}

std::string AppError(const json& fields) {
  return ParseError(json{{"applications", {App(fields)}}});
}

TEST(SchemaValidationTest, DuplicateNamesListed) {
  std::string msg = ParseError(json{
      {"applications",
       {App({{"name", "a"}, {"route_prefix", "/a"}}), App({{"name", "b"}, {"route_prefix", "/b"}}),
        App({{"name", "a"}, {"route_prefix", "/c"}}),
        App({{"name", "b"}, {"route_prefix", "/d"}})}}});
  EXPECT_THAT(msg, HasSubstr("applications: found multiple configs for applications"));
  EXPECT_THAT(msg, HasSubstr("\"a\""));
  EXPECT_THAT(msg, HasSubstr("\"b\""));
}

TEST(SchemaValidationTest, DuplicateDefaultNames) {
  // Two apps without names both default to "default".
  std::string msg = ParseError(
      json{{"applications", {App({{"route_prefix", "/a"}}), App({{"route_prefix", "/b"}})}}});
  EXPECT_THAT(msg, HasSubstr("application \"default\""));
}

TEST(SchemaValidationTest, DuplicateRoutePrefixes) {
  std::string msg =
      ParseError(json{{"applications", {App({{"name", "a"}}), App({{"name", "b"}})}}});  // both "/"
  EXPECT_THAT(msg, HasSubstr("applications: found duplicate applications for route prefix \"/\""));
  // Null prefixes never clash.
  auto ok = ParseServeDeployConfig(json{{"applications",
                                         {App({{"name", "a"}, {"route_prefix", nullptr}}),
                                          App({{"name", "b"}, {"route_prefix", nullptr}})}}});
  EXPECT_TRUE(ok.ok()) << ok.status();
}

TEST(SchemaValidationTest, DuplicateLinesInYaml) {
  std::string msg = ParseError(std::string(R"(
applications:
  - name: a
    import_path: m:a
    route_prefix: /a
  - name: a
    import_path: m:b
    route_prefix: /b
)"));
  EXPECT_THAT(msg, HasSubstr("applications: found multiple configs for application \"a\""));
  EXPECT_THAT(msg, HasSubstr("line 2"));
}

TEST(SchemaValidationTest, EmptyName) {
  EXPECT_THAT(AppError({{"name", ""}}),
              HasSubstr("applications[0].name: application names must be nonempty"));
}

TEST(SchemaValidationTest, RoutePrefixRules) {
  EXPECT_THAT(AppError({{"route_prefix", "app"}}),
              HasSubstr("applications[0].route_prefix: got \"app\"; route prefix must start "
                        "with \"/\""));
  EXPECT_THAT(AppError({{"route_prefix", "/app/"}}),
              HasSubstr("applications[0].route_prefix: got \"/app/\"; route prefix cannot end"));
  EXPECT_THAT(AppError({{"route_prefix", "/{id}"}}),
              HasSubstr("applications[0].route_prefix: got \"/{id}\"; route prefix cannot "
                        "contain wildcards"));
  EXPECT_THAT(AppError({{"route_prefix", ""}}), HasSubstr("applications[0].route_prefix"));
  EXPECT_THAT(AppError({{"route_prefix", 5}}),
              HasSubstr("applications[0].route_prefix: must be a string"));
  for (const char* ok : {"/", "/a", "/a/b"}) {
    auto c = ParseServeDeployConfig(json{{"applications", {App({{"route_prefix", ok}})}}});
    EXPECT_TRUE(c.ok()) << ok << ": " << c.status();
  }
}

TEST(SchemaValidationTest, ImportPathRules) {
  EXPECT_THAT(ParseError(json{{"applications", {{{"name", "a"}}}}}),
              HasSubstr("applications[0].import_path: field required"));
  for (const char* bad : {"nodots", "a:b:c", ":app", "mod:", ".app", "mod."}) {
    std::string msg = AppError({{"import_path", bad}});
    EXPECT_THAT(msg, HasSubstr("applications[0].import_path: invalid import path")) << bad;
  }
  EXPECT_THAT(AppError({{"import_path", "a:b:c"}}), HasSubstr("at most one colon"));
  EXPECT_THAT(AppError({{"import_path", 3}}), HasSubstr("applications[0].import_path"));
  for (const char* ok : {"mod:app", "mod.app", "a.b:c", "a.b.c"}) {
    auto c = ParseServeDeployConfig(json{{"applications", {App({{"import_path", ok}})}}});
    EXPECT_TRUE(c.ok()) << ok << ": " << c.status();
  }
}

TEST(SchemaValidationTest, HostPortRejectedInMultiApp) {
  std::string host = AppError({{"name", "x"}, {"host", "0.0.0.0"}});
  EXPECT_THAT(host, HasSubstr("applications[0].host"));
  EXPECT_THAT(host, HasSubstr("http_options.host"));
  EXPECT_THAT(host, HasSubstr("\"x\""));
  std::string port = AppError({{"port", 8000}});
  EXPECT_THAT(port, HasSubstr("applications[0].port"));
  EXPECT_THAT(port, HasSubstr("http_options.port"));
}

TEST(SchemaValidationTest, AppFieldTypes) {
  EXPECT_THAT(AppError({{"runtime_env", "x"}}),
              HasSubstr("applications[0].runtime_env: must be a mapping"));
  EXPECT_THAT(AppError({{"args", {1, 2}}}), HasSubstr("applications[0].args: must be a mapping"));
  EXPECT_THAT(AppError({{"deployments", {{"name", "x"}}}}),
              HasSubstr("applications[0].deployments: must be a list"));
  EXPECT_THAT(AppError({{"deployments", {"x"}}}),
              HasSubstr("applications[0].deployments[0]: must be a mapping"));
  EXPECT_THAT(AppError({{"deployments", {{{"num_replicas", 1}}}}}),
              HasSubstr("applications[0].deployments[0].name: field required"));
  EXPECT_THAT(AppError({{"deployments", {{{"name", ""}}}}}),
              HasSubstr("applications[0].deployments[0].name"));
  EXPECT_THAT(AppError({{"external_scaler_enabled", "yes"}}),
              HasSubstr("applications[0].external_scaler_enabled: must be a boolean"));
  EXPECT_THAT(AppError({{"logging_config", {{"encoding", "x"}}}}),
              HasSubstr("applications[0].logging_config.encoding"));
}

TEST(SchemaValidationTest, ExternalScalerForbidsAutoscaling) {
  std::string msg = AppError({{"external_scaler_enabled", true},
                              {"deployments", {{{"name", "D"}, {"num_replicas", "auto"}}}}});
  EXPECT_THAT(msg, HasSubstr("applications[0].deployments[0]"));
  EXPECT_THAT(msg, HasSubstr("external_scaler_enabled"));
  auto ok = ParseServeDeployConfig(
      json{{"applications",
            {App({{"external_scaler_enabled", true},
                  {"deployments", {{{"name", "D"}, {"num_replicas", 2}}}}})}}});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(ok->applications[0].external_scaler_enabled);
}

// ---- Deployment validation -----------------------------------------------------------------

TEST(SchemaDeploymentTest, NumReplicas) {
  const std::string p = "applications[0].deployments[0].num_replicas";
  EXPECT_THAT(DeploymentError({{"num_replicas", 0}}), HasSubstr(p + ": must be > 0 (got 0)"));
  EXPECT_THAT(DeploymentError({{"num_replicas", -2}}), HasSubstr(p));
  EXPECT_THAT(DeploymentError({{"num_replicas", 1.5}}), HasSubstr(p));
  EXPECT_THAT(DeploymentError({{"num_replicas", "many"}}), HasSubstr(p));
  EXPECT_THAT(DeploymentError({{"num_replicas", 5000000000LL}}), HasSubstr(p));
  auto null_ok = ParseServeDeployConfig(OneDeployment({{"num_replicas", nullptr}}));
  ASSERT_TRUE(null_ok.ok()) << null_ok.status();
  EXPECT_TRUE(OnlyDeployment(*null_ok).fields["num_replicas"].is_null());
}

TEST(SchemaDeploymentTest, MaxOngoingAndQueued) {
  const std::string p = "applications[0].deployments[0].";
  EXPECT_THAT(DeploymentError({{"max_ongoing_requests", 0}}),
              HasSubstr(p + "max_ongoing_requests: must be > 0 (got 0)"));
  EXPECT_THAT(DeploymentError({{"max_ongoing_requests", "5"}}),
              HasSubstr(p + "max_ongoing_requests: must be an integer"));
  EXPECT_THAT(DeploymentError({{"max_queued_requests", 0}}),
              HasSubstr(p + "max_queued_requests: must be -1 (no limit) or between 1 and "
                                 "100000000 (got 0)"));
  EXPECT_THAT(DeploymentError({{"max_queued_requests", -2}}), HasSubstr(p + "max_queued_requests"));
  EXPECT_THAT(DeploymentError({{"max_queued_requests", 2.0}}),
              HasSubstr(p + "max_queued_requests: must be an integer"));
  for (int ok : {-1, 1, 100}) {
    EXPECT_TRUE(ParseServeDeployConfig(OneDeployment({{"max_queued_requests", ok}})).ok()) << ok;
  }
}

TEST(SchemaDeploymentTest, DurationsAndHealthChecks) {
  const std::string p = "applications[0].deployments[0].";
  EXPECT_THAT(DeploymentError({{"graceful_shutdown_wait_loop_s", -1}}),
              HasSubstr(p + "graceful_shutdown_wait_loop_s: must be >= 0 (got -1)"));
  EXPECT_THAT(DeploymentError({{"graceful_shutdown_timeout_s", -0.5}}),
              HasSubstr(p + "graceful_shutdown_timeout_s: must be >= 0"));
  EXPECT_THAT(DeploymentError({{"health_check_period_s", 0}}),
              HasSubstr(p + "health_check_period_s: must be > 0 (got 0)"));
  EXPECT_THAT(DeploymentError({{"health_check_timeout_s", 0.0}}),
              HasSubstr(p + "health_check_timeout_s: must be > 0"));
  EXPECT_THAT(DeploymentError({{"health_check_timeout_s", "1"}}),
              HasSubstr(p + "health_check_timeout_s: must be a number"));
  EXPECT_THAT(DeploymentError({{"health_check_period_s", nullptr}}),
              HasSubstr(p + "health_check_period_s: must be a number"));
  EXPECT_TRUE(ParseServeDeployConfig(OneDeployment({{"graceful_shutdown_timeout_s", 0}})).ok());
}

TEST(SchemaDeploymentTest, UserConfig) {
  EXPECT_THAT(DeploymentError({{"user_config", {1, 2}}}),
              HasSubstr("applications[0].deployments[0].user_config: must be a mapping or null"));
  EXPECT_TRUE(ParseServeDeployConfig(OneDeployment({{"user_config", nullptr}})).ok());
}

TEST(SchemaDeploymentTest, RayActorOptions) {
  const std::string p = "applications[0].deployments[0].ray_actor_options";
  EXPECT_THAT(DeploymentError({{"ray_actor_options", {{"num_cpus", -1}}}}),
              HasSubstr(p + ".num_cpus: must be >= 0"));
  EXPECT_THAT(DeploymentError({{"ray_actor_options", {{"num_gpus", "1"}}}}),
              HasSubstr(p + ".num_gpus: must be a number"));
  EXPECT_THAT(DeploymentError({{"ray_actor_options", {{"memory", -5}}}}), HasSubstr(p + ".memory"));
  EXPECT_THAT(DeploymentError({{"ray_actor_options", {{"resources", 1}}}}),
              HasSubstr(p + ".resources: must be a mapping"));
  std::string msg = DeploymentError({{"ray_actor_options", {{"max_restarts", 3}}}});
  EXPECT_THAT(msg, HasSubstr(p + ".max_restarts"));
  EXPECT_THAT(msg, HasSubstr("\"max_restarts\" is not a valid ray_actor_options key"));
  EXPECT_THAT(DeploymentError({{"ray_actor_options", "x"}}), HasSubstr(p + ": must be a mapping"));
  EXPECT_TRUE(
      ParseServeDeployConfig(OneDeployment({{"ray_actor_options", {{"num_cpus", nullptr}}}})).ok());
}

TEST(SchemaDeploymentTest, MaxReplicasPerNode) {
  const std::string p = "applications[0].deployments[0].max_replicas_per_node";
  EXPECT_THAT(DeploymentError({{"max_replicas_per_node", 0}}),
              HasSubstr(p + ": must be between 1 and 100 or null (got 0)"));
  EXPECT_THAT(DeploymentError({{"max_replicas_per_node", 101}}), HasSubstr(p));
  EXPECT_TRUE(ParseServeDeployConfig(OneDeployment({{"max_replicas_per_node", 100}})).ok());
  EXPECT_TRUE(ParseServeDeployConfig(OneDeployment({{"max_replicas_per_node", nullptr}})).ok());
  std::string both =
      DeploymentError({{"max_replicas_per_node", 2}, {"placement_group_bundles", {{{"CPU", 1}}}}});
  EXPECT_THAT(both, HasSubstr(p + ": setting max_replicas_per_node is not allowed when "
                                  "placement_group_bundles is provided"));
}

TEST(SchemaDeploymentTest, PlacementGroups) {
  const std::string p = "applications[0].deployments[0].";
  EXPECT_THAT(DeploymentError({{"placement_group_bundles", json::array()}}),
              HasSubstr(p + "placement_group_bundles"));
  EXPECT_THAT(DeploymentError({{"placement_group_bundles", {{{"CPU", "x"}}}}}),
              HasSubstr(p + "placement_group_bundles[0].CPU"));
  EXPECT_THAT(DeploymentError({{"placement_group_strategy", "SIDEWAYS"}}),
              HasSubstr(p + "placement_group_strategy"));
}

TEST(SchemaDeploymentTest, DeploymentLoggingConfig) {
  const std::string p = "applications[0].deployments[0].logging_config";
  EXPECT_THAT(DeploymentError({{"logging_config", {{"log_level", "LOUD"}}}}),
              HasSubstr(p + ".log_level"));
  EXPECT_THAT(DeploymentError({{"logging_config", {{"extra", 1}}}}), HasSubstr(p + ".extra"));
  auto c = ParseServeDeployConfig(OneDeployment({{"logging_config", {{"log_level", 40}}}}));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(OnlyDeployment(*c).fields["logging_config"], json({{"log_level", "ERROR"}}));
}

TEST(SchemaDeploymentTest, RequestRouterConfigPassesThrough) {
  json rrc = {{"request_router_class", "m:R"},
              {"request_router_kwargs", {{"a", 1}}},
              {"request_routing_stats_period_s", 5}};
  auto c = ParseServeDeployConfig(OneDeployment({{"request_router_config", rrc}}));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(OnlyDeployment(*c).fields["request_router_config"], rrc);
  EXPECT_THAT(DeploymentError({{"request_router_config", {{"request_router_kwargs", 1}}}}),
              HasSubstr("applications[0].deployments[0].request_router_config."
                        "request_router_kwargs"));
}

TEST(SchemaDeploymentTest, AutoscalingConfigRules) {
  const std::string p = "applications[0].deployments[0].autoscaling_config";
  auto as = [](const json& cfg) { return DeploymentError({{"autoscaling_config", cfg}}); };
  EXPECT_THAT(as({{"min_replicas", -1}}), HasSubstr(p + ".min_replicas: must be >= 0"));
  EXPECT_THAT(as({{"max_replicas", 0}}), HasSubstr(p + ".max_replicas: must be > 0"));
  EXPECT_THAT(as({{"min_replicas", 5}, {"max_replicas", 2}}),
              HasSubstr(p + ".max_replicas: max_replicas (2) must be >= min_replicas (5)"));
  // max_replicas defaults to 1 (seed), so min_replicas 2 alone is invalid.
  EXPECT_THAT(as({{"min_replicas", 2}}), HasSubstr(p + ": max_replicas (1) must be >= "));
  EXPECT_THAT(as({{"min_replicas", 1}, {"max_replicas", 3}, {"initial_replicas", 4}}),
              HasSubstr(p + ".initial_replicas: must be between min_replicas (1) and "
                            "max_replicas (3)"));
  EXPECT_THAT(as({{"target_ongoing_requests", 0}}),
              HasSubstr(p + ".target_ongoing_requests: must be > 0"));
  EXPECT_THAT(as({{"upscale_delay_s", -1}}), HasSubstr(p + ".upscale_delay_s"));
  EXPECT_THAT(as("x"), HasSubstr(p + ": must be a mapping or null"));
  auto ok = ParseServeDeployConfig(OneDeployment(
      {{"autoscaling_config", {{"min_replicas", 0}, {"max_replicas", 4}, {"policy", "m:p"}}}}));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(OnlyDeployment(*ok).fields["autoscaling_config"]["policy"], "m:p");  // passthrough
}

TEST(SchemaDeploymentTest, IntegerNumReplicasWithAutoscalingRejected) {
  std::string msg = DeploymentError(
      {{"num_replicas", 2}, {"autoscaling_config", {{"min_replicas", 1}, {"max_replicas", 3}}}});
  EXPECT_THAT(msg, HasSubstr("applications[0].deployments[0].num_replicas"));
  EXPECT_THAT(msg, HasSubstr("not allowed when autoscaling_config is provided"));
  // Null autoscaling_config or null num_replicas are fine.
  EXPECT_TRUE(
      ParseServeDeployConfig(OneDeployment({{"num_replicas", 2}, {"autoscaling_config", nullptr}}))
          .ok());
  EXPECT_TRUE(ParseServeDeployConfig(OneDeployment({{"num_replicas", nullptr},
                                                    {"autoscaling_config", {{"max_replicas", 2}}}}))
                  .ok());
}

TEST(SchemaDeploymentTest, DeprecatedAliasesRenamed) {
  auto c = ParseServeDeployConfig(
      OneDeployment({{"max_concurrent_queries", 12},
                     {"autoscaling_config",
                      {{"target_num_ongoing_requests_per_replica", 3}, {"max_replicas", 4}}}}));
  ASSERT_TRUE(c.ok()) << c.status();
  const json& f = OnlyDeployment(*c).fields;
  EXPECT_EQ(f["max_ongoing_requests"], 12);
  EXPECT_FALSE(f.contains("max_concurrent_queries"));
  EXPECT_EQ(f["autoscaling_config"]["target_ongoing_requests"], 3);
  EXPECT_FALSE(f["autoscaling_config"].contains("target_num_ongoing_requests_per_replica"));

  // The new name wins when both are given.
  auto both = ParseServeDeployConfig(
      OneDeployment({{"max_concurrent_queries", 12}, {"max_ongoing_requests", 8}}));
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_EQ(OnlyDeployment(*both).fields["max_ongoing_requests"], 8);

  // Errors on an alias name the key as written.
  EXPECT_THAT(DeploymentError({{"max_concurrent_queries", 0}}),
              HasSubstr("applications[0].deployments[0].max_concurrent_queries: must be > 0"));
  EXPECT_THAT(
      DeploymentError({{"autoscaling_config", {{"target_num_ongoing_requests_per_replica", -1}}}}),
      HasSubstr("autoscaling_config.target_num_ongoing_requests_per_replica"));
}

TEST(SchemaDeploymentTest, NumReplicasAutoExpands) {
  auto c = ParseServeDeployConfig(OneDeployment({{"num_replicas", "auto"}}));
  ASSERT_TRUE(c.ok()) << c.status();
  const json& f = OnlyDeployment(*c).fields;
  EXPECT_TRUE(f["num_replicas"].is_null());
  EXPECT_EQ(f["max_ongoing_requests"], 5);
  EXPECT_EQ(f["autoscaling_config"],
            json({{"min_replicas", 1}, {"max_replicas", 100}, {"target_ongoing_requests", 2}}));
}

TEST(SchemaDeploymentTest, NumReplicasAutoKeepsUserValues) {
  auto c = ParseServeDeployConfig(std::string(R"(
applications:
  - import_path: m:a
    deployments:
      - name: Model
        num_replicas: auto
        max_ongoing_requests: 9
        autoscaling_config:
          min_replicas: 3
          target_num_ongoing_requests_per_replica: 4
          upscale_delay_s: 5
)"));
  ASSERT_TRUE(c.ok()) << c.status();
  const json& f = OnlyDeployment(*c).fields;
  EXPECT_TRUE(f["num_replicas"].is_null());
  EXPECT_EQ(f["max_ongoing_requests"], 9);
  EXPECT_EQ(f["autoscaling_config"], json({{"min_replicas", 3},
                                           {"max_replicas", 100},
                                           {"target_ongoing_requests", 4},
                                           {"upscale_delay_s", 5}}));
  // Re-parsing the expanded form is stable.
  auto again = ParseServeDeployConfig(ToJson(*c));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(OnlyDeployment(*again).fields, f);
}

TEST(SchemaDeploymentTest, NumReplicasAutoValidatesExpandedBounds) {
  EXPECT_THAT(
      DeploymentError({{"num_replicas", "auto"}, {"autoscaling_config", {{"min_replicas", 200}}}}),
      HasSubstr("max_replicas (100) must be >= min_replicas (200)"));
}

// ---- Legacy single-application form --------------------------------------------------------

TEST(SchemaLegacyTest, ConvertsToOneApplication) {
  auto c = ParseServeDeployConfig(std::string(R"(
import_path: text_ml:app
host: 127.0.0.1
port: 8001
route_prefix: /ml
runtime_env:
  pip: [torch]
args:
  k: v
deployments:
  - name: Translator
    num_replicas: 2
)"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->http_options.host, "127.0.0.1");
  EXPECT_EQ(c->http_options.port, 8001);
  ASSERT_EQ(c->applications.size(), 1u);
  const ApplicationConfig& app = c->applications[0];
  EXPECT_EQ(app.name, "default");
  EXPECT_EQ(app.route_prefix, "/ml");
  EXPECT_EQ(app.import_path, "text_ml:app");
  EXPECT_EQ(app.runtime_env, json({{"pip", {"torch"}}}));
  EXPECT_EQ(app.args, json({{"k", "v"}}));
  ASSERT_EQ(app.deployments.size(), 1u);
  EXPECT_EQ(app.deployments[0].fields["num_replicas"], 2);
  EXPECT_FALSE(app.submitted.contains("host"));
  EXPECT_FALSE(app.submitted.contains("port"));
  EXPECT_EQ(app.submitted["import_path"], "text_ml:app");
}

TEST(SchemaLegacyTest, MinimalAndErrors) {
  auto c = ParseServeDeployConfig(json{{"import_path", "m:a"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->applications[0].name, "default");
  EXPECT_EQ(c->applications[0].route_prefix, "/");
  EXPECT_EQ(c->http_options.port, 8000);
  // Paths are the top-level fields as written.
  std::string msg =
      ParseError(std::string("import_path: m:a\ndeployments:\n  - name: A\n"
                             "    num_replicas: 0\n"));
  EXPECT_THAT(msg, HasSubstr("deployments[0].num_replicas: must be > 0 (got 0)"));
  EXPECT_THAT(msg, HasSubstr("line 4"));
  EXPECT_THAT(ParseError(json{{"import_path", "bad"}}), HasSubstr("import_path: invalid"));
  EXPECT_THAT(ParseError(json{{"import_path", "m:a"}, {"port", "x"}}), HasSubstr("port"));
}

// ---- MergeDeploymentOptions ----------------------------------------------------------------

TEST(SchemaMergeTest, FileOverridesCodeFieldWise) {
  json code = {
      {"name", "ExampleDeployment"}, {"num_replicas", 2}, {"graceful_shutdown_timeout_s", 6}};
  json file = {{"name", "ExampleDeployment"}, {"num_replicas", 5}};
  json merged = MergeDeploymentOptions(code, file);
  EXPECT_EQ(merged, json({{"name", "ExampleDeployment"},
                          {"num_replicas", 5},
                          {"graceful_shutdown_timeout_s", 6}}));
}

TEST(SchemaMergeTest, DictsReplacedWhole) {
  json code = {{"name", "D"},
               {"ray_actor_options", {{"num_cpus", 2}, {"num_gpus", 1}}},
               {"user_config", {{"a", 1}, {"b", 2}}},
               {"autoscaling_config", {{"min_replicas", 1}, {"max_replicas", 10}}}};
  json file = {{"name", "D"},
               {"ray_actor_options", {{"memory", 100}}},
               {"user_config", {{"b", 3}}},
               {"autoscaling_config", {{"max_replicas", 4}}}};
  json merged = MergeDeploymentOptions(code, file);
  EXPECT_EQ(merged["ray_actor_options"], json({{"memory", 100}}));
  EXPECT_EQ(merged["user_config"], json({{"b", 3}}));
  EXPECT_EQ(merged["autoscaling_config"], json({{"max_replicas", 4}}));
}

TEST(SchemaMergeTest, NullOverridesAndEmptyInputs) {
  json merged = MergeDeploymentOptions({{"name", "D"}, {"user_config", {{"a", 1}}}},
                                       {{"user_config", nullptr}});
  EXPECT_TRUE(merged["user_config"].is_null());
  EXPECT_EQ(MergeDeploymentOptions(json::object(), {{"name", "D"}}), json({{"name", "D"}}));
  EXPECT_EQ(MergeDeploymentOptions({{"name", "D"}}, json::object()), json({{"name", "D"}}));
}

TEST(SchemaMergeTest, WithParsedAutoOverride) {
  auto c = ParseServeDeployConfig(OneDeployment({{"num_replicas", "auto"}}));
  ASSERT_TRUE(c.ok()) << c.status();
  json merged =
      MergeDeploymentOptions({{"name", "Model"}, {"num_replicas", 3}}, OnlyDeployment(*c).fields);
  EXPECT_TRUE(merged["num_replicas"].is_null());
  EXPECT_EQ(merged["autoscaling_config"]["max_replicas"], 100);
}

// ---- FormatServeBuildYaml ------------------------------------------------------------------

TEST(SchemaBuildYamlTest, SingleApplication) {
  BuiltApplication app;
  app.import_path = "text_ml:app";
  app.deployments.push_back({{"name", "Translator"},
                             {"num_replicas", 1},
                             {"max_ongoing_requests", 100},
                             {"user_config", {{"language", "french"}}},
                             {"graceful_shutdown_timeout_s", 20.0},
                             {"ray_actor_options", {{"num_cpus", 1.0}}}});
  app.deployments.push_back({{"name", "Summarizer"}});
  std::string yaml = FormatServeBuildYaml({app});
  EXPECT_EQ(yaml.rfind("# This file was generated using the `serve build` command on serve ", 0),
            0u)
      << yaml;
  EXPECT_THAT(yaml, HasSubstr(".\n\nproxy_location: EveryNode\n\nhttp_options:\n"));
  EXPECT_THAT(yaml, HasSubstr("\n\ngrpc_options:\n"));
  EXPECT_THAT(yaml, HasSubstr("\n\nlogging_config:\n"));
  EXPECT_THAT(yaml, HasSubstr("\n\napplications:\n"));
  EXPECT_THAT(yaml, HasSubstr("logs_dir: null"));
  EXPECT_THAT(yaml, HasSubstr("grpc_servicer_functions: []"));
  EXPECT_THAT(yaml, HasSubstr("runtime_env: {}"));
  EXPECT_THAT(yaml, HasSubstr("host: 0.0.0.0"));
  // Deployment keys follow DeploymentSchema's field order.
  EXPECT_LT(yaml.find("name: Translator"), yaml.find("num_replicas: 1"));
  EXPECT_LT(yaml.find("num_replicas: 1"), yaml.find("max_ongoing_requests: 100"));
  EXPECT_LT(yaml.find("max_ongoing_requests: 100"), yaml.find("user_config:"));
  EXPECT_LT(yaml.find("user_config:"), yaml.find("ray_actor_options:"));

  auto c = ParseServeDeployConfig(yaml);
  ASSERT_TRUE(c.ok()) << c.status() << "\n" << yaml;
  EXPECT_EQ(c->proxy_location, "EveryNode");
  EXPECT_EQ(c->http_options.host, "0.0.0.0");
  EXPECT_EQ(c->http_options.port, 8000);
  EXPECT_EQ(c->grpc_options.port, 9000);
  ASSERT_TRUE(c->logging_config.has_value());
  EXPECT_EQ(*c->logging_config, json({{"encoding", "TEXT"},
                                      {"log_level", "INFO"},
                                      {"logs_dir", nullptr},
                                      {"enable_access_log", true},
                                      {"additional_log_standard_attrs", json::array()}}));
  ASSERT_EQ(c->applications.size(), 1u);
  EXPECT_EQ(c->applications[0].name, "app1");
  EXPECT_EQ(c->applications[0].route_prefix, "/");
  EXPECT_EQ(c->applications[0].import_path, "text_ml:app");
  ASSERT_EQ(c->applications[0].deployments.size(), 2u);
  // Types survive the round trip (20.0 stays a float, strings stay strings).
  EXPECT_EQ(c->applications[0].deployments[0].fields, app.deployments[0]);
  EXPECT_TRUE(
      c->applications[0].deployments[0].fields["graceful_shutdown_timeout_s"].is_number_float());
  EXPECT_EQ(c->applications[0].deployments[1].fields, json({{"name", "Summarizer"}}));
}

TEST(SchemaBuildYamlTest, TwoApplicationsAndServicers) {
  BuiltApplication a{"mod_a:app",
                     {{{"name", "A"}, {"user_config", {{"v", "1"}, {"flag", "yes"}}}}}};
  BuiltApplication b{"mod_b:app", {}};
  std::string yaml = FormatServeBuildYaml({a, b}, {"pkg.pb2_grpc:add_S_to_server"});
  auto c = ParseServeDeployConfig(yaml);
  ASSERT_TRUE(c.ok()) << c.status() << "\n" << yaml;
  ASSERT_EQ(c->applications.size(), 2u);
  EXPECT_EQ(c->applications[0].name, "app1");
  EXPECT_EQ(c->applications[0].route_prefix, "/app1");
  EXPECT_EQ(c->applications[1].name, "app2");
  EXPECT_EQ(c->applications[1].route_prefix, "/app2");
  EXPECT_EQ(c->applications[1].import_path, "mod_b:app");
  EXPECT_TRUE(c->applications[1].deployments.empty());
  // Strings that look like other scalars are quoted and read back as strings.
  EXPECT_EQ(c->applications[0].deployments[0].fields["user_config"],
            json({{"v", "1"}, {"flag", "yes"}}));
  EXPECT_EQ(c->grpc_options.grpc_servicer_functions,
            std::vector<std::string>{"pkg.pb2_grpc:add_S_to_server"});
}

TEST(SchemaBuildYamlTest, AwkwardScalarsRoundTrip) {
  json user_config = json::object();
  const std::vector<std::string> strings = {
      "- a", "a: b", "#x", "'q'", "\"dq\"", "@x", "*", "&a", "!x", "%", "x\ny", " lead",
      "trail ", "0.0.0.0", "1e3", "0x1F", ".inf", "~", "Null", "1_000", "on", "-", "{a}", "[b]",
      "", "ünïcode"};
  for (size_t i = 0; i < strings.size(); ++i) user_config["s" + std::to_string(i)] = strings[i];
  user_config["int"] = -42;
  user_config["big"] = 9007199254740993LL;
  user_config["float"] = 0.1;
  user_config["whole_float"] = 3.0;
  user_config["tiny"] = 1e-300;
  user_config["bool"] = false;
  user_config["null"] = nullptr;
  user_config["list"] = {1, "two", nullptr, json::object(), json::array()};
  user_config["yes"] = "key that reads as a bool";
  user_config["nested"] = {{"deep", {{"deeper", {1.5, "x"}}}}};
  BuiltApplication app{"m:a", {{{"name", "D"}, {"user_config", user_config}}}};
  std::string yaml = FormatServeBuildYaml({app});
  auto c = ParseServeDeployConfig(yaml);
  ASSERT_TRUE(c.ok()) << c.status() << "\n" << yaml;
  EXPECT_EQ(OnlyDeployment(*c).fields["user_config"], user_config) << yaml;
  EXPECT_TRUE(OnlyDeployment(*c).fields["user_config"]["whole_float"].is_number_float());
}

TEST(SchemaBuildYamlTest, NoApplications) {
  std::string yaml = FormatServeBuildYaml({});
  auto c = ParseServeDeployConfig(yaml);
  ASSERT_TRUE(c.ok()) << c.status() << "\n" << yaml;
  EXPECT_TRUE(c->applications.empty());
}

// ---- Unknown fields: warned about by path and line (Ray ignores them); strict rejects them.

constexpr char kMisspelledYaml[] = R"(applications:
  - name: greeter
    import_path: greeter:build
    rout_prefix: /greet
    deployments:
      - name: Greeter
        num_replica: 3
        autoscaling_config: null
        ray_actor_options: {num_cpus: 1}
http_options:
  port: 8000
  timeout: 3
grpc_options: {port: 9000, servicers: []}
target_capacty: 50
)";

TEST(SchemaUnknownFieldsTest, WarnedByPathAndLineAndIgnored) {
  std::vector<std::string> warnings;
  auto c = ParseServeDeployConfig(std::string(kMisspelledYaml),
                                  {.strict = false, .warnings = &warnings});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(OnlyDeployment(*c).fields.find("num_replicas") == OnlyDeployment(*c).fields.end());
  EXPECT_EQ(c->applications[0].route_prefix, "/");  // the default: the typo is not a prefix
  EXPECT_THAT(warnings,
              ::testing::UnorderedElementsAre(
                  "applications[0].rout_prefix: unknown field (did you mean 'route_prefix'?); "
                  "ignored (line 4)",
                  "applications[0].deployments[0].num_replica: unknown field (did you mean "
                  "'num_replicas'?); ignored (line 7)",
                  "http_options.timeout: unknown field; ignored (line 12)",
                  "grpc_options.servicers: unknown field; ignored (line 13)",
                  "target_capacty: unknown field (did you mean 'target_capacity'?); ignored "
                  "(line 14)"));
}

TEST(SchemaUnknownFieldsTest, StrictRejectsTheFirstOne) {
  std::vector<std::string> warnings;
  auto c = ParseServeDeployConfig(std::string(kMisspelledYaml),
                                  {.strict = true, .warnings = &warnings});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()),
              AnyOf(HasSubstr("rout_prefix: unknown field"), HasSubstr("target_capacty"),
                    HasSubstr("http_options.timeout"), HasSubstr("grpc_options.servicers")));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("(line "));
}

TEST(SchemaUnknownFieldsTest, StrictAcceptsAValidConfig) {
  std::vector<std::string> warnings;
  auto c = ParseServeDeployConfig(std::string(R"(
proxy_location: EveryNode
http_options: {host: 127.0.0.1, port: 8000, request_timeout_s: 30}
grpc_options: {port: 9000, grpc_servicer_functions: []}
logging_config: {log_level: INFO}
target_capacity: 100
applications:
  - name: greeter
    route_prefix: /greet
    import_path: greeter:build
    args: {greeting: Hola}
    runtime_env: {env_vars: {A: b}}
    deployments:
      - name: Greeter
        num_replicas: auto
        max_concurrent_queries: 5
        autoscaling_config: {min_replicas: 1, max_replicas: 3, upscale_delay_s: 1}
        user_config: {anything: [1, 2]}
        ray_actor_options: {num_cpus: 0.5}
)"),
                                  {.strict = true, .warnings = &warnings});
  EXPECT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(warnings, ::testing::IsEmpty());
}

TEST(SchemaUnknownFieldsTest, NestedAutoscalingAndRouterFieldsAndJsonDocuments) {
  std::vector<std::string> warnings;
  json doc = OneDeployment({{"autoscaling_config", {{"min_replica", 1}, {"max_replicas", 2}}},
                            {"request_router_config", {{"request_router_klass", "X"}}},
                            {"max_concurrent_queries", 5}});
  auto c = ParseServeDeployConfig(doc, {.warnings = &warnings});
  ASSERT_TRUE(c.ok()) << c.status();
  // JSON documents (the REST body) have no lines.
  EXPECT_THAT(warnings, ::testing::UnorderedElementsAre(
                            "applications[0].deployments[0].autoscaling_config.min_replica: "
                            "unknown field (did you mean 'min_replicas'?); ignored",
                            "applications[0].deployments[0].request_router_config."
                            "request_router_klass: unknown field (did you mean "
                            "'request_router_class'?); ignored"));
  EXPECT_EQ(OnlyDeployment(*c).fields["max_ongoing_requests"], 5);  // an alias, not unknown
  EXPECT_FALSE(ParseServeDeployConfig(doc, {.strict = true}).ok());
}

TEST(SchemaUnknownFieldsTest, RayFieldsNotSupportedYetAreWarningsEvenWhenStrict) {
  std::vector<std::string> warnings;
  auto c = ParseServeDeployConfig(OneDeployment({{"max_constructor_retry_count", 5}}),
                                  {.strict = true, .warnings = &warnings});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(warnings, ::testing::ElementsAre("applications[0].deployments[0]."
                                               "max_constructor_retry_count: not supported yet; "
                                               "ignored"));
}

TEST(SchemaUnknownFieldsTest, LegacySingleAppFormKnowsItsTopLevelFields) {
  std::vector<std::string> warnings;
  auto c = ParseServeDeployConfig(std::string("import_path: m:a\nhost: 127.0.0.1\nport: 9\n"
                                              "route_prefix: /x\nnum_replicas: 2\n"),
                                  {.warnings = &warnings});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(warnings, ::testing::ElementsAre("num_replicas: unknown field; ignored (line 5)"));
}

TEST(SchemaUnknownFieldsTest, WithoutOptionsNothingChanges) {
  EXPECT_TRUE(ParseServeDeployConfig(std::string(kMisspelledYaml)).ok());
}

TEST(SchemaUnknownFieldsTest, StrictFromEnvironment) {
  ::unsetenv("SERVE_STRICT_CONFIG");
  EXPECT_FALSE(StrictConfigFromEnv());
  ::setenv("SERVE_STRICT_CONFIG", "1", 1);
  EXPECT_TRUE(StrictConfigFromEnv());
  ::setenv("SERVE_STRICT_CONFIG", "0", 1);
  EXPECT_FALSE(StrictConfigFromEnv());
  ::unsetenv("SERVE_STRICT_CONFIG");
}

// ---- `serve config`: the schema's field order, not alphabetical.

TEST(SchemaAppConfigYamlTest, SchemaOrderForAppAndDeployments) {
  json app = {{"name", "greeter"},
              {"route_prefix", "/greet"},
              {"import_path", "greeter:build"},
              {"args", {{"greeting", "Hola"}}},
              {"deployments",
               {{{"user_config", {{"punctuation", "?"}}},
                 {"num_replicas", 2},
                 {"name", "Greeter"},
                 {"zzz_extra", 1}}}}};
  EXPECT_EQ(AppConfigToYaml(app),
            "name: greeter\n"
            "route_prefix: /greet\n"
            "import_path: greeter:build\n"
            "args:\n"
            "  greeting: Hola\n"
            "deployments:\n"
            "  - name: Greeter\n"
            "    num_replicas: 2\n"
            "    user_config:\n"
            "      punctuation: \"?\"\n"
            "    zzz_extra: 1\n");
}

}  // namespace
}  // namespace serve::config
