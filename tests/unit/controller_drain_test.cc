// Node draining, proxies on every node and a new head taking worker nodes back (spec §3.3,
// §4.6, §8.1): driven through ControlLoop with one fake agent per node.

#include "controller/checkpoint.h"
#include "controller_cluster_fixture.h"

namespace serve::controller::testing {
namespace {

class DrainTest : public ClusterTest {
 protected:
  /// The process `tag` on worker `node` exits (reported as its agent would).
  void ExitOn(const std::string& node, const std::string& tag, int code = 0) {
    v1::ProcessExit msg;
    msg.set_node_id(node);
    msg.set_pid(Worker(node).pid_by_tag[tag]);
    msg.set_tag(tag);
    msg.set_exit_code(code);
    loop_->OnProcessExit(msg);
    loop_->Step();
  }
  /// The id of D's replica on `node` (the first one).
  std::string ReplicaOn(const std::string& node) {
    for (auto& [id, r] : Dep().replicas) {
      if (r.node_id == node && r.state != ReplicaState::kStopping) return id;
    }
    return "";
  }
  std::string StateOf(const std::string& replica_id) {
    Json details = loop_->Details("");
    for (auto& r : details["applications"]["app"]["deployments"]["D"]["replicas"]) {
      if (r["replica_id"] == replica_id) return r["state"];
    }
    return "<gone>";
  }
  void ReadyProxy(const std::string& node, int port) {
    v1::ProxyReady ready;
    ready.set_node_id(node);
    ready.set_http_port(port);
    ready.set_pid(Worker(node).pid_by_tag["proxy"]);
    loop_->OnProxyReady(ready);
  }
};

TEST_F(DrainTest, ReplicasMigrateBeforeTheyStopThenTheNodeIsDrained) {
  ASSERT_TRUE(Join("w1", {{"CPU", 4}}).ok());
  ASSERT_TRUE(Deploy({Options(2, {{"num_cpus", 1}})}).ok());
  Settle();
  std::string moving = ReplicaOn("w1");
  ASSERT_FALSE(moving.empty());
  ASSERT_TRUE(loop_->DrainNode("w1", 0).ok());
  loop_->Step();
  // Still serving while its replacement starts on the head; nothing new goes to w1.
  EXPECT_EQ(StateOf(moving), "PENDING_MIGRATION");
  EXPECT_TRUE(Worker("w1").stopped.empty());
  EXPECT_EQ(loop_->Details("")["nodes"]["w1"]["state"], "DRAINING");
  EXPECT_EQ(PerNode(), (std::map<std::string, int>{{"node1", 2}, {"w1", 1}}));
  Settle();
  // The replacement runs: the migrating replica stops gracefully.
  ASSERT_EQ(Worker("w1").stopped.size(), 1u);  // the replica; the DRAINING proxy exits itself
  EXPECT_EQ(loop_->Details("")["proxies"]["w1"]["status"], "DRAINING");
  EXPECT_EQ(Worker("w1").stopped[0].first, Worker("w1").pid_by_tag["replica:" + moving]);
  EXPECT_GT(Worker("w1").stopped[0].second, 0);
  ExitOn("w1", "replica:" + moving);
  EXPECT_EQ(loop_->nodes().Get("w1")->status, NodeStatus::kDraining);  // its proxy drains
  ExitOn("w1", "proxy");
  EXPECT_EQ(loop_->nodes().Get("w1")->status, NodeStatus::kDead);
  EXPECT_EQ(loop_->nodes().Get("w1")->death_reason, "drained");
  absl::Status hb = loop_->NodeHeartbeat("w1");
  EXPECT_EQ(hb.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(hb.message().find("drained"), std::string::npos);
  EXPECT_EQ(CountState(ReplicaState::kRunning), 2);
}

TEST_F(DrainTest, WithoutRoomElsewhereTheReplicaServesUntilTheDeadline) {
  ASSERT_TRUE(Join("w1", {{"CPU", 4}}).ok());
  ASSERT_TRUE(Deploy({Options(2, {{"num_cpus", 4}})}).ok());
  Settle();
  std::string moving = ReplicaOn("w1");
  ASSERT_TRUE(loop_->DrainNode("w1", 30).ok());
  Settle();
  EXPECT_EQ(StateOf(moving), "PENDING_MIGRATION");
  EXPECT_EQ(Dep().unschedulable, 1);
  clock_.Advance(5);
  loop_->Step();
  EXPECT_EQ(StateOf(moving), "PENDING_MIGRATION");
  // graceful_shutdown_timeout_s (20) before the 30 s deadline.
  clock_.Advance(6);
  loop_->Step();
  EXPECT_EQ(StateOf(moving), "STOPPING");
}

TEST_F(DrainTest, StartingReplicasOnADrainingNodeStopAtOnce) {
  ASSERT_TRUE(Join("w1", {{"CPU", 4}}).ok());
  ASSERT_TRUE(Deploy({Options(2, {{"num_cpus", 1}})}).ok());
  std::string starting = ReplicaOn("w1");
  ASSERT_TRUE(loop_->DrainNode("w1", 0).ok());
  loop_->Step();
  EXPECT_EQ(StateOf(starting), "STOPPING");
}

TEST_F(DrainTest, DrainRejectsTheHeadAndUnknownNodes) {
  EXPECT_EQ(loop_->DrainNode("node1", 0).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(loop_->DrainNode("nobody", 0).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(Join("w1", {{"CPU", 4}}).ok());
  EXPECT_TRUE(loop_->DrainNode("w1", 0).ok());
  EXPECT_TRUE(loop_->DrainNode("w1", 0).ok());  // again: still draining
  loop_->Step();  // nothing on it: drained at once
  EXPECT_EQ(loop_->nodes().Get("w1")->status, NodeStatus::kDead);
  EXPECT_EQ(loop_->DrainNode("w1", 0).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(DrainTest, EveryNodeRunsAProxyWhereReplicasRunBoundToTheNodeIp) {
  ASSERT_TRUE(Join("w1", {{"CPU", 4}}).ok());
  ASSERT_TRUE(Join("w2", {{"CPU", 4}}).ok());
  EXPECT_TRUE(Worker("w1").StartedTags("proxy").empty());  // no replica there yet
  ASSERT_TRUE(Deploy({Options(2, {{"num_cpus", 1}})}).ok());
  ASSERT_EQ(PerNode(), (std::map<std::string, int>{{"node1", 1}, {"w1", 1}}));
  loop_->Step();  // proxies follow the placements of the step before
  ASSERT_EQ(Worker("w1").StartedTags("proxy").size(), 1u);
  EXPECT_TRUE(Worker("w2").StartedTags("proxy").empty());
  const auto& args = Worker("w1").started.back().args();
  auto host = std::find(args.begin(), args.end(), "--http-host");
  ASSERT_NE(host, args.end());
  EXPECT_EQ(*(host + 1), "10.0.0.2");
  ReadyProxy("w1", 8000);
  Json proxies = loop_->Details("")["proxies"];
  EXPECT_EQ(proxies["w1"]["status"], "HEALTHY");
  EXPECT_EQ(proxies["w1"]["node_ip"], "10.0.0.2");
  // The replica leaves w1 (scale to one: the head's stays): the proxy drains, published to it.
  ASSERT_TRUE(loop_->DrainNode("w1", 0).ok());
  Settle();
  EXPECT_EQ(loop_->Details("")["proxies"]["w1"]["status"], "DRAINING");
  bool draining = false;
  loop_->Listen({{ProxyStateKey("w1"), -1}}, [&](std::vector<v1::Update> updates, bool) {
    for (auto& u : updates) draining |= u.has_proxy_state() && u.proxy_state().draining();
  });
  EXPECT_TRUE(draining);
  ExitOn("w1", "proxy");
  EXPECT_FALSE(loop_->Details("")["proxies"].contains("w1"));
}

TEST_F(DrainTest, HeadOnlyRunsNoWorkerProxy) {
  proxy_location_ = "HeadOnly";
  loop_ = MakeLoop();
  loop_->set_agent_factory([this](const std::string& address) {
    return std::make_unique<ForwardingAgent>(workers_[address]);
  });
  loop_->Recover();
  loop_->Step();
  ASSERT_TRUE(Join("w1", {{"CPU", 4}}).ok());
  ASSERT_TRUE(Deploy({Options(2, {{"num_cpus", 1}})}).ok());
  EXPECT_EQ(PerNode().count("w1"), 1u);
  EXPECT_TRUE(Worker("w1").StartedTags("proxy").empty());
}

TEST_F(DrainTest, ANewControllerTakesWorkerNodesAndTheirReplicasBack) {
  ASSERT_TRUE(Join("w1", {{"CPU", 4}}).ok());
  ASSERT_TRUE(Deploy({Options(2, {{"num_cpus", 1}})}).ok());
  Settle();
  ReadyProxy("w1", 8000);
  loop_->Step();
  std::string kept = ReplicaOn("w1");
  int kept_pid = Worker("w1").pid_by_tag["replica:" + kept];
  Worker("w1").alive[kept_pid] = "replica:" + kept;
  Worker("w1").alive[Worker("w1").pid_by_tag["proxy"]] = "proxy";
  Worker("w1").alive[4242] = "replica:stranger";
  size_t starts = Worker("w1").started.size();
  // A new controller (the head was lost: its own agent reports nothing).
  loop_ = MakeLoop();
  loop_->set_agent_factory([this](const std::string& address) {
    return std::make_unique<ForwardingAgent>(workers_[address]);
  });
  loop_->Recover();
  loop_->Step();
  EXPECT_EQ(loop_->nodes().Get("w1")->status, NodeStatus::kAlive);
  EXPECT_TRUE(loop_->NodeHeartbeat("w1").ok());  // no re-registration, no restart
  const ReplicaInfo* r = Dep().replicas.Find(kept);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->state, ReplicaState::kRecovering);
  EXPECT_EQ(r->pid, kept_pid);
  ASSERT_EQ(Worker("w1").stopped.size(), 1u);  // only the stranger
  EXPECT_EQ(Worker("w1").stopped[0].first, 4242);
  EXPECT_EQ(Worker("w1").started.size(), starts);  // its proxy was adopted, not restarted
  EXPECT_EQ(loop_->Details("")["nodes"]["w1"]["resources_available"]["CPU"], 3.0);
}

}  // namespace
}  // namespace serve::controller::testing
