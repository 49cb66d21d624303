// Multi-node scheduling (spec §4.6, §8.1): nodes join and die, replicas are placed by their
// ray_actor_options, spread across nodes, limited per node, and given GPU devices. Driven
// through ControlLoop with one fake agent per node.

#include <algorithm>

#include "controller/scheduler.h"
#include "controller_cluster_fixture.h"

namespace serve::controller::testing {
namespace {

using SchedulerTest = ClusterTest;

TEST(SchedulerDemand, FromRayActorOptions) {
  EXPECT_EQ(DemandFromActorOptions(Json::object()), (ResourceSet{{"CPU", 1}}));
  EXPECT_EQ(DemandFromActorOptions({{"num_cpus", 0.5},
                                    {"num_gpus", 0.25},
                                    {"memory", 1024},
                                    {"resources", {{"TPU", 2}}},
                                    {"accelerator_type", "A100"}}),
            (ResourceSet{{"CPU", 0.5},
                         {"GPU", 0.25},
                         {"memory", 1024},
                         {"TPU", 2},
                         {"accelerator_type:A100", 0.001}}));
  EXPECT_EQ(DemandFromActorOptions({{"num_cpus", 0}}), ResourceSet{});
}

TEST_F(SchedulerTest, SpreadsReplicasAcrossNodes) {
  ASSERT_TRUE(Join("w1", {{"CPU", 4}}).ok());
  ASSERT_TRUE(Join("w2", {{"CPU", 4}}).ok());
  ASSERT_TRUE(Deploy({Options(3, {{"num_cpus", 1}})}).ok());
  EXPECT_EQ(PerNode(), (std::map<std::string, int>{{"node1", 1}, {"w1", 1}, {"w2", 1}}));
  EXPECT_EQ(Worker("w1").StartedTags("replica:").size(), 1u);
  EXPECT_EQ(Worker("w2").StartedTags("replica:").size(), 1u);
  // The data plane addresses a replica by its own node's IP.
  Settle();
  Json details = loop_->Details("");
  std::map<std::string, std::string> ip_by_node;
  for (auto& r : details["applications"]["app"]["deployments"]["D"]["replicas"]) {
    ip_by_node[r["node_id"]] = r["node_ip"];
  }
  EXPECT_EQ(ip_by_node["w1"], "10.0.0.2");
  EXPECT_EQ(ip_by_node["w2"], "10.0.0.3");
  EXPECT_EQ(details["nodes"]["w1"]["state"], "ALIVE");
  EXPECT_EQ(details["nodes"]["node1"]["is_head_node"], true);
  EXPECT_EQ(details["nodes"]["w1"]["resources_available"]["CPU"], 3.0);
}

TEST_F(SchedulerTest, MaxReplicasPerNodeLeavesTheRestPendingUntilANodeJoins) {
  ASSERT_TRUE(Deploy({Options(3, {{"num_cpus", 0.1}}, {{"max_replicas_per_node", 1}})}).ok());
  EXPECT_EQ(PerNode(), (std::map<std::string, int>{{"node1", 1}}));
  EXPECT_EQ(Dep().replicas.size(), 3u);  // two wait, STARTING without a process
  EXPECT_NE(Dep().message.find("Deployment 'D' in application 'app' has 2 replicas that cannot "
                               "be scheduled"),
            std::string::npos)
      << Dep().message;
  EXPECT_NE(Dep().message.find("at most 1 replicas per node"), std::string::npos);
  ASSERT_TRUE(Join("w1", {{"CPU", 1}}).ok());
  EXPECT_EQ(PerNode(), (std::map<std::string, int>{{"node1", 1}, {"w1", 1}}));
  EXPECT_NE(Dep().message.find("has 1 replicas"), std::string::npos) << Dep().message;
  ASSERT_TRUE(Join("w2", {{"CPU", 1}}).ok());
  EXPECT_EQ(PerNode().size(), 3u);
  EXPECT_EQ(Dep().message, "");
  Settle();
  EXPECT_EQ(Dep().status.status, DeploymentStatus::kHealthy);
}

TEST_F(SchedulerTest, UnschedulableMessageNamesTheResources) {
  ASSERT_TRUE(Deploy({Options(1, {{"num_cpus", 1}, {"num_gpus", 1}})}).ok());
  EXPECT_TRUE(PerNode().empty());
  EXPECT_NE(Dep().message.find(R"(Resources required for each replica: {"CPU":1.0,"GPU":1.0})"),
            std::string::npos)
      << Dep().message;
  EXPECT_NE(Dep().message.find(R"(total resources available: {"CPU":4.0,"memory":1000000000.0})"),
            std::string::npos)
      << Dep().message;
  ASSERT_TRUE(Join("gpu", {{"CPU", 2}, {"GPU", 1}}).ok());
  EXPECT_EQ(PerNode(), (std::map<std::string, int>{{"gpu", 1}}));
  EXPECT_EQ(Dep().message, "");
}

TEST_F(SchedulerTest, WholeGpusAreExclusive) {
  ASSERT_TRUE(Join("gpu", {{"CPU", 8}, {"GPU", 2}}).ok());
  ASSERT_TRUE(Deploy({Options(3, {{"num_cpus", 0}, {"num_gpus", 1}})}).ok());
  std::vector<std::string> devices;
  for (auto& req : ReplicaStarts()) devices.push_back(Env(req, "CUDA_VISIBLE_DEVICES"));
  std::sort(devices.begin(), devices.end());
  EXPECT_EQ(devices, (std::vector<std::string>{"0", "1"}));
  EXPECT_EQ(Dep().unschedulable, 1);
  // The replica learns its devices with its spec.
  for (auto& [id, r] : Dep().replicas) {
    if (!r.scheduled) continue;
    auto spec = loop_->GetReplicaSpec(id);
    ASSERT_TRUE(spec.ok());
    ASSERT_EQ(spec->gpu_ids_size(), 1);
    EXPECT_EQ(spec->gpu_ids(0), r.gpu_ids[0]);
    EXPECT_EQ(spec->node_id(), "gpu");
  }
}

TEST_F(SchedulerTest, FractionalGpusShareADevice) {
  ASSERT_TRUE(Join("gpu", {{"CPU", 8}, {"GPU", 2}}).ok());
  ASSERT_TRUE(Deploy({Options(4, {{"num_cpus", 0.5}, {"num_gpus", 0.5}})}).ok());
  std::vector<std::string> devices;
  for (auto& req : ReplicaStarts()) {
    devices.push_back(Env(req, "CUDA_VISIBLE_DEVICES"));
    EXPECT_EQ(Env(req, "OMP_NUM_THREADS"), "1");
  }
  std::sort(devices.begin(), devices.end());
  EXPECT_EQ(devices, (std::vector<std::string>{"0", "0", "1", "1"}));
}

TEST_F(SchedulerTest, OmpThreadsFollowNumCpusAndNoGpuLeavesCudaAlone) {
  ASSERT_TRUE(Deploy({Options(1, {{"num_cpus", 2}})}).ok());
  auto starts = ReplicaStarts();
  ASSERT_EQ(starts.size(), 1u);
  EXPECT_EQ(Env(starts[0], "OMP_NUM_THREADS"), "2");
  EXPECT_EQ(Env(starts[0], "CUDA_VISIBLE_DEVICES"), "<unset>");
}

TEST_F(SchedulerTest, CustomResourcesAndAcceleratorType) {
  ASSERT_TRUE(Join("plain", {{"CPU", 8}}).ok());
  ASSERT_TRUE(Join("tpu", {{"CPU", 8}, {"TPU", 4}, {"accelerator_type:A100", 1}}).ok());
  ASSERT_TRUE(Deploy({Options(2, {{"resources", {{"TPU", 2}}}, {"accelerator_type", "A100"}})}).ok());
  EXPECT_EQ(PerNode(), (std::map<std::string, int>{{"tpu", 2}}));
}

TEST_F(SchedulerTest, ADeadNodesReplicasAreReplacedElsewhere) {
  ASSERT_TRUE(Join("w1", {{"CPU", 4}}).ok());
  ASSERT_TRUE(Deploy({Options(2, {{"num_cpus", 1}})}).ok());
  Settle();
  ASSERT_EQ(PerNode(), (std::map<std::string, int>{{"node1", 1}, {"w1", 1}}));
  clock_.Advance(NodeHeartbeatTimeoutS() / 2);
  EXPECT_TRUE(loop_->NodeHeartbeat("w1").ok());
  loop_->Step();
  EXPECT_EQ(PerNode().size(), 2u);  // still alive
  clock_.Advance(NodeHeartbeatTimeoutS() + 1);
  loop_->Step();
  EXPECT_EQ(loop_->nodes().Get("w1")->status, NodeStatus::kDead);
  EXPECT_EQ(PerNode(), (std::map<std::string, int>{{"node1", 2}}));
  EXPECT_TRUE(Worker("w1").stopped.empty());  // nothing is sent to a dead node
  Settle();
  EXPECT_EQ(CountState(ReplicaState::kRunning), 2);
  EXPECT_EQ(loop_->NodeHeartbeat("w1").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(loop_->NodeHeartbeat("nobody").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Join("w1", {{"CPU", 4}}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(loop_->Details("")["nodes"]["w1"]["state"], "DEAD");
}

TEST_F(SchedulerTest, ScaleDownDropsPendingReplicasFirstAndFreesResources) {
  ASSERT_TRUE(Deploy({Options(6, {{"num_cpus", 1}})}).ok());
  EXPECT_EQ(PerNode(), (std::map<std::string, int>{{"node1", 4}}));
  EXPECT_EQ(Dep().unschedulable, 2);
  ASSERT_TRUE(Deploy({Options(6, {{"num_cpus", 1}})}, {{{"name", "D"}, {"num_replicas", 4}}}).ok());
  Settle();
  EXPECT_EQ(Dep().unschedulable, 0);
  EXPECT_EQ(CountState(ReplicaState::kRunning), 4);
  EXPECT_EQ(Dep().message, "");
}

TEST_F(SchedulerTest, RegisterRejectsBadRequests) {
  v1::RegisterNodeRequest req;
  req.set_agent_address("a");
  EXPECT_EQ(loop_->RegisterNode(req).code(), absl::StatusCode::kInvalidArgument);
  req.set_node_id("node1");
  EXPECT_EQ(loop_->RegisterNode(req).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace serve::controller::testing
