// Unit tests of the controller's autoscaling metrics store (spec §6.1, §6.2).

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "autoscaler/metrics_store.h"

namespace serve::autoscaler {
namespace {

constexpr char kKey[] = "app#D";

HandleMetrics Handle(std::string id, std::string source, double queued,
                     std::map<std::string, double> running, double ts) {
  HandleMetrics m;
  m.handle_id = std::move(id);
  m.source = std::move(source);
  m.queued = queued;
  m.running_by_replica = std::move(running);
  m.timestamp_s = ts;
  return m;
}

ReplicaMetrics Replica(std::string id, double running, double ts) {
  return ReplicaMetrics{std::move(id), running, ts};
}

double Interval10(const std::string&) { return 10; }

TEST(MetricsStoreTest, EmptyHasNoLoad) {
  MetricsStore s;
  EXPECT_EQ(s.TotalRequests(kKey, {"r1"}), 0);
  EXPECT_EQ(s.NumHandles(kKey), 0u);
}

TEST(MetricsStoreTest, NewestHandleReportWins) {
  MetricsStore s;
  s.RecordHandle(kKey, Handle("h1", "proxy:n1", 5, {}, 10), 0);
  s.RecordHandle(kKey, Handle("h1", "proxy:n1", 1, {}, 9), 1);  // older: ignored
  EXPECT_EQ(s.TotalRequests(kKey, {}), 5);
  s.RecordHandle(kKey, Handle("h1", "proxy:n1", 1, {}, 10), 1);  // same time: ignored
  EXPECT_EQ(s.TotalRequests(kKey, {}), 5);
  s.RecordHandle(kKey, Handle("h1", "proxy:n1", 2, {}, 11), 2);
  EXPECT_EQ(s.TotalRequests(kKey, {}), 2);
  EXPECT_EQ(s.NumHandles(kKey), 1u);
}

TEST(MetricsStoreTest, NewestReplicaReportWins) {
  MetricsStore s;
  s.RecordReplica(kKey, Replica("r1", 4, 10), 0);
  s.RecordReplica(kKey, Replica("r1", 1, 5), 1);
  EXPECT_EQ(s.TotalRequests(kKey, {"r1"}), 4);
  s.RecordReplica(kKey, Replica("r1", 3, 12), 2);
  EXPECT_EQ(s.TotalRequests(kKey, {"r1"}), 3);
}

TEST(MetricsStoreTest, HandleTotalsCountQueuedAndRunningOnRunningReplicas) {
  MetricsStore s;
  s.RecordHandle(kKey, Handle("h1", "proxy:n1", 2, {{"r1", 3}, {"r2", 4}, {"gone", 10}}, 1), 0);
  s.RecordHandle(kKey, Handle("h2", "replica:x", 1, {{"r1", 0.5}}, 1), 0);
  EXPECT_DOUBLE_EQ(s.TotalRequests(kKey, {"r1", "r2"}), 2 + 3 + 4 + 1 + 0.5);
  EXPECT_DOUBLE_EQ(s.TotalRequests(kKey, {"r1"}), 2 + 3 + 1 + 0.5);
  EXPECT_DOUBLE_EQ(s.TotalRequests(kKey, {}), 3);  // queued only
  EXPECT_EQ(s.NumHandles(kKey), 2u);
}

TEST(MetricsStoreTest, ReplicaValuesReplaceHandleRunning) {
  MetricsStore s;
  s.RecordHandle(kKey, Handle("h1", "proxy:n1", 2, {{"r1", 30}, {"r2", 40}}, 1), 0);
  s.RecordReplica(kKey, Replica("r1", 2, 1), 0);
  s.RecordReplica(kKey, Replica("r2", 3, 1), 0);
  s.RecordReplica(kKey, Replica("r3", 100, 1), 0);  // not running: ignored
  EXPECT_DOUBLE_EQ(s.TotalRequests(kKey, {"r1", "r2"}), 2 + 3 + 2);
}

TEST(MetricsStoreTest, ZeroReplicaValuesFallBackToHandles) {
  MetricsStore s;
  s.RecordHandle(kKey, Handle("h1", "proxy:n1", 2, {{"r1", 3}}, 1), 0);
  s.RecordReplica(kKey, Replica("r1", 0, 1), 0);
  EXPECT_DOUBLE_EQ(s.TotalRequests(kKey, {"r1"}), 5);
}

TEST(MetricsStoreTest, DeploymentsAreSeparate) {
  MetricsStore s;
  s.RecordHandle("app#A", Handle("h1", "proxy:n1", 2, {}, 1), 0);
  s.RecordHandle("app#B", Handle("h1", "proxy:n1", 7, {}, 1), 0);
  EXPECT_EQ(s.TotalRequests("app#A", {}), 2);
  EXPECT_EQ(s.TotalRequests("app#B", {}), 7);
  s.DropDeployment("app#A");
  EXPECT_EQ(s.TotalRequests("app#A", {}), 0);
  EXPECT_EQ(s.NumHandles("app#A"), 0u);
  EXPECT_EQ(s.TotalRequests("app#B", {}), 7);
}

TEST(MetricsStoreTest, StaleHandleReportsDropped) {
  MetricsStore s;
  s.RecordHandle(kKey, Handle("h1", "proxy:n1", 1, {}, 100), 0);
  s.RecordHandle(kKey, Handle("h2", "proxy:n2", 1, {}, 100), 15);
  s.DropStale(19.9, Interval10);  // timeout max(2 * 10, 10) = 20 s
  EXPECT_EQ(s.NumHandles(kKey), 2u);
  s.DropStale(20, Interval10);
  EXPECT_EQ(s.NumHandles(kKey), 1u);
  EXPECT_EQ(s.TotalRequests(kKey, {}), 1);
  s.DropStale(35, Interval10);
  EXPECT_EQ(s.NumHandles(kKey), 0u);
}

TEST(MetricsStoreTest, StaleTimeoutIsAtLeastTenSeconds) {
  MetricsStore s;
  s.RecordHandle(kKey, Handle("h1", "proxy:n1", 1, {}, 1), 0);
  auto interval = [](const std::string&) { return 1.0; };  // 2 * 1 < 10
  s.DropStale(9.9, interval);
  EXPECT_EQ(s.NumHandles(kKey), 1u);
  s.DropStale(10, interval);
  EXPECT_EQ(s.NumHandles(kKey), 0u);
}

TEST(MetricsStoreTest, NewReportRefreshesStaleness) {
  MetricsStore s;
  s.RecordHandle(kKey, Handle("h1", "proxy:n1", 1, {}, 1), 0);
  s.RecordHandle(kKey, Handle("h1", "proxy:n1", 1, {}, 2), 15);
  s.DropStale(30, Interval10);
  EXPECT_EQ(s.NumHandles(kKey), 1u);
  s.RecordHandle(kKey, Handle("h1", "proxy:n1", 1, {}, 2), 30);  // not newer: no refresh
  s.DropStale(35, Interval10);
  EXPECT_EQ(s.NumHandles(kKey), 0u);
}

TEST(MetricsStoreTest, StaleDroppingKeepsReplicaReports) {
  MetricsStore s;
  s.RecordReplica(kKey, Replica("r1", 2, 1), 0);
  s.DropStale(1000, Interval10);
  EXPECT_EQ(s.TotalRequests(kKey, {"r1"}), 2);
}

TEST(MetricsStoreTest, DropReplicaDropsItsReportsAndHostedHandles) {
  MetricsStore s;
  s.RecordReplica(kKey, Replica("r1", 2, 1), 0);
  s.RecordReplica(kKey, Replica("r2", 3, 1), 0);
  s.RecordHandle(kKey, Handle("h-on-r1", "replica:r1", 4, {}, 1), 0);
  s.RecordHandle("app#Other", Handle("h-on-r1b", "replica:r1", 5, {}, 1), 0);
  s.RecordHandle(kKey, Handle("h-proxy", "proxy:n1", 1, {}, 1), 0);
  s.DropReplica("r1");
  EXPECT_EQ(s.NumHandles(kKey), 1u);
  EXPECT_EQ(s.NumHandles("app#Other"), 0u);
  EXPECT_DOUBLE_EQ(s.TotalRequests(kKey, {"r1", "r2"}), 3 + 1);
}

TEST(MetricsStoreTest, DropSourceDropsHandlesOfThatProcess) {
  MetricsStore s;
  s.RecordHandle(kKey, Handle("h1", "proxy:n1", 1, {}, 1), 0);
  s.RecordHandle(kKey, Handle("h2", "proxy:n2", 2, {}, 1), 0);
  s.RecordHandle("app#Other", Handle("h3", "proxy:n1", 4, {}, 1), 0);
  s.RecordReplica(kKey, Replica("r1", 0, 1), 0);
  s.DropSource("proxy:n1");
  EXPECT_EQ(s.NumHandles(kKey), 1u);
  EXPECT_EQ(s.NumHandles("app#Other"), 0u);
  EXPECT_EQ(s.TotalRequests(kKey, {"r1"}), 2);
  s.DropSource("client:123");  // unknown: no change
  EXPECT_EQ(s.NumHandles(kKey), 1u);
}

TEST(MetricsStoreTest, DroppedHandleCanReportAgain) {
  MetricsStore s;
  s.RecordHandle(kKey, Handle("h1", "proxy:n1", 1, {}, 5), 0);
  s.DropSource("proxy:n1");
  s.RecordHandle(kKey, Handle("h1", "proxy:n1", 3, {}, 1), 1);
  EXPECT_EQ(s.TotalRequests(kKey, {}), 3);
}

}  // namespace
}  // namespace serve::autoscaler
