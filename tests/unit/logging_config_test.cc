// logging_config outside a document: validation of code-given values, the default encoding
// from the environment, and the deployment > application > top-level precedence.

#include <cstdlib>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "config/deployment_config.h"
#include "config/logging_config.h"

namespace serve::config {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

std::string Error(const json& lc) {
  auto r = ValidateLoggingConfig(lc);
  return r.ok() ? "ok" : std::string(r.status().message());
}

TEST(LoggingConfigTest, InvalidValuesNameTheFieldAndReason) {
  EXPECT_THAT(Error({{"encoding", "XML"}}),
              HasSubstr("logging_config.encoding: must be one of TEXT, JSON (got \"XML\")"));
  EXPECT_THAT(Error({{"log_level", "LOUD"}}),
              HasSubstr("logging_config.log_level: must be one of DEBUG, INFO"));
  EXPECT_THAT(Error({{"log_level", 15}}), HasSubstr("logging_config.log_level"));
  EXPECT_THAT(Error({{"logs_dir", 3}}), HasSubstr("logging_config.logs_dir: must be a string"));
  EXPECT_THAT(Error({{"enable_access_log", "no"}}),
              HasSubstr("logging_config.enable_access_log: must be a boolean"));
  EXPECT_THAT(Error({{"additional_log_standard_attrs", {"name", "colour"}}}),
              HasSubstr("logging_config.additional_log_standard_attrs[1]: unknown attribute "
                        "\"colour\""));
  EXPECT_THAT(Error({{"format", "x"}}), HasSubstr("unknown logging_config field \"format\""));
}

TEST(LoggingConfigTest, NormalizesAndFillsDefaults) {
  auto r = ValidateLoggingConfig({{"log_level", 10},
                                  {"additional_log_standard_attrs", {"name", "name", "lineno"}}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, (json{{"encoding", "TEXT"},
                      {"log_level", "DEBUG"},
                      {"logs_dir", nullptr},
                      {"enable_access_log", true},
                      {"additional_log_standard_attrs", {"name", "lineno"}}}));
}

TEST(LoggingConfigTest, DefaultEncodingFollowsTheEnvironment) {
  ::setenv("RAY_SERVE_LOG_ENCODING", "JSON", 1);
  EXPECT_EQ(DefaultLoggingConfig()["encoding"], "JSON");
  EXPECT_EQ(ResolveLoggingConfig(std::nullopt, std::nullopt, std::nullopt)["encoding"], "JSON");
  ::unsetenv("RAY_SERVE_LOG_ENCODING");
  EXPECT_EQ(DefaultLoggingConfig()["encoding"], "TEXT");
  ::setenv("RAY_SERVE_ENABLE_JSON_LOGGING", "1", 1);
  EXPECT_EQ(DefaultLoggingConfig()["encoding"], "JSON");
  ::unsetenv("RAY_SERVE_ENABLE_JSON_LOGGING");
}

TEST(LoggingConfigTest, DeploymentOverridesApplicationOverridesTopLevel) {
  json global = {{"encoding", "JSON"}, {"logs_dir", "/g"}};
  json app = {{"log_level", "DEBUG"}};
  json dep = {{"enable_access_log", false}};
  json r = ResolveLoggingConfig(dep, app, global);
  // The most specific level wins whole; its unset fields take the defaults.
  EXPECT_EQ(r["enable_access_log"], false);
  EXPECT_EQ(r["log_level"], "INFO");
  EXPECT_EQ(r["encoding"], "TEXT");
  EXPECT_TRUE(r["logs_dir"].is_null());
  r = ResolveLoggingConfig(std::nullopt, app, global);
  EXPECT_EQ(r["log_level"], "DEBUG");
  EXPECT_EQ(r["encoding"], "TEXT");
  r = ResolveLoggingConfig(std::nullopt, std::nullopt, global);
  EXPECT_EQ(r["encoding"], "JSON");
  EXPECT_EQ(r["logs_dir"], "/g");
  EXPECT_EQ(r["enable_access_log"], true);
  EXPECT_EQ(ResolveLoggingConfig(std::nullopt, std::nullopt, std::nullopt),
            DefaultLoggingConfig());
}

TEST(LoggingConfigTest, CodeGivenLoggingConfigIsValidated) {
  auto bad = ResolveDeploymentConfig({{"name", "D"}, {"logging_config", {{"encoding", "XML"}}}});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("logging_config.encoding: must be one of TEXT, JSON"));
  auto ok = ResolveDeploymentConfig({{"name", "D"}, {"logging_config", {{"log_level", 40}}}});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok->logging_config, (json{{"log_level", "ERROR"}}));
}

}  // namespace
}  // namespace serve::config
