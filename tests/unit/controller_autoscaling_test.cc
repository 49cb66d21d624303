// Autoscaling inside the controller: handle metrics → policy → target → replicas and status.

#include "controller_test_base.h"

namespace serve::controller::testing {
namespace {

using Json = nlohmann::json;

Json Autoscaled(Json as) {
  Json base = {{"target_ongoing_requests", 1}, {"upscale_delay_s", 1}, {"downscale_delay_s", 2},
               {"metrics_interval_s", 0.5}, {"look_back_period_s", 1}};
  base.update(as);
  return {{"name", "D"}, {"autoscaling_config", base}};
}

TEST_F(ControllerTest, UpscalesAfterTheDelayAndReportsAutoscalingStatus) {
  ASSERT_TRUE(Deploy({Autoscaled({{"min_replicas", 1}, {"max_replicas", 4}})}).ok());
  ReportStarted();
  ASSERT_EQ(Dep().target_num_replicas, 1);
  std::string first = Replicas(ReplicaState::kRunning).at(0);
  PushLoad("D", 2, {{first, 1}});  // total 3 => desired 3
  loop_->Step();
  EXPECT_EQ(Dep().target_num_replicas, 1);  // the upscale delay has not passed
  clock_.Advance(0.6);
  PushLoad("D", 2, {{first, 1}});
  loop_->Step();
  EXPECT_EQ(Dep().target_num_replicas, 1);
  clock_.Advance(0.5);
  PushLoad("D", 2, {{first, 1}});
  loop_->Step();
  EXPECT_EQ(Dep().target_num_replicas, 3);
  EXPECT_EQ(Dep().status.status, DeploymentStatus::kUpscaling);
  EXPECT_EQ(Dep().status.trigger, StatusTrigger::kAutoscaling);
  EXPECT_EQ(CountState(ReplicaState::kStarting), 2);
  Json d = loop_->Details("")["applications"]["app"]["deployments"]["D"];
  EXPECT_EQ(d["target_num_replicas"], 3);
  EXPECT_EQ(d["deployment_config"]["autoscaling_config"]["max_replicas"], 4);
  EXPECT_FALSE(d["deployment_config"].contains("num_replicas"));
  ReportStarted();
  EXPECT_EQ(Dep().status.status, DeploymentStatus::kHealthy);
  EXPECT_EQ(Dep().status.trigger, StatusTrigger::kUpscaleCompleted);
}

TEST_F(ControllerTest, ClampsToMaxReplicas) {
  ASSERT_TRUE(Deploy({Autoscaled({{"max_replicas", 2}, {"upscale_delay_s", 0}})}).ok());
  ReportStarted();
  PushLoad("D", 50);
  loop_->Step();
  EXPECT_EQ(Dep().target_num_replicas, 2);
}

TEST_F(ControllerTest, ScalesToZeroAndColdStartsAtOnce) {
  ASSERT_TRUE(Deploy({Autoscaled({{"min_replicas", 0}, {"max_replicas", 2},
                                  {"initial_replicas", 1}, {"downscale_delay_s", 1},
                                  {"downscale_to_zero_delay_s", 1}})})
                  .ok());
  ReportStarted();
  ASSERT_EQ(Dep().target_num_replicas, 1);
  PushLoad("D", 0);
  loop_->Step();
  clock_.Advance(1.1);
  PushLoad("D", 0);
  loop_->Step();
  EXPECT_EQ(Dep().target_num_replicas, 0);
  EXPECT_EQ(Dep().status.status, DeploymentStatus::kDownscaling);
  ExitStopped();
  EXPECT_TRUE(Dep().replicas.empty());
  EXPECT_EQ(Dep().status.trigger, StatusTrigger::kDownscaleCompleted);
  // Routers keep the deployment available while it has no replica.
  auto objects_seen = loop_->Details("")["applications"]["app"]["status"];
  EXPECT_EQ(objects_seen, "RUNNING");
  // A queued request at zero replicas: one step later a replica starts (no delay).
  PushLoad("D", 1);
  loop_->Step();
  EXPECT_EQ(Dep().target_num_replicas, 1);
  EXPECT_EQ(CountState(ReplicaState::kStarting), 1);
}

TEST_F(ControllerTest, DownscalesAfterTheDelayStoppingTheNewestNotServing) {
  ASSERT_TRUE(Deploy({Autoscaled({{"min_replicas", 1}, {"max_replicas", 3},
                                  {"initial_replicas", 3}})})
                  .ok());
  EXPECT_EQ(Dep().target_num_replicas, 3);
  ReportStarted();
  for (int i = 0; i < 3; ++i) {
    PushLoad("D", 0);
    loop_->Step();
    EXPECT_EQ(Dep().target_num_replicas, 3) << i;
    clock_.Advance(0.8);
  }
  PushLoad("D", 0);
  loop_->Step();
  EXPECT_EQ(Dep().target_num_replicas, 1);
  EXPECT_EQ(CountState(ReplicaState::kStopping), 2);
}

TEST_F(ControllerTest, AutoscalingOnlyUpdateKeepsReplicasAndTarget) {
  ASSERT_TRUE(Deploy({Autoscaled({{"max_replicas", 4}, {"initial_replicas", 2}})}).ok());
  ReportStarted();
  size_t starts = agent_.StartedTags("replica:").size();
  ASSERT_TRUE(Deploy({Autoscaled({{"max_replicas", 4}, {"initial_replicas", 2}})},
                     Json::array({Autoscaled({{"max_replicas", 5}, {"initial_replicas", 2}})}))
                  .ok());
  Settle();
  EXPECT_EQ(agent_.StartedTags("replica:").size(), starts);
  EXPECT_TRUE(agent_.stopped.empty());
  EXPECT_EQ(Dep().target_num_replicas, 2);
  EXPECT_EQ(Dep().spec.cfg.autoscaling_config->max_replicas, 5);
}

TEST_F(ControllerTest, NumReplicasAutoUsesTheAutoDefaults) {
  ASSERT_TRUE(Deploy({{{"name", "D"}, {"num_replicas", "auto"}}}).ok());
  const auto& as = Dep().spec.cfg.autoscaling_config;
  ASSERT_TRUE(as.has_value());
  EXPECT_EQ(as->min_replicas, 1);
  EXPECT_EQ(as->max_replicas, 100);
  EXPECT_EQ(as->target_ongoing_requests, 2);
  EXPECT_EQ(Dep().spec.cfg.max_ongoing_requests, 5);
  EXPECT_EQ(Dep().target_num_replicas, 1);
}

TEST_F(ControllerTest, HandleReportsOfADeadProxyAreDropped) {
  ASSERT_TRUE(Deploy({Autoscaled({{"max_replicas", 4}, {"upscale_delay_s", 0}})}).ok());
  ReportStarted();
  PushLoad("D", 3);
  Exit(agent_.pid_by_tag["proxy"], "proxy", -9);  // its router's reports go with it
  loop_->Step();
  EXPECT_EQ(Dep().target_num_replicas, 1);
}

TEST_F(ControllerTest, CustomPolicyRunsInAReplicaAndIsBoundedAndDelayed) {
  ASSERT_TRUE(Deploy({Autoscaled({{"max_replicas", 5}, {"upscale_delay_s", 0},
                                  {"policy", "m:by_queue"}})})
                  .ok());
  ReportStarted();
  std::string first = Replicas(ReplicaState::kRunning).at(0);
  // The first call went out as soon as a replica ran, before any load.
  ASSERT_EQ(replicas_.policy_calls.size(), 1u);
  v1::PolicyReply keep;
  keep.set_ok(true);
  keep.set_num_replicas(1);
  replicas_.policy_calls.front().done(keep);
  replicas_.policy_calls.pop_front();
  PushLoad("D", 7);
  loop_->Step();
  ASSERT_EQ(replicas_.policy_calls.size(), 1u);
  auto call = std::move(replicas_.policy_calls.front());
  replicas_.policy_calls.pop_front();
  EXPECT_EQ(call.address, Dep().replicas.Find(first)->control_address);
  EXPECT_EQ(call.request.policy(), "m:by_queue");
  Json context = Json::parse(call.request.context_json());
  EXPECT_EQ(context["current_num_replicas"], 1);
  EXPECT_EQ(context["total_num_requests"], 7.0);
  EXPECT_EQ(context["capacity_adjusted_max_replicas"], 5);
  EXPECT_EQ(context["policy_state"], Json::object());
  loop_->Step();
  EXPECT_TRUE(replicas_.policy_calls.empty());  // one call in flight at a time
  v1::PolicyReply reply;
  reply.set_ok(true);
  reply.set_num_replicas(9);  // above max_replicas: clamped
  reply.set_policy_state_json(R"({"calls": 1})");
  call.done(reply);
  loop_->Step();
  EXPECT_EQ(Dep().target_num_replicas, 5);
  EXPECT_EQ(Dep().status.trigger, StatusTrigger::kAutoscaling);
  ASSERT_EQ(replicas_.policy_calls.size(), 1u);
  EXPECT_EQ(Json::parse(replicas_.policy_calls.front().request.context_json())["policy_state"],
            Json({{"calls", 1}}));
  // A failing policy keeps the target and says why.
  v1::PolicyReply failed;
  failed.set_ok(false);
  failed.set_error("std::runtime_error: bad model");
  replicas_.policy_calls.front().done(failed);
  replicas_.policy_calls.pop_front();
  loop_->Step();
  EXPECT_EQ(Dep().target_num_replicas, 5);
  EXPECT_NE(Dep().message.find("bad model"), std::string::npos) << Dep().message;
  // So does a replica that cannot run policies at all (a transport error without a message).
  ASSERT_EQ(replicas_.policy_calls.size(), 1u);
  replicas_.policy_calls.front().done(absl::UnimplementedError(""));
  replicas_.policy_calls.pop_front();
  loop_->Step();
  EXPECT_EQ(Dep().target_num_replicas, 5);
  EXPECT_NE(Dep().message.find("UNIMPLEMENTED"), std::string::npos) << Dep().message;
}

}  // namespace
}  // namespace serve::controller::testing
