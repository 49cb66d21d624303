// Unit tests of the resolved autoscaling config (ResolveDeploymentConfig, ToJson), the
// scaling-mode rules of MergeDeploymentOptions, and ApplyTargetCapacity.

#include <optional>
#include <ostream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "config/deployment_config.h"
#include "config/schema.h"

namespace serve::config {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

// ---- Autoscaling config -------------------------------------------------------------------

absl::StatusOr<AutoscalingConfig> ResolveAutoscaling(json options) {
  options["name"] = "D";
  auto c = ResolveDeploymentConfig(options);
  if (!c.ok()) return c.status();
  if (!c->autoscaling_config) return absl::NotFoundError("no autoscaling_config");
  return *c->autoscaling_config;
}

TEST(AutoscalingConfigTest, NotAutoscalingByDefault) {
  for (const json& o : {json{{"name", "D"}}, json{{"name", "D"}, {"autoscaling_config", nullptr}},
                        json{{"name", "D"}, {"num_replicas", nullptr}}}) {
    auto c = ResolveDeploymentConfig(o);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_FALSE(c->autoscaling_config.has_value()) << o.dump();
  }
}

TEST(AutoscalingConfigTest, EmptyMappingGivesSeedDefaults) {
  auto a = ResolveAutoscaling({{"autoscaling_config", json::object()}});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->min_replicas, 1);
  EXPECT_EQ(a->max_replicas, 1);
  EXPECT_FALSE(a->initial_replicas.has_value());
  EXPECT_EQ(a->target_ongoing_requests, 1.0);
  EXPECT_EQ(a->metrics_interval_s, 10.0);
  EXPECT_EQ(a->look_back_period_s, 30.0);
  EXPECT_EQ(a->upscale_delay_s, 30.0);
  EXPECT_EQ(a->downscale_delay_s, 600.0);
  EXPECT_FALSE(a->downscale_to_zero_delay_s.has_value());
  EXPECT_EQ(a->smoothing_factor, 1.0);
  EXPECT_FALSE(a->upscale_smoothing_factor.has_value());
  EXPECT_FALSE(a->downscale_smoothing_factor.has_value());
  EXPECT_FALSE(a->upscaling_factor.has_value());
  EXPECT_FALSE(a->downscaling_factor.has_value());
  EXPECT_EQ(a->aggregation_function, "mean");
  EXPECT_EQ(a->policy, "");
  EXPECT_EQ(a->UpscalingFactor(), 1.0);
  EXPECT_EQ(a->DownscalingFactor(), 1.0);
}

TEST(AutoscalingConfigTest, EveryField) {
  json as = {{"min_replicas", 0},
             {"initial_replicas", 2},
             {"max_replicas", 8},
             {"target_ongoing_requests", 3.5},
             {"metrics_interval_s", 2},
             {"look_back_period_s", 7.5},
             {"upscale_delay_s", 0},
             {"downscale_delay_s", 45},
             {"downscale_to_zero_delay_s", 90},
             {"smoothing_factor", 0.8},
             {"upscale_smoothing_factor", 0.7},
             {"downscale_smoothing_factor", 0.6},
             {"upscaling_factor", 1.5},
             {"downscaling_factor", 0.5},
             {"aggregation_function", "max"},
             {"policy", "mylib:my_policy"},
             {"some_future_field", 1}};
  auto a = ResolveAutoscaling({{"autoscaling_config", as}});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->min_replicas, 0);
  EXPECT_EQ(a->initial_replicas, 2);
  EXPECT_EQ(a->max_replicas, 8);
  EXPECT_EQ(a->target_ongoing_requests, 3.5);
  EXPECT_EQ(a->metrics_interval_s, 2.0);
  EXPECT_EQ(a->look_back_period_s, 7.5);
  EXPECT_EQ(a->upscale_delay_s, 0.0);
  EXPECT_EQ(a->downscale_delay_s, 45.0);
  EXPECT_EQ(a->downscale_to_zero_delay_s, 90.0);
  EXPECT_EQ(a->smoothing_factor, 0.8);
  EXPECT_EQ(a->upscale_smoothing_factor, 0.7);
  EXPECT_EQ(a->downscale_smoothing_factor, 0.6);
  EXPECT_EQ(a->upscaling_factor, 1.5);
  EXPECT_EQ(a->downscaling_factor, 0.5);
  EXPECT_EQ(a->aggregation_function, "max");
  EXPECT_EQ(a->policy, "mylib:my_policy");
  EXPECT_EQ(a->UpscalingFactor(), 1.5);
  EXPECT_EQ(a->DownscalingFactor(), 0.5);
}

TEST(AutoscalingConfigTest, FactorFallbacks) {
  AutoscalingConfig a;
  a.smoothing_factor = 0.9;
  EXPECT_EQ(a.UpscalingFactor(), 0.9);
  EXPECT_EQ(a.DownscalingFactor(), 0.9);
  a.upscale_smoothing_factor = 0.4;
  a.downscale_smoothing_factor = 0.3;
  EXPECT_EQ(a.UpscalingFactor(), 0.4);
  EXPECT_EQ(a.DownscalingFactor(), 0.3);
  a.upscaling_factor = 2;
  a.downscaling_factor = 0.2;
  EXPECT_EQ(a.UpscalingFactor(), 2.0);
  EXPECT_EQ(a.DownscalingFactor(), 0.2);
}

TEST(AutoscalingConfigTest, NullFieldsKeepDefaults) {
  auto a = ResolveAutoscaling({{"autoscaling_config",
                                {{"initial_replicas", nullptr},
                                 {"upscaling_factor", nullptr},
                                 {"downscale_to_zero_delay_s", nullptr},
                                 {"aggregation_function", nullptr},
                                 {"policy", nullptr}}}});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_FALSE(a->initial_replicas.has_value());
  EXPECT_FALSE(a->upscaling_factor.has_value());
  EXPECT_EQ(a->aggregation_function, "mean");
  EXPECT_EQ(a->policy, "");
}

TEST(AutoscalingConfigTest, PolicyForms) {
  auto named =
      ResolveAutoscaling({{"autoscaling_config", {{"policy", {{"policy_function", "m:p"}}}}}});
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(named->policy, "m:p");
  for (const char* d : {"ray.serve.autoscaling_policy:default_autoscaling_policy",
                        "ray.serve.autoscaling_policy.default_autoscaling_policy"}) {
    auto a = ResolveAutoscaling({{"autoscaling_config", {{"policy", d}}}});
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->policy, "") << d;
  }
}

TEST(AutoscalingConfigTest, DeprecatedAliases) {
  auto a = ResolveAutoscaling(
      {{"autoscaling_config", {{"target_num_ongoing_requests_per_replica", 4}}}});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->target_ongoing_requests, 4.0);
  // The new name wins when both are given.
  a = ResolveAutoscaling(
      {{"autoscaling_config",
        {{"target_num_ongoing_requests_per_replica", 4}, {"target_ongoing_requests", 6}}}});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->target_ongoing_requests, 6.0);
  auto c = ResolveDeploymentConfig({{"name", "D"}, {"max_concurrent_queries", 9}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->max_ongoing_requests, 9);
  c = ResolveDeploymentConfig(
      {{"name", "D"}, {"max_concurrent_queries", 9}, {"max_ongoing_requests", 3}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->max_ongoing_requests, 3);
}

TEST(AutoscalingConfigTest, AliasErrorNamesTheKeyAsWritten) {
  auto a = ResolveAutoscaling(
      {{"autoscaling_config", {{"target_num_ongoing_requests_per_replica", 0}}}});
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(std::string(a.status().message()),
              HasSubstr("'autoscaling_config.target_num_ongoing_requests_per_replica'"));
}

TEST(AutoscalingConfigTest, AutoExpandsToSeedDefaults) {
  auto c = ResolveDeploymentConfig({{"name", "D"}, {"num_replicas", "auto"}});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->autoscaling_config.has_value());
  EXPECT_EQ(c->autoscaling_config->min_replicas, 1);
  EXPECT_EQ(c->autoscaling_config->max_replicas, 100);
  EXPECT_EQ(c->autoscaling_config->target_ongoing_requests, 2.0);
  EXPECT_EQ(c->autoscaling_config->upscale_delay_s, 30.0);
  EXPECT_EQ(c->autoscaling_config->downscale_delay_s, 600.0);
  EXPECT_EQ(c->max_ongoing_requests, 5);
}

TEST(AutoscalingConfigTest, AutoWithUserFieldsOnTop) {
  auto c = ResolveDeploymentConfig(
      {{"name", "D"},
       {"num_replicas", "auto"},
       {"max_ongoing_requests", 8},
       {"autoscaling_config",
        {{"max_replicas", 10}, {"target_num_ongoing_requests_per_replica", 3}}}});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->autoscaling_config.has_value());
  EXPECT_EQ(c->autoscaling_config->min_replicas, 1);
  EXPECT_EQ(c->autoscaling_config->max_replicas, 10);
  EXPECT_EQ(c->autoscaling_config->target_ongoing_requests, 3.0);
  EXPECT_EQ(c->max_ongoing_requests, 8);
  c = ResolveDeploymentConfig(
      {{"name", "D"}, {"num_replicas", "auto"}, {"max_concurrent_queries", 7}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->max_ongoing_requests, 7);
}

TEST(AutoscalingConfigTest, AutoBoundsAreValidated) {
  auto c = ResolveDeploymentConfig(
      {{"name", "D"}, {"num_replicas", "auto"}, {"autoscaling_config", {{"min_replicas", 200}}}});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("deployment option 'autoscaling_config.max_replicas'"));
}

TEST(AutoscalingConfigTest, IntegerNumReplicasWithAutoscalingIsAnError) {
  auto c = ResolveDeploymentConfig(
      {{"name", "D"}, {"num_replicas", 2}, {"autoscaling_config", {{"max_replicas", 3}}}});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("deployment option 'num_replicas': manually setting num_replicas is not "
                        "allowed when autoscaling_config is provided"));
  // null num_replicas, or a null autoscaling_config, is fine.
  EXPECT_TRUE(
      ResolveDeploymentConfig(
          {{"name", "D"}, {"num_replicas", nullptr}, {"autoscaling_config", {{"max_replicas", 3}}}})
          .ok());
  EXPECT_TRUE(
      ResolveDeploymentConfig({{"name", "D"}, {"num_replicas", 2}, {"autoscaling_config", nullptr}})
          .ok());
}

struct BadAutoscalingCase {
  json autoscaling_config;
  const char* field;  ///< expected in the message as 'autoscaling_config.<field>'
};

void PrintTo(const BadAutoscalingCase& c, std::ostream* os) { *os << c.autoscaling_config.dump(); }

class AutoscalingConfigErrorTest : public ::testing::TestWithParam<BadAutoscalingCase> {};

TEST_P(AutoscalingConfigErrorTest, NamesTheField) {
  const BadAutoscalingCase& bad = GetParam();
  auto c = ResolveDeploymentConfig({{"name", "D"}, {"autoscaling_config", bad.autoscaling_config}});
  ASSERT_FALSE(c.ok()) << bad.autoscaling_config.dump() << " was accepted";
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr(std::string("deployment option 'autoscaling_config.") + bad.field + "'"));
}

INSTANTIATE_TEST_SUITE_P(
    BadValues, AutoscalingConfigErrorTest,
    ::testing::Values(
        BadAutoscalingCase{{{"min_replicas", -1}}, "min_replicas"},
        BadAutoscalingCase{{{"min_replicas", 1.5}}, "min_replicas"},
        BadAutoscalingCase{{{"max_replicas", 0}}, "max_replicas"},
        BadAutoscalingCase{{{"max_replicas", "3"}}, "max_replicas"},
        BadAutoscalingCase{{{"min_replicas", 3}, {"max_replicas", 2}}, "max_replicas"},
        BadAutoscalingCase{{{"min_replicas", 3}}, "min_replicas"},
        BadAutoscalingCase{{{"min_replicas", 2}, {"max_replicas", 5}, {"initial_replicas", 1}},
                           "initial_replicas"},
        BadAutoscalingCase{{{"min_replicas", 2}, {"max_replicas", 5}, {"initial_replicas", 6}},
                           "initial_replicas"},
        BadAutoscalingCase{{{"target_ongoing_requests", 0}}, "target_ongoing_requests"},
        BadAutoscalingCase{{{"target_ongoing_requests", "2"}}, "target_ongoing_requests"},
        BadAutoscalingCase{{{"metrics_interval_s", 0}}, "metrics_interval_s"},
        BadAutoscalingCase{{{"look_back_period_s", -1}}, "look_back_period_s"},
        BadAutoscalingCase{{{"smoothing_factor", 0}}, "smoothing_factor"},
        BadAutoscalingCase{{{"upscale_smoothing_factor", 0}}, "upscale_smoothing_factor"},
        BadAutoscalingCase{{{"downscale_smoothing_factor", -1}}, "downscale_smoothing_factor"},
        BadAutoscalingCase{{{"upscaling_factor", 0}}, "upscaling_factor"},
        BadAutoscalingCase{{{"downscaling_factor", -0.5}}, "downscaling_factor"},
        BadAutoscalingCase{{{"upscale_delay_s", -1}}, "upscale_delay_s"},
        BadAutoscalingCase{{{"downscale_delay_s", -1}}, "downscale_delay_s"},
        BadAutoscalingCase{{{"downscale_to_zero_delay_s", -1}}, "downscale_to_zero_delay_s"},
        BadAutoscalingCase{{{"aggregation_function", "median"}}, "aggregation_function"},
        BadAutoscalingCase{{{"aggregation_function", 1}}, "aggregation_function"},
        BadAutoscalingCase{{{"policy", 5}}, "policy"}),
    [](const ::testing::TestParamInfo<BadAutoscalingCase>& info) {
      return std::string(info.param.field) + "_" + std::to_string(info.index);
    });

TEST(AutoscalingConfigTest, NonMappingIsAnError) {
  auto c = ResolveDeploymentConfig({{"name", "D"}, {"autoscaling_config", 5}});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("'autoscaling_config'"));
  c = ResolveDeploymentConfig({{"name", "D"}, {"num_replicas", "many"}});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("'num_replicas'"));
}

TEST(AutoscalingConfigTest, ToJsonEmitsEveryFieldAndNoNumReplicas) {
  auto c = ResolveDeploymentConfig({{"name", "D"},
                                    {"autoscaling_config",
                                     {{"min_replicas", 0},
                                      {"max_replicas", 4},
                                      {"upscaling_factor", 2},
                                      {"aggregation_function", "min"}}}});
  ASSERT_TRUE(c.ok()) << c.status();
  json j = ToJson(*c);
  EXPECT_FALSE(j.contains("num_replicas"));
  ASSERT_TRUE(j.contains("autoscaling_config"));
  EXPECT_EQ(j["autoscaling_config"], (json{{"min_replicas", 0},
                                           {"initial_replicas", nullptr},
                                           {"max_replicas", 4},
                                           {"target_ongoing_requests", 1.0},
                                           {"metrics_interval_s", 10.0},
                                           {"look_back_period_s", 30.0},
                                           {"smoothing_factor", 1.0},
                                           {"upscale_smoothing_factor", nullptr},
                                           {"downscale_smoothing_factor", nullptr},
                                           {"upscaling_factor", 2.0},
                                           {"downscaling_factor", nullptr},
                                           {"upscale_delay_s", 30.0},
                                           {"downscale_delay_s", 600.0},
                                           {"downscale_to_zero_delay_s", nullptr},
                                           {"aggregation_function", "min"},
                                           {"policy", nullptr}}));
  // The view resolves back to the same config.
  auto again = ResolveDeploymentConfig(j);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(ToJson(*again), j);
}

TEST(AutoscalingConfigTest, ToJsonWithoutAutoscalingHasNumReplicasOnly) {
  auto c = ResolveDeploymentConfig({{"name", "D"}, {"num_replicas", 3}});
  ASSERT_TRUE(c.ok()) << c.status();
  json j = ToJson(*c);
  EXPECT_EQ(j.at("num_replicas"), 3);
  EXPECT_FALSE(j.contains("autoscaling_config"));
}

TEST(AutoscalingConfigTest, ToJsonRoundTripsAuto) {
  auto c = ResolveDeploymentConfig({{"name", "D"}, {"num_replicas", "auto"}});
  ASSERT_TRUE(c.ok()) << c.status();
  auto again = ResolveDeploymentConfig(ToJson(*c));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(ToJson(*again), ToJson(*c));
  EXPECT_EQ(again->max_ongoing_requests, 5);
}

TEST(AutoscalingConfigTest, ToJsonViewPassesTheSchema) {
  auto c = ResolveDeploymentConfig({{"name", "D"}, {"num_replicas", "auto"}});
  ASSERT_TRUE(c.ok()) << c.status();
  auto parsed = ParseServeDeployConfig(
      json{{"applications", {{{"import_path", "m:app"}, {"deployments", {ToJson(*c)}}}}}});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  auto again = ResolveDeploymentConfig(parsed->applications[0].deployments[0].fields);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(ToJson(*again), ToJson(*c));
}

// ---- MergeDeploymentOptions: the scaling mode --------------------------------------------

TEST(MergeScalingModeTest, FileIntegerNumReplicasDropsCodeAutoscaling) {
  json merged =
      MergeDeploymentOptions({{"name", "D"}, {"autoscaling_config", {{"max_replicas", 5}}}},
                             {{"name", "D"}, {"num_replicas", 3}});
  EXPECT_FALSE(merged.contains("autoscaling_config"));
  auto c = ResolveDeploymentConfig(merged);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_replicas, 3);
  EXPECT_FALSE(c->autoscaling_config.has_value());
}

TEST(MergeScalingModeTest, FileIntegerNumReplicasReplacesCodeAuto) {
  json merged = MergeDeploymentOptions({{"name", "D"}, {"num_replicas", "auto"}},
                                       {{"name", "D"}, {"num_replicas", 4}});
  auto c = ResolveDeploymentConfig(merged);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_replicas, 4);
  EXPECT_FALSE(c->autoscaling_config.has_value());
}

TEST(MergeScalingModeTest, FileAutoscalingDropsCodeIntegerNumReplicas) {
  json merged =
      MergeDeploymentOptions({{"name", "D"}, {"num_replicas", 2}},
                             {{"name", "D"}, {"autoscaling_config", {{"max_replicas", 6}}}});
  EXPECT_FALSE(merged.contains("num_replicas"));
  auto c = ResolveDeploymentConfig(merged);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->autoscaling_config.has_value());
  EXPECT_EQ(c->autoscaling_config->max_replicas, 6);
}

TEST(MergeScalingModeTest, FileNullAutoscalingKeepsCodeNumReplicas) {
  json merged = MergeDeploymentOptions({{"name", "D"}, {"num_replicas", 2}},
                                       {{"name", "D"}, {"autoscaling_config", nullptr}});
  auto c = ResolveDeploymentConfig(merged);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_replicas, 2);
  EXPECT_FALSE(c->autoscaling_config.has_value());
}

TEST(MergeScalingModeTest, FileAutoscalingReplacesCodeDictWhole) {
  json merged = MergeDeploymentOptions(
      {{"name", "D"},
       {"autoscaling_config", {{"min_replicas", 2}, {"max_replicas", 5}, {"upscale_delay_s", 1}}}},
      {{"name", "D"}, {"autoscaling_config", {{"max_replicas", 10}}}});
  auto c = ResolveDeploymentConfig(merged);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->autoscaling_config.has_value());
  EXPECT_EQ(c->autoscaling_config->min_replicas, 1);
  EXPECT_EQ(c->autoscaling_config->max_replicas, 10);
  EXPECT_EQ(c->autoscaling_config->upscale_delay_s, 30.0);
}

TEST(MergeScalingModeTest, FileAutoscalingOverCodeAutoKeepsOnlyTheFileDict) {
  json merged =
      MergeDeploymentOptions({{"name", "D"}, {"num_replicas", "auto"}},
                             {{"name", "D"}, {"autoscaling_config", {{"max_replicas", 10}}}});
  auto c = ResolveDeploymentConfig(merged);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->autoscaling_config.has_value());
  EXPECT_EQ(c->autoscaling_config->min_replicas, 1);
  EXPECT_EQ(c->autoscaling_config->max_replicas, 10);
  EXPECT_EQ(c->autoscaling_config->target_ongoing_requests, 1.0);
  EXPECT_EQ(c->max_ongoing_requests, 5);  // implied by the code's "auto"
  merged =
      MergeDeploymentOptions({{"name", "D"}, {"num_replicas", "auto"}, {"max_ongoing_requests", 7}},
                             {{"name", "D"}, {"autoscaling_config", {{"max_replicas", 10}}}});
  c = ResolveDeploymentConfig(merged);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->max_ongoing_requests, 7);
}

TEST(MergeScalingModeTest, ParsedFileAutoOverCodeIntegerNumReplicas) {
  auto file = ParseServeDeployConfig(
      json{{"applications",
            {{{"import_path", "m:app"},
              {"deployments", {{{"name", "D"}, {"num_replicas", "auto"}}}}}}}});
  ASSERT_TRUE(file.ok()) << file.status();
  json merged = MergeDeploymentOptions({{"name", "D"}, {"num_replicas", 3}},
                                       file->applications[0].deployments[0].fields);
  auto c = ResolveDeploymentConfig(merged);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->autoscaling_config.has_value());
  EXPECT_EQ(c->autoscaling_config->max_replicas, 100);
  EXPECT_EQ(c->autoscaling_config->target_ongoing_requests, 2.0);
  EXPECT_EQ(c->max_ongoing_requests, 5);
}

TEST(MergeScalingModeTest, FileWithoutScalingFieldsKeepsCodeMode) {
  json merged =
      MergeDeploymentOptions({{"name", "D"}, {"autoscaling_config", {{"max_replicas", 5}}}},
                             {{"name", "D"}, {"max_ongoing_requests", 9}});
  auto c = ResolveDeploymentConfig(merged);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->autoscaling_config.has_value());
  EXPECT_EQ(c->autoscaling_config->max_replicas, 5);
  EXPECT_EQ(c->max_ongoing_requests, 9);
}

// ---- ApplyTargetCapacity -----------------------------------------------------------------

struct CapacityCase {
  int num_replicas;
  std::optional<double> target_capacity;
  int expected;
};

class ApplyTargetCapacityTest : public ::testing::TestWithParam<CapacityCase> {};

TEST_P(ApplyTargetCapacityTest, Adjusts) {
  const CapacityCase& c = GetParam();
  EXPECT_EQ(ApplyTargetCapacity(c.num_replicas, c.target_capacity), c.expected);
}

INSTANTIATE_TEST_SUITE_P(
    Table, ApplyTargetCapacityTest,
    ::testing::Values(CapacityCase{7, std::nullopt, 7}, CapacityCase{7, 100.0, 7},
                      CapacityCase{0, 100.0, 0}, CapacityCase{7, 0.0, 0}, CapacityCase{0, 50.0, 0},
                      CapacityCase{10, 50.0, 5}, CapacityCase{5, 50.0, 3},  // 2.5 rounds half up
                      CapacityCase{3, 50.0, 2},                             // 1.5
                      CapacityCase{7, 30.0, 2},                             // 2.1
                      CapacityCase{10, 1.0, 1},                             // 0.1, at least 1
                      CapacityCase{1, 0.5, 1}, CapacityCase{4, 62.5, 3},    // 2.5
                      CapacityCase{100, 99.5, 100}));

}  // namespace
}  // namespace serve::config
