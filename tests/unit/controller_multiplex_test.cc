// Model multiplexing in the controller: replicas' reported model ids are kept per replica,
// published with the replica set, and dropped with the replica.

#include "common/ids.h"
#include "controller/endpoint_state.h"
#include "controller_test_base.h"

namespace serve::controller::testing {
namespace {

v1::MultiplexedModelIds Report(const std::string& replica, std::vector<std::string> ids) {
  v1::MultiplexedModelIds msg;
  msg.set_replica_id(replica);
  for (auto& id : ids) msg.add_model_ids(id);
  return msg;
}

// The model ids routers get for `replica` in the published targets of deployment D.
std::vector<std::string> Published(ControlLoop& loop, const DeploymentState& dep,
                                   const std::string& replica) {
  std::vector<std::string> out;
  bool answered = false;
  loop.Listen({{TargetsKey(dep.id), -1}}, [&](std::vector<v1::Update> updates, bool) {
    answered = true;
    for (auto& u : updates) {
      for (auto& r : u.targets().replicas()) {
        if (r.replica_id() == replica) out.assign(r.multiplexed_model_ids().begin(),
                                                  r.multiplexed_model_ids().end());
      }
    }
  });
  EXPECT_TRUE(answered);
  return out;
}

TEST_F(ControllerTest, ReportedModelIdsArePublishedWithTheReplicaSet) {
  ASSERT_TRUE(Deploy({{{"name", "D"}, {"num_replicas", 2}}}).ok());
  Settle();
  auto running = Replicas(ReplicaState::kRunning);
  ASSERT_EQ(running.size(), 2u);
  const std::string r1 = running[0], r2 = running[1];

  uint64_t generation = loop_->deployments().generation();
  loop_->RecordMultiplexedModelIds(Report(r1, {"b", "a", "b"}));
  EXPECT_NE(loop_->deployments().generation(), generation);  // a change is re-published
  loop_->Step();
  EXPECT_EQ(Published(*loop_, Dep(), r1), std::vector<std::string>({"a", "b"}));
  EXPECT_TRUE(Published(*loop_, Dep(), r2).empty());
  v1::Update targets = TargetsObject(Dep(), NodeTable{});
  for (auto& r : targets.targets().replicas()) {
    EXPECT_EQ(r.multiplexed_model_ids_size(), r.replica_id() == r1 ? 2 : 0);
  }

  // The same set again, or a report from a replica nobody knows, changes nothing.
  generation = loop_->deployments().generation();
  loop_->RecordMultiplexedModelIds(Report(r1, {"a", "b"}));
  loop_->RecordMultiplexedModelIds(Report("nobody", {"x"}));
  EXPECT_EQ(loop_->deployments().generation(), generation);

  loop_->RecordMultiplexedModelIds(Report(r2, {"c"}));
  loop_->RecordMultiplexedModelIds(Report(r1, {}));
  loop_->Step();
  EXPECT_TRUE(Published(*loop_, Dep(), r1).empty());
  EXPECT_EQ(Published(*loop_, Dep(), r2), std::vector<std::string>({"c"}));
  EXPECT_EQ(Dep().multiplexed_model_ids.count(r1), 0u);

  // A replica that dies takes its entry with it.
  Exit(agent_.pid_by_tag["replica:" + r2], "replica:" + r2);
  loop_->Step();
  EXPECT_EQ(Dep().multiplexed_model_ids.count(r2), 0u);
}

}  // namespace
}  // namespace serve::controller::testing
