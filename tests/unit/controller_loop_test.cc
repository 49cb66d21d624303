// The controller's rules, driven through ControlLoop with a fake clock, agent and replicas.

#include <algorithm>

#include "common/ids.h"
#include "controller/checkpoint.h"
#include "controller/status.h"
#include "controller_test_base.h"
#include "rpc/grpc_util.h"

namespace serve::controller::testing {
namespace {

using Json = nlohmann::json;

Json Options(int replicas, Json extra = Json::object()) {
  Json o = {{"name", "D"}, {"num_replicas", replicas}};
  o.update(extra);
  return o;
}

TEST_F(ControllerTest, StartsTheProxyAndTheBuildThenTheReplicas) {
  EXPECT_EQ(agent_.StartedTags("proxy").size(), 1u);
  ASSERT_TRUE(Deploy({Options(3)}).ok());
  EXPECT_EQ(agent_.StartedTags("build:app").size(), 1u);
  EXPECT_EQ(agent_.StartedTags("replica:").size(), 3u);
  EXPECT_EQ(Dep().status.status, DeploymentStatus::kUpdating);
  EXPECT_EQ(Dep().status.trigger, StatusTrigger::kConfigUpdateStarted);
  ReportStarted();
  EXPECT_EQ(CountState(ReplicaState::kRunning), 3);
  EXPECT_EQ(Dep().status.status, DeploymentStatus::kHealthy);
  EXPECT_EQ(Dep().status.trigger, StatusTrigger::kConfigUpdateCompleted);
  Json details = loop_->Details("");
  EXPECT_EQ(details["applications"]["app"]["status"], "RUNNING");
  EXPECT_EQ(details["applications"]["app"]["deployments"]["D"]["target_num_replicas"], 3);
}

TEST_F(ControllerTest, StartProcessCallsDoNotWaitForEachOther) {
  agent_.auto_complete = false;
  // Deploy() answers the build; the step after it asks for all five replicas although no
  // StartProcess call (the build's included) has answered yet.
  ASSERT_TRUE(Deploy({Options(5)}).ok());
  EXPECT_EQ(agent_.StartedTags("replica:").size(), 5u);
  size_t waiting = std::count_if(agent_.pending.begin(), agent_.pending.end(), [](auto& p) {
    return p.request.tag().rfind("replica:", 0) == 0;
  });
  EXPECT_EQ(waiting, 5u);
}

TEST_F(ControllerTest, RollingUpdateStopsTwentyPercentAtATime) {
  ASSERT_TRUE(Deploy({Options(10)}).ok());
  Settle();
  ASSERT_EQ(CountState(ReplicaState::kRunning), 10);
  size_t starts = agent_.StartedTags("replica:").size();
  // New code: version 2 rolls out max(20% of 10, 1) = 2 replicas at a time.
  ASSERT_TRUE(Deploy({Options(10)}, Json::array(), {{"v", 2}}, "-v2").ok());
  EXPECT_EQ(Dep().version, 2);
  EXPECT_EQ(Dep().status.status, DeploymentStatus::kUpdating);
  EXPECT_EQ(agent_.stopped.size(), 2u);
  EXPECT_EQ(agent_.StartedTags("replica:").size(), starts + 2);
  EXPECT_EQ(CountState(ReplicaState::kStopping), 2);
  // Nothing more moves until the new ones run.
  loop_->Step();
  EXPECT_EQ(agent_.stopped.size(), 2u);
  ReportStarted();
  EXPECT_EQ(agent_.stopped.size(), 4u);
  for (int i = 0; i < 10; ++i) {
    ExitStopped();
    ReportStarted();
  }
  int v2 = 0;
  for (auto& [id, r] : Dep().replicas) v2 += r.version == 2 && r.state == ReplicaState::kRunning;
  EXPECT_EQ(v2, 10);
  EXPECT_EQ(Dep().status.status, DeploymentStatus::kHealthy);
}

TEST_F(ControllerTest, ScaleDownStopsReplicasNotServingYetFirst) {
  ASSERT_TRUE(Deploy({Options(3)}).ok());
  ReportStarted();
  ASSERT_EQ(CountState(ReplicaState::kRunning), 3);
  // Up to 5: two more start and stay STARTING.
  ASSERT_TRUE(Deploy({Options(3)}, Json::array({Options(5)})).ok());
  EXPECT_EQ(Dep().status.status, DeploymentStatus::kUpscaling);
  EXPECT_EQ(Dep().status.trigger, StatusTrigger::kConfigUpdateStarted);
  std::vector<std::string> starting = Replicas(ReplicaState::kStarting);
  ASSERT_EQ(starting.size(), 2u);
  // Down to 2: the two STARTING ones go first (no grace), then one RUNNING (with grace).
  ASSERT_TRUE(Deploy({Options(3)}, Json::array({Options(2)})).ok());
  EXPECT_EQ(Dep().status.status, DeploymentStatus::kDownscaling);
  EXPECT_EQ(CountState(ReplicaState::kRunning), 2);
  EXPECT_EQ(CountState(ReplicaState::kStopping), 3);
  for (const std::string& id : starting) {
    EXPECT_EQ(Dep().replicas.Find(id)->state, ReplicaState::kStopping);
  }
  ASSERT_EQ(agent_.stopped.size(), 3u);
  std::vector<double> graces;
  for (auto& [pid, grace] : agent_.stopped) graces.push_back(grace);
  std::sort(graces.begin(), graces.end());
  EXPECT_EQ(graces, (std::vector<double>{0, 0, 20}));
  // Stopping replicas leave routing at once.
  loop_->Step();
  ExitStopped();
  EXPECT_EQ(Dep().status.status, DeploymentStatus::kHealthy);
  EXPECT_EQ(Dep().status.trigger, StatusTrigger::kDownscaleCompleted);
}

TEST_F(ControllerTest, StartupFailureThresholdMakesTheDeploymentFailTerminally) {
  // Threshold min(20, 2 * 3) = 6 failures while no replica of the version ever ran.
  ASSERT_TRUE(Deploy({Options(2)}).ok());
  for (int i = 0; i < 2; ++i) {
    ReportStarted("D", false, "constructor exploded");
    clock_.Advance(60);  // past the restart backoff
    loop_->Step();
  }
  EXPECT_EQ(Dep().status.status, DeploymentStatus::kUpdating);
  EXPECT_NE(Dep().message.find("Retrying 2 more time(s)"), std::string::npos) << Dep().message;
  ReportStarted("D", false, "constructor exploded");
  EXPECT_TRUE(Dep().terminally_failed);
  EXPECT_EQ(Dep().status.status, DeploymentStatus::kDeployFailed);
  EXPECT_EQ(Dep().status.trigger, StatusTrigger::kReplicaStartupFailed);
  size_t starts = agent_.StartedTags("replica:").size();
  for (int i = 0; i < 3; ++i) loop_->Step();
  EXPECT_EQ(agent_.StartedTags("replica:").size(), starts);  // no more attempts
  EXPECT_EQ(loop_->Details("")["applications"]["app"]["status"], "DEPLOY_FAILED");
}

TEST_F(ControllerTest, HealthChecksFollowThePeriodAndThreeFailuresReplace) {
  ASSERT_TRUE(Deploy({Options(1, {{"health_check_period_s", 10}})}).ok());
  ReportStarted();
  std::string id = Replicas(ReplicaState::kRunning).at(0);
  replicas_.health_checks.clear();
  clock_.Advance(9.9);
  loop_->Step();
  EXPECT_TRUE(replicas_.health_checks.empty());
  clock_.Advance(0.2);
  loop_->Step();
  ASSERT_EQ(replicas_.health_checks.size(), 1u);
  // One in flight at a time.
  clock_.Advance(20);
  loop_->Step();
  EXPECT_EQ(replicas_.health_checks.size(), 1u);
  replicas_.AnswerHealth(absl::UnavailableError("timeout"));
  for (int i = 0; i < 2; ++i) {
    clock_.Advance(10.1);
    loop_->Step();
    replicas_.AnswerHealth(absl::UnavailableError("timeout"));
  }
  loop_->Step();
  EXPECT_EQ(Dep().replicas.Find(id)->state, ReplicaState::kStopping);
  EXPECT_EQ(Dep().status.status, DeploymentStatus::kUnhealthy);
  EXPECT_EQ(Dep().status.trigger, StatusTrigger::kHealthCheckFailed);
  EXPECT_EQ(CountState(ReplicaState::kStarting), 1);  // the replacement
  ExitStopped();
  ReportStarted();
  EXPECT_EQ(Dep().status.status, DeploymentStatus::kHealthy);
}

TEST_F(ControllerTest, ReplicaDeathIsReplaced) {
  ASSERT_TRUE(Deploy({Options(2)}).ok());
  ReportStarted();
  std::string id = Replicas(ReplicaState::kRunning).at(0);
  Exit(agent_.pid_by_tag["replica:" + id], "replica:" + id, -9);
  EXPECT_EQ(Dep().status.status, DeploymentStatus::kUnhealthy);
  EXPECT_NE(Dep().message.find("was killed by signal 9"), std::string::npos);
  loop_->Step();
  EXPECT_EQ(CountState(ReplicaState::kStarting), 1);
}

TEST_F(ControllerTest, CrashLoopsBackOffExponentially) {
  ASSERT_TRUE(Deploy({Options(1)}).ok());
  ReportStarted();
  ASSERT_TRUE(Dep().version_started);
  auto kill_running = [&] {
    std::string id = Replicas(ReplicaState::kRunning).at(0);
    Exit(agent_.pid_by_tag["replica:" + id], "replica:" + id, 1);
    loop_->Step();
  };
  // Dies at once after starting: replacements wait 0, 0.5, 1, 2 s.
  std::vector<double> waits;
  for (int i = 0; i < 4; ++i) {
    kill_running();
    double waited = 0;
    while (CountState(ReplicaState::kStarting) == 0 && waited < 100) {
      clock_.Advance(0.25);
      waited += 0.25;
      loop_->Step();
    }
    waits.push_back(waited);
    ReportStarted();
  }
  EXPECT_EQ(waits, (std::vector<double>{0, 0.5, 1, 2}));
  EXPECT_EQ(RestartBackoffS(100), kRestartBackoffCapS);
  // One that had run stably is replaced at once, and the count starts again.
  clock_.Advance(kStableRunS + 0.1);
  kill_running();
  EXPECT_EQ(CountState(ReplicaState::kStarting), 1);
  EXPECT_EQ(Dep().consecutive_failures, 1);
}

TEST_F(ControllerTest, UserConfigChangeReconfiguresInPlace) {
  ASSERT_TRUE(Deploy({Options(2)}, Json::array({{{"name", "D"}, {"user_config", {{"a", 1}}}}})).ok());
  Settle();
  size_t starts = agent_.StartedTags("replica:").size();
  ASSERT_TRUE(Deploy({Options(2)}, Json::array({{{"name", "D"}, {"user_config", {{"a", 2}}}}})).ok());
  EXPECT_EQ(replicas_.reconfigures.size(), 2u);
  EXPECT_EQ(Json(loop_->Details("")["applications"]["app"]["deployments"]["D"]["replicas"][0]["state"]),
            "UPDATING");
  replicas_.AnswerReconfigure(absl::OkStatus());
  loop_->Step();
  EXPECT_EQ(agent_.StartedTags("replica:").size(), starts);  // same processes
  EXPECT_EQ(Dep().status.status, DeploymentStatus::kHealthy);
}

TEST_F(ControllerTest, ImperativeDeployAfterShutdownIsUnavailable) {
  loop_->Shutdown();
  auto st = Deploy({Options(1)});
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(rpc::ToGrpcStatus(st).error_code(), grpc::StatusCode::UNAVAILABLE);
  loop_->Step();
  EXPECT_TRUE(loop_->finished());
  EXPECT_EQ(agent_.shutdowns, 1);
}

TEST_F(ControllerTest, RoutePrefixTakenByAnotherAppIsAlreadyExists) {
  ASSERT_TRUE(Deploy({Options(1)}).ok());
  Json doc = {{"applications",
               {{{"name", "other"}, {"route_prefix", "/"}, {"import_path", "m:app"}}}}};
  auto cfg = config::ParseServeDeployConfig(doc);
  ASSERT_TRUE(cfg.ok());
  auto st = loop_->Deploy(*cfg, "imperative", "");
  EXPECT_EQ(st.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(rpc::ToGrpcStatus(st).error_code(), grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(ControllerTest, ProxyReadyBeforeTheAgentAnswersStaysHealthy) {
  // A fast proxy reports before StartProcess returns; the late answer must not reset it.
  FakeAgent slow;
  slow.auto_complete = false;
  ControllerOptions o;
  o.session_dir = session_.string();
  o.node_id = "node1";
  o.http_port = 0;
  ControlLoop loop(o, clock_, random_, slow, replicas_, kv_);
  loop.Recover();
  loop.Step();
  ASSERT_EQ(slow.pending.size(), 1u);
  v1::ProxyReady ready;
  ready.set_node_id("node1");
  ready.set_http_port(4321);
  ready.set_pid(77);
  loop.OnProxyReady(ready);
  slow.pending.front().done(77);
  Json details = loop.Details("");
  EXPECT_EQ(details["proxies"]["node1"]["status"], "HEALTHY");
  EXPECT_EQ(details["http_options"]["port"], 4321);
}

TEST_F(ControllerTest, CheckpointRoundTripAdoptsLiveReplicas) {
  ASSERT_TRUE(Deploy({Options(3)}).ok());
  ReportStarted();
  std::map<std::string, int> pids;
  for (auto& [id, r] : Dep().replicas) pids[id] = r.pid;
  ASSERT_EQ(pids.size(), 3u);
  // A new controller finds two of them alive (and an unknown replica process).
  auto it = pids.begin();
  std::string dead = it->first;
  for (++it; it != pids.end(); ++it) agent_.alive[it->second] = "replica:" + it->first;
  agent_.alive[999] = "replica:stranger";
  agent_.alive[agent_.pid_by_tag["proxy"]] = "proxy";
  size_t stops = agent_.stopped.size();
  loop_ = MakeLoop();
  loop_->Recover();
  EXPECT_EQ(CountState(ReplicaState::kRecovering), 2);
  EXPECT_EQ(Dep().replicas.Find(dead), nullptr);
  loop_->Step();
  ASSERT_EQ(agent_.stopped.size(), stops + 1);
  EXPECT_EQ(agent_.stopped.back().first, 999);
  EXPECT_EQ(replicas_.health_checks.size(), 2u);
  EXPECT_EQ(agent_.StartedTags("proxy").size(), 1u);  // the live proxy is kept
  // Listeners wait while replicas recover.
  bool answered = false;
  loop_->Listen({{std::string(kRouteTableKey), -1}},
                [&](std::vector<v1::Update>, bool) { answered = true; });
  EXPECT_FALSE(answered);
  replicas_.AnswerHealth(absl::OkStatus());
  loop_->Step();
  EXPECT_TRUE(answered);
  EXPECT_EQ(CountState(ReplicaState::kRunning), 2);
  EXPECT_EQ(CountState(ReplicaState::kStarting), 1);  // the dead one's replacement
  for (auto& [id, r] : Dep().replicas) {
    if (r.state == ReplicaState::kRunning) {
      EXPECT_EQ(r.pid, pids[id]);
    }
  }
  EXPECT_EQ(Dep().target_num_replicas, 3);
}

TEST_F(ControllerTest, CorruptCheckpointIsSetAside) {
  ASSERT_TRUE(kv_.Put(kCheckpointKey, "\xc1 not msgpack").ok());
  loop_ = MakeLoop();
  loop_->Recover();
  EXPECT_TRUE(loop_->deployments().deployments().empty());
  EXPECT_TRUE(kv_.Get(std::string(kCheckpointKey) + "-corrupt").ok());
}

TEST_F(ControllerTest, TargetCapacityScalesFixedDeployments) {
  ASSERT_TRUE(Deploy({Options(4)}, Json::array(), Json::object(), "", 50.0).ok());
  EXPECT_EQ(Dep().target_num_replicas, 2);
  EXPECT_EQ(agent_.StartedTags("replica:").size(), 2u);
  ReportStarted();
  ASSERT_TRUE(Deploy({Options(4)}, Json::array(), Json::object(), "", 100.0).ok());
  EXPECT_EQ(Dep().target_num_replicas, 4);
  EXPECT_EQ(CountState(ReplicaState::kStarting), 2);
  EXPECT_EQ(loop_->Details("")["target_capacity"], 100.0);
}

TEST_F(ControllerTest, DeleteStopsReplicasThenForgetsTheApp) {
  ASSERT_TRUE(Deploy({Options(2)}).ok());
  ReportStarted();
  ASSERT_TRUE(loop_->DeleteApplication("app").ok());
  loop_->Step();
  EXPECT_EQ(loop_->Details("")["applications"]["app"]["status"], "DELETING");
  EXPECT_EQ(loop_->DeleteApplication("nope").code(), absl::StatusCode::kNotFound);
  ExitStopped();
  EXPECT_TRUE(loop_->applications().apps().empty());
  EXPECT_TRUE(loop_->deployments().deployments().empty());
}

}  // namespace
}  // namespace serve::controller::testing
