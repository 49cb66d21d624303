// Unit tests of the `serve status` YAML formatter (spec §3.5). Output is parsed back with
// yaml-cpp to check structure; a few textual details Ray users rely on are checked on the text.

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "cli/status_format.h"

namespace serve::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using json = nlohmann::json;

std::vector<std::string> Keys(const YAML::Node& map) {
  std::vector<std::string> keys;
  for (const auto& kv : map) keys.push_back(kv.first.as<std::string>());
  return keys;
}

std::string TrimRight(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

json SampleDetails() {
  return json{
      {"deploy_mode", "MULTI_APP"},
      {"proxies",
       {{"node-1", {{"node_id", "node-1"}, {"status", "HEALTHY"}}},
        {"node-2", {{"node_id", "node-2"}, {"status", "DRAINING"}}}}},
      {"applications",
       {{"app1",
         {{"name", "app1"},
          {"route_prefix", "/"},
          {"status", "RUNNING"},
          {"message", ""},
          {"last_deployed_time_s", 1700000000.5},
          {"deployments",
           {{"Ingress",
             {{"name", "Ingress"},
              {"status", "HEALTHY"},
              {"status_trigger", "CONFIG_UPDATE_COMPLETED"},
              {"message", ""},
              {"replicas",
               {{{"replica_id", "r1"}, {"state", "RUNNING"}},
                {{"replica_id", "r2"}, {"state", "STARTING"}},
                {{"replica_id", "r3"}, {"state", "RUNNING"}}}}}}}}}},
        {"broken",
         {{"name", "broken"},
          {"status", "DEPLOY_FAILED"},
          {"message", "Traceback (most recent call last):\n  File x\nValueError: bad"},
          {"last_deployed_time_s", 1700000001.25},
          {"deployments",
           {{"Worker",
             {{"status", "UNHEALTHY"},
              {"status_trigger", "HEALTH_CHECK_FAILED"},
              {"message", "\x1b[31mreplica died\x1b[0m"},
              {"replicas", json::array()}}}}}}}}},
      {"target_capacity", nullptr}};
}

TEST(FormatStatusTest, TopLevelKeysInRayOrder) {
  std::string out = FormatStatus(SampleDetails());
  YAML::Node doc = YAML::Load(out);
  ASSERT_TRUE(doc.IsMap()) << out;
  EXPECT_EQ(Keys(doc), (std::vector<std::string>{"proxies", "applications", "target_capacity"}))
      << out;
  EXPECT_THAT(out, StartsWith("proxies:"));
}

TEST(FormatStatusTest, NodesListedOnlyWhenWorkersJoined) {
  json details = SampleDetails();
  details["nodes"] = {{"head", {{"node_ip", "10.0.0.1"}, {"state", "ALIVE"}, {"is_head_node", true}}}};
  EXPECT_FALSE(YAML::Load(FormatStatus(details))["nodes"]);
  details["nodes"]["w1"] = {{"node_ip", "10.0.0.2"}, {"state", "DEAD"}, {"is_head_node", false}};
  YAML::Node doc = YAML::Load(FormatStatus(details));
  EXPECT_EQ(Keys(doc), (std::vector<std::string>{"proxies", "applications", "target_capacity",
                                                 "nodes"}));
  EXPECT_EQ(doc["nodes"]["w1"]["node_ip"].as<std::string>(), "10.0.0.2");
  EXPECT_EQ(doc["nodes"]["w1"]["state"].as<std::string>(), "DEAD");
  EXPECT_TRUE(doc["nodes"]["head"]["is_head_node"].as<bool>());
}

TEST(FormatStatusTest, ProxiesMapNodeToStatus) {
  YAML::Node doc = YAML::Load(FormatStatus(SampleDetails()));
  ASSERT_TRUE(doc["proxies"].IsMap());
  EXPECT_EQ(doc["proxies"].size(), 2u);
  EXPECT_EQ(doc["proxies"]["node-1"].as<std::string>(), "HEALTHY");
  EXPECT_EQ(doc["proxies"]["node-2"].as<std::string>(), "DRAINING");
}

TEST(FormatStatusTest, ApplicationAndDeploymentFields) {
  std::string out = FormatStatus(SampleDetails());
  YAML::Node app = YAML::Load(out)["applications"]["app1"];
  ASSERT_TRUE(app.IsMap()) << out;
  EXPECT_EQ(Keys(app), (std::vector<std::string>{"status", "message", "last_deployed_time_s",
                                                 "deployments"}));
  EXPECT_EQ(app["status"].as<std::string>(), "RUNNING");
  EXPECT_EQ(app["message"].as<std::string>(), "");
  EXPECT_DOUBLE_EQ(app["last_deployed_time_s"].as<double>(), 1700000000.5);

  YAML::Node dep = app["deployments"]["Ingress"];
  ASSERT_TRUE(dep.IsMap()) << out;
  EXPECT_EQ(Keys(dep),
            (std::vector<std::string>{"status", "status_trigger", "replica_states", "message"}));
  EXPECT_EQ(dep["status"].as<std::string>(), "HEALTHY");
  EXPECT_EQ(dep["status_trigger"].as<std::string>(), "CONFIG_UPDATE_COMPLETED");
  EXPECT_EQ(dep["message"].as<std::string>(), "");
}

TEST(FormatStatusTest, ReplicaStatesCountedByState) {
  std::string out = FormatStatus(SampleDetails());
  YAML::Node doc = YAML::Load(out);
  YAML::Node states = doc["applications"]["app1"]["deployments"]["Ingress"]["replica_states"];
  ASSERT_TRUE(states.IsMap()) << out;
  EXPECT_EQ(states.size(), 2u);
  EXPECT_EQ(states["RUNNING"].as<int>(), 2);
  EXPECT_EQ(states["STARTING"].as<int>(), 1);
  YAML::Node none = doc["applications"]["broken"]["deployments"]["Worker"]["replica_states"];
  ASSERT_TRUE(none.IsMap()) << out;
  EXPECT_EQ(none.size(), 0u);
}

TEST(FormatStatusTest, EmptyMessageIsSingleQuoted) {
  std::string out = FormatStatus(SampleDetails());
  EXPECT_THAT(out, HasSubstr("message: ''"));
}

TEST(FormatStatusTest, MultiLineMessageIsLiteralBlock) {
  std::string out = FormatStatus(SampleDetails());
  EXPECT_THAT(out, HasSubstr("message: |"));
  YAML::Node app = YAML::Load(out)["applications"]["broken"];
  EXPECT_EQ(app["status"].as<std::string>(), "DEPLOY_FAILED");
  EXPECT_THAT(app["message"].as<std::string>(),
              StartsWith("Traceback (most recent call last):\n  File x\nValueError: bad"));
}

// The message read back from the YAML is exactly the original one: a message without a trailing
// newline needs the strip indicator (`|-`, as PyYAML emits for Ray), otherwise readers get an
// extra "\n".
TEST(FormatStatusTest, MultiLineMessageRoundTripsExactly) {
  std::string out = FormatStatus(SampleDetails());
  YAML::Node app = YAML::Load(out)["applications"]["broken"];
  EXPECT_EQ(app["message"].as<std::string>(),
            "Traceback (most recent call last):\n  File x\nValueError: bad")
      << out;
  // Trailing newlines are not part of the printed message.
  json details = SampleDetails();
  details["applications"]["broken"]["message"] = "line 1\nline 2\n";
  app = YAML::Load(FormatStatus(details))["applications"]["broken"];
  EXPECT_EQ(app["message"].as<std::string>(), "line 1\nline 2");
}

TEST(FormatStatusTest, AnsiEscapesAreStripped) {
  std::string out = FormatStatus(SampleDetails());
  EXPECT_EQ(out.find('\x1b'), std::string::npos);
  YAML::Node dep = YAML::Load(out)["applications"]["broken"]["deployments"]["Worker"];
  EXPECT_EQ(dep["message"].as<std::string>(), "replica died");
}

TEST(FormatStatusTest, NullTargetCapacityPrintedAsNull) {
  std::string out = FormatStatus(SampleDetails());
  EXPECT_TRUE(YAML::Load(out)["target_capacity"].IsNull()) << out;
  // Ray (PyYAML) prints `target_capacity: null`.
  EXPECT_THAT(out, HasSubstr("target_capacity: null")) << out;
}

TEST(FormatStatusTest, NumericTargetCapacity) {
  json details = SampleDetails();
  details["target_capacity"] = 50.0;
  YAML::Node doc = YAML::Load(FormatStatus(details));
  EXPECT_DOUBLE_EQ(doc["target_capacity"].as<double>(), 50.0);
}

TEST(FormatStatusTest, EmptyDetails) {
  json details = {{"deploy_mode", "MULTI_APP"},
                  {"controller_info", json::object()},
                  {"proxies", json::object()},
                  {"applications", json::object()},
                  {"target_capacity", nullptr}};
  std::string out = FormatStatus(details);
  YAML::Node doc = YAML::Load(out);
  ASSERT_TRUE(doc.IsMap()) << out;
  EXPECT_EQ(Keys(doc), (std::vector<std::string>{"proxies", "applications", "target_capacity"}));
  EXPECT_TRUE(doc["proxies"].IsMap());
  EXPECT_EQ(doc["proxies"].size(), 0u);
  EXPECT_TRUE(doc["applications"].IsMap());
  EXPECT_EQ(doc["applications"].size(), 0u);
  EXPECT_TRUE(doc["target_capacity"].IsNull());
}

TEST(FormatStatusTest, UnknownAppName) {
  EXPECT_EQ(TrimRight(FormatStatus(SampleDetails(), "x")), "Application \"x\" does not exist.");
}

TEST(FormatStatusTest, KnownAppNamePrintsOnlyThatApp) {
  std::string out = FormatStatus(SampleDetails(), "app1");
  EXPECT_THAT(out, StartsWith("status:"));
  YAML::Node doc = YAML::Load(out);
  ASSERT_TRUE(doc.IsMap()) << out;
  EXPECT_EQ(Keys(doc), (std::vector<std::string>{"status", "message", "last_deployed_time_s",
                                                 "deployments"}));
  EXPECT_EQ(doc["status"].as<std::string>(), "RUNNING");
  EXPECT_EQ(Keys(doc["deployments"]), (std::vector<std::string>{"Ingress"}));
  EXPECT_EQ(doc["deployments"]["Ingress"]["replica_states"]["RUNNING"].as<int>(), 2);
  EXPECT_EQ(out.find("proxies"), std::string::npos);
  EXPECT_EQ(out.find("broken"), std::string::npos);
}

TEST(FormatStatusTest, ProxyMessageIsACommentNextToItsStatus) {
  json details = {{"applications", json::object()}, {"target_capacity", nullptr}};
  details["proxies"]["node-1"] = {{"status", "UNHEALTHY"},
                                  {"message", "The HTTP proxy failed to start: Cannot listen on "
                                              "127.0.0.1:8000: Address already in use."}};
  details["proxies"]["node-2"] = {{"status", "HEALTHY"}, {"message", "ignored"}};
  std::string out = FormatStatus(details);
  EXPECT_THAT(out, HasSubstr("node-1: UNHEALTHY  # The HTTP proxy failed to start: Cannot "
                             "listen on 127.0.0.1:8000: Address already in use.\n"));
  EXPECT_THAT(out, HasSubstr("node-2: HEALTHY\n"));
  YAML::Node doc = YAML::Load(out);  // still Ray's shape: node -> status
  EXPECT_EQ(doc["proxies"]["node-1"].as<std::string>(), "UNHEALTHY");
  EXPECT_EQ(Keys(doc), (std::vector<std::string>{"proxies", "applications", "target_capacity"}));
}

}  // namespace
}  // namespace serve::cli
