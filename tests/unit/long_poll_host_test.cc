#include "controller/long_poll_host.h"

#include <gtest/gtest.h>

#include "common/ids.h"

namespace serve::controller {
namespace {

v1::Update Targets(const std::string& key, int replicas) {
  v1::Update u;
  u.set_key(key);
  u.mutable_targets()->set_is_available(true);
  for (int i = 0; i < replicas; ++i) {
    u.mutable_targets()->add_replicas()->set_replica_id("r" + std::to_string(i));
  }
  return u;
}

struct Answer {
  bool called = false;
  bool timed_out = false;
  std::vector<v1::Update> updates;
};
LongPollHost::Reply Into(Answer& a) {
  return [&a](std::vector<v1::Update> u, bool t) {
    a.called = true;
    a.timed_out = t;
    a.updates = std::move(u);
  };
}

TEST(LongPollHostTest, SnapshotIdsStartRandomAndCountChanges) {
  LongPollHost host([] { return 4711; });
  const std::string key = TargetsKey({"app", "D"});
  host.Publish({{key, Targets(key, 1)}}, false);
  EXPECT_EQ(host.SnapshotId(key), 4711);
  host.Publish({{key, Targets(key, 1)}}, false);  // unchanged
  EXPECT_EQ(host.SnapshotId(key), 4711);
  host.Publish({{key, Targets(key, 2)}}, false);
  EXPECT_EQ(host.SnapshotId(key), 4712);
}

TEST(LongPollHostTest, ListenAnswersAtOnceWhenBehindElseAtTheNextChange) {
  LongPollHost host([] { return 10; });
  const std::string key = TargetsKey({"app", "D"});
  host.Publish({{key, Targets(key, 1)}}, false);
  Answer first;
  host.Listen({{key, -1}}, 100, false, Into(first));
  ASSERT_TRUE(first.called);
  ASSERT_EQ(first.updates.size(), 1u);
  EXPECT_EQ(first.updates[0].snapshot_id(), 10);
  Answer second;
  host.Listen({{key, 10}, {"UNKNOWN", -1}}, 100, false, Into(second));
  EXPECT_FALSE(second.called);
  host.Publish({{key, Targets(key, 3)}}, false);
  ASSERT_TRUE(second.called);
  ASSERT_EQ(second.updates.size(), 1u);
  EXPECT_EQ(second.updates[0].targets().replicas_size(), 3);
  EXPECT_EQ(second.updates[0].snapshot_id(), 11);
}

TEST(LongPollHostTest, DisappearedTargetsPublishUnavailableOnce) {
  LongPollHost host([] { return 1; });
  const std::string key = TargetsKey({"app", "D"});
  host.Publish({{key, Targets(key, 1)}}, false);
  Answer a;
  host.Listen({{key, 1}}, 100, false, Into(a));
  host.Publish({}, false);
  ASSERT_TRUE(a.called);
  EXPECT_FALSE(a.updates.at(0).targets().is_available());
  EXPECT_EQ(host.SnapshotId(key), 2);
  host.Publish({}, false);
  EXPECT_EQ(host.SnapshotId(key), 2);
}

TEST(LongPollHostTest, HoldsListenersWhileRecoveringAndExpiresThem) {
  LongPollHost host([] { return 1; });
  const std::string key(kRouteTableKey);
  v1::Update routes;
  routes.set_key(key);
  routes.mutable_route_table();
  host.Publish({{key, routes}}, true);
  Answer held;
  host.Listen({{key, -1}}, 50, true, Into(held));
  EXPECT_FALSE(held.called);
  host.Publish({{key, routes}}, false);  // recovery done: unchanged, but announced once
  EXPECT_TRUE(held.called);
  Answer waiting;
  host.Listen({{key, 1}}, 50, false, Into(waiting));
  host.Expire(49.9);
  EXPECT_FALSE(waiting.called);
  host.Expire(50);
  EXPECT_TRUE(waiting.called);
  EXPECT_TRUE(waiting.timed_out);
  EXPECT_EQ(host.NumListeners(), 0u);
}

TEST(IdsTest, EncodeAndParseRoundTrip) {
  DeploymentId id{"app", "Model"};
  EXPECT_EQ(id.Key(), "app#Model");
  EXPECT_EQ(DeploymentId::FromKey("app#Model"), id);
  EXPECT_EQ(ParseTargetsKey(TargetsKey(id)), id);
  EXPECT_FALSE(ParseTargetsKey("ROUTE_TABLE").has_value());
  EXPECT_EQ(ProcessTag::Parse("replica:abc"), ProcessTag::Replica("abc"));
  EXPECT_EQ(ProcessTag::Parse("build:app"), ProcessTag::Build("app"));
  EXPECT_EQ(ProcessTag::Parse("proxy"), ProcessTag::Proxy());
  EXPECT_EQ(ProcessTag::Parse("other").kind, ProcessTag::Kind::kOther);
  EXPECT_EQ(ProcessTag::Replica("x").Encode(), "replica:x");
}

}  // namespace
}  // namespace serve::controller
