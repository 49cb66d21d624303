// Unit tests of the input limits (config/limits.h, docs/limits.md): each class of hostile or
// out-of-range input is rejected with the field's path and the reason, on the config-file
// path (YAML), the REST path (parsed JSON) and the code-options path (ResolveDeploymentConfig).

#include "config/limits.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "config/deployment_config.h"
#include "config/schema.h"

namespace serve::config {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

std::string ParseError(const json& doc) {
  auto c = ParseServeDeployConfig(doc);
  EXPECT_FALSE(c.ok()) << "accepted: " << doc.dump();
  return c.ok() ? "" : std::string(c.status().message());
}

std::string ParseError(const std::string& yaml) {
  auto c = ParseServeDeployConfig(yaml);
  EXPECT_FALSE(c.ok()) << "accepted:\n" << yaml.substr(0, 500);
  return c.ok() ? "" : std::string(c.status().message());
}

json App(const json& fields) {
  json app = {{"name", "app"}, {"import_path", "mod:app"}};
  app.update(fields);
  return {{"applications", {app}}};
}

json OneDeployment(const json& fields) {
  json d = {{"name", "Model"}};
  d.update(fields);
  return App({{"deployments", {d}}});
}

std::string DeploymentError(const json& fields) { return ParseError(OneDeployment(fields)); }

std::string CodeOptionError(const json& fields) {
  json o = {{"name", "Model"}};
  o.update(fields);
  auto c = ResolveDeploymentConfig(o);
  EXPECT_FALSE(c.ok()) << "accepted: " << o.dump();
  return c.ok() ? "" : std::string(c.status().message());
}

const std::string kD = "applications[0].deployments[0].";
const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

TEST(InputLimitsNumbersTest, ReplicaCountsAreBounded) {
  EXPECT_THAT(DeploymentError({{"num_replicas", 1e30}}),
              HasSubstr(kD + "num_replicas: must be a positive integer"));
  EXPECT_THAT(DeploymentError({{"num_replicas", 100000}}),
              HasSubstr(kD + "num_replicas: must be <= 10000 (got 100000)"));
  EXPECT_THAT(DeploymentError({{"num_replicas", -1}}),
              HasSubstr(kD + "num_replicas: must be > 0 (got -1)"));
  EXPECT_THAT(DeploymentError({{"num_replicas", 1.5}}), HasSubstr(kD + "num_replicas: must be"));
  EXPECT_THAT(DeploymentError({{"autoscaling_config", {{"max_replicas", 20000}}}}),
              HasSubstr(kD + "autoscaling_config.max_replicas: must be <= 10000"));
  EXPECT_THAT(DeploymentError({{"max_replicas_per_node", 101}}),
              HasSubstr(kD + "max_replicas_per_node: must be between 1 and 100 or null"));
  EXPECT_TRUE(ParseServeDeployConfig(OneDeployment({{"num_replicas", 10000}})).ok());
}

TEST(InputLimitsNumbersTest, RequestLimitsAreBounded) {
  EXPECT_THAT(DeploymentError({{"max_ongoing_requests", 0}}),
              HasSubstr(kD + "max_ongoing_requests: must be > 0 (got 0)"));
  EXPECT_THAT(DeploymentError({{"max_ongoing_requests", 18446744073709551615ULL}}),
              HasSubstr(kD + "max_ongoing_requests: must be <= 1000000 (got 1844674"));
  EXPECT_THAT(DeploymentError({{"max_ongoing_requests", 2000000}}),
              HasSubstr(kD + "max_ongoing_requests: must be <= 1000000"));
  EXPECT_THAT(DeploymentError({{"max_queued_requests", 1000000000}}),
              HasSubstr(kD + "max_queued_requests: must be -1 (no limit) or between 1 and"));
}

TEST(InputLimitsNumbersTest, DurationsRejectNaNInfinityAndHugeValues) {
  EXPECT_THAT(DeploymentError({{"health_check_period_s", kNaN}}),
              HasSubstr(kD + "health_check_period_s: must be a finite number (got NaN)"));
  EXPECT_THAT(DeploymentError({{"health_check_timeout_s", kInf}}),
              HasSubstr(kD + "health_check_timeout_s: must be a finite number (got inf)"));
  EXPECT_THAT(DeploymentError({{"graceful_shutdown_timeout_s", 1e300}}),
              HasSubstr(kD + "graceful_shutdown_timeout_s: must be <= 10000000 (got 1e+300)"));
  // YAML spells them .nan / .inf.
  EXPECT_THAT(ParseError(std::string("applications:\n- import_path: m:a\n  deployments:\n"
                                     "  - name: D\n    health_check_period_s: .nan\n")),
              HasSubstr("health_check_period_s: must be a finite number (got NaN) (line 5)"));
  EXPECT_THAT(ParseError(std::string("http_options:\n  request_timeout_s: .inf\n"
                                     "applications: []\n")),
              HasSubstr("http_options.request_timeout_s: must be a finite number (got inf)"));
}

TEST(InputLimitsNumbersTest, AutoscalingTargetsAndFactors) {
  const std::string a = kD + "autoscaling_config.";
  auto as = [](const json& fields) { return DeploymentError({{"autoscaling_config", fields}}); };
  EXPECT_THAT(as({{"target_ongoing_requests", 0}}),
              HasSubstr(a + "target_ongoing_requests: must be > 0 (got 0)"));
  EXPECT_THAT(as({{"upscaling_factor", 1000}}),
              HasSubstr(a + "upscaling_factor: must be <= 100 (got 1000)"));
  EXPECT_THAT(as({{"downscaling_factor", -1}}),
              HasSubstr(a + "downscaling_factor: must be > 0 (got -1)"));
  EXPECT_THAT(as({{"upscale_delay_s", kNaN}}),
              HasSubstr(a + "upscale_delay_s: must be a finite number (got NaN)"));
  EXPECT_THAT(DeploymentError({{"request_router_config", {{"backoff_multiplier", 1e9}}}}),
              HasSubstr(kD + "request_router_config.backoff_multiplier: must be <= 100"));
  EXPECT_THAT(ParseError(json{{"target_capacity", kNaN}, {"applications", json::array()}}),
              HasSubstr("target_capacity: must be between 0 and 100 or null"));
}

TEST(InputLimitsNumbersTest, PortsAndResources) {
  EXPECT_THAT(ParseError(json{{"http_options", {{"port", 70000}}}, {"applications", json::array()}}),
              HasSubstr("http_options.port: must be between 0 and 65535 (got 70000)"));
  EXPECT_THAT(ParseError(json{{"grpc_options", {{"port", -1}}}, {"applications", json::array()}}),
              HasSubstr("grpc_options.port: must be between 0 and 65535 (got -1)"));
  EXPECT_THAT(DeploymentError({{"ray_actor_options", {{"num_cpus", 1e30}}}}),
              HasSubstr(kD + "ray_actor_options.num_cpus: must be <= 1000000"));
  EXPECT_THAT(DeploymentError({{"ray_actor_options", {{"resources", {{"tpu", kInf}}}}}}),
              HasSubstr(kD + "ray_actor_options.resources.tpu: must be a finite number"));
  EXPECT_THAT(DeploymentError({{"placement_group_bundles", {{{"CPU", -1}}}}}),
              HasSubstr(kD + "placement_group_bundles[0].CPU: must be >= 0 (got -1)"));
}

TEST(InputLimitsNumbersTest, CodeOptionsGetTheSameRanges) {
  EXPECT_THAT(CodeOptionError({{"num_replicas", 1e30}}),
              HasSubstr("'num_replicas': must be an integer (got 1e+30)"));
  EXPECT_THAT(CodeOptionError({{"num_replicas", 100000}}),
              HasSubstr("'num_replicas': must be <= 10000"));
  EXPECT_THAT(CodeOptionError({{"health_check_period_s", kNaN}}),
              HasSubstr("'health_check_period_s': must be a finite number (got NaN)"));
  EXPECT_THAT(CodeOptionError({{"max_replicas_per_node", 1LL << 40}}),
              HasSubstr("'max_replicas_per_node'"));
  EXPECT_THAT(CodeOptionError({{"autoscaling_config", {{"upscaling_factor", 1e9}}}}),
              HasSubstr("'autoscaling_config.upscaling_factor': must be <= 100"));
  EXPECT_THAT(CodeOptionError({{"ray_actor_options", {{"num_gpus", kInf}}}}),
              HasSubstr("'ray_actor_options.num_gpus': must be a finite number"));
  EXPECT_THAT(CodeOptionError({{"name", "../x"}}), HasSubstr("'name': cannot contain '/'"));
}

std::string Nested(int depth, const std::string& open, const std::string& close) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += open;
  s += "1";
  for (int i = 0; i < depth; ++i) s += close;
  return s;
}

TEST(InputLimitsNestingTest, DeepDocumentsAreRejectedOnEveryPath) {
  // YAML (config files): a deep user_config in flow style.
  std::string yaml = "applications:\n- import_path: m:a\n  deployments:\n  - name: D\n"
                     "    user_config: {a: " +
                     Nested(200, "[", "]") + "}\n";
  EXPECT_THAT(ParseError(yaml), HasSubstr("nested deeper than 64 levels"));
  // REST bodies: refused by the bounded parser before a tree is built.
  std::string why;
  json doc = limits::ParseBoundedJson(Nested(100000, "[", "]"), &why);
  EXPECT_TRUE(doc.is_discarded());
  EXPECT_THAT(why, HasSubstr("nested deeper than 64 levels"));
  // Already-parsed documents (args passed through).
  json deep = 1;
  for (int i = 0; i < 100; ++i) deep = json::array({deep});
  EXPECT_THAT(ParseError(App({{"args", {{"x", deep}}}})), HasSubstr("nested deeper than 64"));
  EXPECT_THAT(CodeOptionError({{"user_config", {{"x", deep}}}}),
              HasSubstr("'user_config': nested deeper than 64 levels"));
  // Within the bound is fine.
  json ok = 1;
  for (int i = 0; i < 20; ++i) ok = json::array({ok});
  EXPECT_TRUE(ParseServeDeployConfig(OneDeployment({{"user_config", {{"x", ok}}}})).ok());
  EXPECT_FALSE(limits::ParseBoundedJson(Nested(60, "[", "]")).is_discarded());
}

TEST(InputLimitsNestingTest, YamlAliasBombIsRejected) {
  std::string yaml = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  std::string prev = "a";
  for (char c = 'b'; c <= 'j'; ++c) {
    std::string name(1, c);
    yaml += name + ": &" + name + " [";
    for (int i = 0; i < 10; ++i) yaml += (i ? ", *" : "*") + prev;
    yaml += "]\n";
    prev = name;
  }
  yaml += "applications: []\n";
  EXPECT_THAT(ParseError(yaml), HasSubstr("after expanding YAML aliases"));
  // An alias inside its own anchor (a cycle in yaml-cpp's graph) stops at the depth bound.
  EXPECT_THAT(ParseError(std::string("a: &a [x, *a]\napplications: []\n")),
              HasSubstr("nested deeper than 64 levels"));  // accepted or refused, but it returns
  // A few aliases stay fine.
  EXPECT_TRUE(ParseServeDeployConfig(std::string("x: &v {num_replicas: 2}\napplications:\n"
                                                 "- import_path: m:a\n  deployments:\n"
                                                 "  - name: D\n    user_config: *v\n"))
                  .ok());
}

TEST(InputLimitsNestingTest, OversizeDocumentsAreRejected) {
  std::string big(limits::kMaxDocumentBytes + 1, ' ');
  std::string why;
  EXPECT_TRUE(limits::ParseBoundedJson(big, &why).is_discarded());
  EXPECT_THAT(why, HasSubstr("the limit is 8388608 bytes"));
  EXPECT_THAT(ParseError("#" + big), HasSubstr("the limit is 8388608 bytes"));
  auto path = std::filesystem::temp_directory_path() /
              ("serve_limits_test_" + std::to_string(::getpid()) + ".yaml");
  std::ofstream(path) << "#" << big << "\napplications: []\n";
  auto c = LoadServeDeployConfig(path.string());
  std::filesystem::remove(path);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("the limit is 8388608 bytes"));
}

TEST(InputLimitsNamesTest, NamesUsedInPathsAreValidated) {
  EXPECT_THAT(ParseError(App({{"name", "../etc"}})),
              HasSubstr("applications[0].name: cannot contain '/'"));
  EXPECT_THAT(ParseError(App({{"name", ".."}})), HasSubstr("applications[0].name: cannot be"));
  EXPECT_THAT(ParseError(App({{"name", std::string("a\0b", 3)}})),
              HasSubstr("applications[0].name: cannot contain NUL"));
  EXPECT_THAT(ParseError(App({{"name", std::string(200, 'a')}})),
              HasSubstr("applications[0].name: must be at most 128 bytes (got 200)"));
  EXPECT_THAT(DeploymentError({{"name", "a/b"}}), HasSubstr(kD + "name: cannot contain '/'"));
  EXPECT_TRUE(ParseServeDeployConfig(App({{"name", "my app-1.v2"}})).ok());
}

TEST(InputLimitsEnvTest, RuntimeEnvCannotSetLoaderOrRuntimeVariables) {
  auto app_env = [](const std::string& name) {
    return ParseError(App({{"runtime_env", {{"env_vars", {{name, "x"}}}}}}));
  };
  EXPECT_THAT(app_env("LD_PRELOAD"),
              HasSubstr("applications[0].runtime_env.env_vars.LD_PRELOAD: environment variable "
                        "LD_PRELOAD changes how the dynamic loader"));
  EXPECT_THAT(app_env("LD_LIBRARY_PATH"), HasSubstr("LD_LIBRARY_PATH changes how"));
  EXPECT_THAT(app_env("LD_AUDIT"), HasSubstr("LD_AUDIT changes how"));
  EXPECT_THAT(app_env("GLIBC_TUNABLES"), HasSubstr("GLIBC_TUNABLES changes how"));
  EXPECT_THAT(app_env("SERVE_CLUSTER_TOKEN_FILE"),
              HasSubstr("SERVE_CLUSTER_TOKEN_FILE is set by the runtime itself"));
  EXPECT_THAT(app_env("SERVE_AGENT_ADDRESS"), HasSubstr("is set by the runtime itself"));
  EXPECT_THAT(app_env("SERVE_NODE_IP"), HasSubstr("is set by the runtime itself"));
  EXPECT_THAT(app_env("A=B"), HasSubstr("cannot have '=' or NUL in its name"));
  // Per deployment too.
  EXPECT_THAT(DeploymentError({{"ray_actor_options",
                                {{"runtime_env", {{"env_vars", {{"LD_PRELOAD", "/x.so"}}}}}}}}),
              HasSubstr(kD + "ray_actor_options.runtime_env.env_vars.LD_PRELOAD"));
  // Ordinary and tuning variables stay allowed.
  EXPECT_TRUE(ParseServeDeployConfig(App({{"runtime_env",
                                           {{"env_vars",
                                             {{"MODEL", "small"},
                                              {"SERVE_APP_PATH", "/srv"},
                                              {"RAY_SERVE_LOG_ENCODING", "JSON"}}}}}}))
                  .ok());
}

// Config text must be UTF-8 without control characters, as PyYAML requires (found by
// tests/fuzz/fuzz_config: such text did not survive YAML -> JSON -> YAML; with NULs yaml-cpp
// even read the file as UTF-32).
TEST(InputLimitsTextTest, NonUtf8AndControlCharactersAreRejectedWithTheirPlace) {
  EXPECT_THAT(ParseError(std::string("applications:\n- name: a\xff\n  import_path: m:a\n")),
              HasSubstr("line 2, column 10: unacceptable character (byte 0xff)"));
  EXPECT_THAT(ParseError(std::string("\x01\0\0\0import_path: m:a\n", 17)),
              HasSubstr("line 1, column 1: unacceptable character (byte 0x1)"));
  EXPECT_THAT(ParseError(std::string("import_path: m:a\x7f\n")), HasSubstr("column 17"));
  EXPECT_THAT(ParseError(std::string("import_path: \xed\xa0\x80\n")), HasSubstr("0xed"));  // surrogate
  EXPECT_THAT(ParseError(std::string("import_path: \xc0\xaf\n")), HasSubstr("0xc0"));  // overlong
  EXPECT_THAT(ParseError(std::string("import_path: \xef\xbf\xbe\n")), HasSubstr("0xef"));  // U+FFFE
  // Tabs, CR, U+0085 and characters beyond the BMP are fine.
  auto ok = ParseServeDeployConfig(std::string(
      "applications:\r\n- name: caf\xc3\xa9\xf0\x9f\x98\x80\r\n  import_path: m:a\t# \xc2\x85\r\n"));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->applications[0].name, "caf\xc3\xa9\xf0\x9f\x98\x80");
}

// YAML refuses implicit keys over 1024 characters: JsonToYaml writes long keys as explicit
// "? key" entries so that its output reads back; strings with control characters are quoted
// (both found by tests/fuzz/fuzz_config).
TEST(InputLimitsTextTest, LongKeysAndControlCharactersSurviveJsonToYamlAndBack) {
  json doc = {{std::string(2000, 'k'), 1}, {std::string(300, '\x01'), {{"x", "y"}}}, {"short", 2},
              // Control characters are quoted: a plain scalar loses a trailing CR.
              {"cr", "5\r"}, {"tab", "\ta\t"}, {"ctl", "x\x01"}};
  auto back = YamlToJson(JsonToYaml(doc));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, doc);
}

// yaml-cpp decodes the escapes \N and \_ to the single bytes 0x85 and 0xA0, which are not
// UTF-8; the reader re-encodes them (found by tests/fuzz/fuzz_config, corpus file
// regress-nbsp-escape: the value did not survive JsonToYaml and back).
TEST(InputLimitsTextTest, NelAndNbspEscapesReadAsUtf8) {
  auto doc = YamlToJson("\"k\\_\": \"a\\_b\\Nc \\u00e0\\_ \\uD7FF\\_\"\n");
  ASSERT_TRUE(doc.ok()) << doc.status();
  EXPECT_EQ(*doc, json({{"k\xc2\xa0", "a\xc2\xa0" "b\xc2\x85" "c \xc3\xa0\xc2\xa0 \xed\x9f\xbf\xc2\xa0"}}));
  auto back = YamlToJson(JsonToYaml(*doc));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, *doc);
}

// yaml-cpp writes DEL, U+2028 and U+2029 unescaped inside double quotes; JsonToYaml escapes
// them so that its text reads back. U+FFFE/U+FFFF, which yaml-cpp cannot write at all, are
// refused when read, escaped or not.
TEST(InputLimitsTextTest, DelAndLineSeparatorsSurviveJsonToYamlAndBack) {
  json doc = {{"x\x7f", "\x7f"}, {"ls", "a\xe2\x80\xa8" "b"}, {"ps", "\xe2\x80\xa9"},
              {"nel", "\xc2\x85"}, {"c1", "\xc2\x9f"}, {"nul", std::string("a\0b", 3)}};
  auto back = YamlToJson(JsonToYaml(doc));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, doc);
  auto refused = YamlToJson("a:\n  b: \"\\uFFFE\"\n");
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("a.b: an escape sequence gives a character a config may not hold"));
}

}  // namespace
}  // namespace serve::config
