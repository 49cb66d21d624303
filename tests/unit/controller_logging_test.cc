// logging_config in the controller: deployment > application > top-level precedence, the
// in-place (lightweight) update of running replicas, and the GLOBAL_LOGGING_CONFIG key proxies
// follow.

#include "common/ids.h"
#include "controller_test_base.h"

namespace serve::controller::testing {
namespace {

using Json = nlohmann::json;

const Json kCode = {{"name", "D"}, {"num_replicas", 2}};

Json Doc(Json top, Json app, Json deployment) {
  Json a = {{"name", "app"}, {"route_prefix", "/"}, {"import_path", "m:app"}};
  if (!app.is_null()) a["logging_config"] = app;
  Json d = {{"name", "D"}};
  if (!deployment.is_null()) d["logging_config"] = deployment;
  a["deployments"] = Json::array({d});
  Json doc = {{"applications", Json::array({a})}};
  if (!top.is_null()) doc["logging_config"] = top;
  return doc;
}

TEST_F(ControllerTest, LoggingConfigResolvesDeploymentThenApplicationThenTopLevel) {
  Json top = {{"encoding", "JSON"}, {"logs_dir", "/top"}};
  ASSERT_TRUE(DeployDoc({kCode}, Doc(top, nullptr, nullptr)).ok());
  Json lc = *Dep().spec.cfg.logging_config;
  EXPECT_EQ(lc["encoding"], "JSON");
  EXPECT_EQ(lc["logs_dir"], "/top");
  ASSERT_TRUE(DeployDoc({kCode}, Doc(top, {{"log_level", "DEBUG"}}, nullptr)).ok());
  lc = *Dep().spec.cfg.logging_config;
  EXPECT_EQ(lc["log_level"], "DEBUG");
  EXPECT_EQ(lc["encoding"], "TEXT");  // the application's config, whole, over the defaults
  ASSERT_TRUE(DeployDoc({kCode}, Doc(top, {{"log_level", "DEBUG"}},
                                     {{"enable_access_log", false}}))
                  .ok());
  lc = *Dep().spec.cfg.logging_config;
  EXPECT_EQ(lc["enable_access_log"], false);
  EXPECT_EQ(lc["log_level"], "INFO");
}

TEST_F(ControllerTest, LoggingOnlyChangeReconfiguresReplicasInPlace) {
  ASSERT_TRUE(DeployDoc({kCode}, Doc(nullptr, nullptr, nullptr)).ok());
  Settle();
  size_t starts = agent_.StartedTags("replica:").size();
  replicas_.reconfigure_requests.clear();
  ASSERT_TRUE(DeployDoc({kCode}, Doc(nullptr, nullptr,
                                     {{"log_level", "DEBUG"}, {"encoding", "JSON"}}))
                  .ok());
  ASSERT_EQ(replicas_.reconfigure_requests.size(), 2u);
  for (const auto& req : replicas_.reconfigure_requests) {
    Json lc = Json::parse(req.logging_config_json());
    EXPECT_EQ(lc["log_level"], "DEBUG");
    EXPECT_EQ(lc["encoding"], "JSON");
    EXPECT_FALSE(req.has_user_config());
  }
  replicas_.AnswerReconfigure(absl::OkStatus());
  loop_->Step();
  EXPECT_EQ(agent_.StartedTags("replica:").size(), starts);  // same processes
  EXPECT_EQ(Dep().status.status, DeploymentStatus::kHealthy);
}

TEST_F(ControllerTest, TopLevelLoggingConfigIsPublishedForProxies) {
  ASSERT_TRUE(DeployDoc({kCode}, Doc({{"log_level", "WARNING"}}, nullptr, nullptr)).ok());
  std::string published;
  loop_->Listen({{std::string(kGlobalLoggingConfigKey), -1}},
                [&](std::vector<v1::Update> updates, bool) {
                  for (auto& u : updates) published = u.logging_config_json();
                });
  loop_->Step();
  ASSERT_FALSE(published.empty());
  EXPECT_EQ(Json::parse(published)["log_level"], "WARNING");
}

}  // namespace
}  // namespace serve::controller::testing
