// Autoscaling metrics of the router (spec §6.1): a real Router pushes HandleMetricsBatch to a
// test Controller service on a loopback gRPC port, while replica peers on loopback sockets
// hold the requests they accept until a test releases them, so queued and running counts can
// be set up exactly.

#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>

#include "router/metrics_reporter.h"
#include "router/router.h"
#include "rpc/framed_connection.h"
#include "rpc/grpc_util.h"
#include "serve/v1/controller.grpc.pb.h"
#include "serve/v1/dataplane.pb.h"

namespace serve::router {
namespace {
namespace asio = boost::asio;
using rpc::FrameType;

/// Records every HandleMetricsBatch it receives; every other RPC is UNIMPLEMENTED.
class RecordingController final : public v1::Controller::CallbackService {
 public:
  grpc::ServerUnaryReactor* RecordHandleMetrics(grpc::CallbackServerContext* ctx,
                                                const v1::HandleMetricsBatch* batch,
                                                v1::Empty*) override {
    {
      std::lock_guard lock(mu_);
      batches_.push_back(*batch);
    }
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  std::vector<v1::HandleMetricsBatch> batches() {
    std::lock_guard lock(mu_);
    return batches_;
  }
  size_t count() {
    std::lock_guard lock(mu_);
    return batches_.size();
  }

 private:
  std::mutex mu_;
  std::vector<v1::HandleMetricsBatch> batches_;
};

/// A replica data plane that accepts every request and answers it only on Release().
class HoldingReplica {
 public:
  HoldingReplica(asio::io_context& io, std::string id)
      : id_(std::move(id)), acceptor_(io, {asio::ip::make_address("127.0.0.1"), 0}) {
    Accept();
  }
  v1::RunningReplica Info(int max_ongoing) const {
    v1::RunningReplica r;
    r.set_replica_id(id_);
    r.set_node_id("local");
    r.set_data_address("127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()));
    r.set_max_ongoing_requests(max_ongoing);
    return r;
  }
  size_t held() const { return held_.size(); }
  int probes = 0;  // probes answered
  void ReleaseAll() {
    auto held = std::move(held_);
    held_.clear();
    for (auto& [conn, id] : held) {
      v1::ResponseHead head;
      head.set_accepted(true);
      head.set_ok(true);
      head.set_num_ongoing(static_cast<int>(held_.size()) + 1);
      if (auto c = conn.lock()) c->Send(FrameType::kResponse, id, rpc::EncodeEnvelope(head, id_));
    }
  }

 private:
  void Accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, asio::ip::tcp::socket s) {
      if (ec) return;
      auto conn = std::make_shared<rpc::FramedConnection>(std::move(s));
      std::weak_ptr<rpc::FramedConnection> weak = conn;
      conns_.push_back(conn);
      conn->Start([this, weak](rpc::Frame&& f) { OnFrame(weak, std::move(f)); }, [] {});
      Accept();
    });
  }
  void OnFrame(const std::weak_ptr<rpc::FramedConnection>& weak, rpc::Frame&& f) {
    auto conn = weak.lock();
    if (!conn) return;
    if (f.type == FrameType::kProbe) {
      ++probes;
      std::string p(4, '\0');
      uint32_t n = static_cast<uint32_t>(held_.size());
      std::memcpy(p.data(), &n, 4);
      conn->Send(FrameType::kProbeReply, f.id, std::move(p));
    } else if (f.type == FrameType::kRequest) {
      conn->Send(FrameType::kAccepted, f.id, {});
      held_.emplace_back(weak, f.id);
    }
  }

  std::string id_;
  asio::ip::tcp::acceptor acceptor_;
  std::vector<std::shared_ptr<rpc::FramedConnection>> conns_;
  std::vector<std::pair<std::weak_ptr<rpc::FramedConnection>, uint64_t>> held_;
};

class RouterMetricsTest : public ::testing::Test {
 protected:
  static constexpr char kKey[] = "app#Model";

  void SetUp() override {
    int port = 0;
    server_ = rpc::StartGrpcServer("127.0.0.1", 0, {&controller_}, &port);
    ASSERT_NE(server_, nullptr);
    address_ = "127.0.0.1:" + std::to_string(port);
  }
  void TearDown() override {
    router_.reset();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
  }

  /// A router pushing to the test controller every `push_interval_s`, recording every 10 ms.
  void StartRouter(double push_interval_s) {
    router_ = std::make_unique<Router>(io_.get_executor(), "local");
    MetricsOptions options;
    options.controller_address = address_;
    options.source = "proxy:node-1";
    options.handle_id = "handle-1";
    options.record_interval_s = 0.01;
    options.push_interval_s = push_interval_s;
    router_->EnableMetrics(std::move(options));
  }

  static v1::DeploymentTargets Targets(const std::vector<HoldingReplica*>& replicas,
                                       const std::string& aggregation, double look_back_s,
                                       bool autoscaling = true, int max_ongoing = 100) {
    v1::DeploymentTargets t;
    t.set_is_available(true);
    t.set_max_queued_requests(-1);
    for (auto* r : replicas) *t.add_replicas() = r->Info(max_ongoing);
    if (autoscaling) {
      t.mutable_autoscaling()->set_metrics_interval_s(10);
      t.mutable_autoscaling()->set_look_back_period_s(look_back_s);
      t.mutable_autoscaling()->set_aggregation_function(aggregation);
    }
    return t;
  }

  /// Runs the I/O loop until `done` holds (at most 10 s of wall time).
  bool RunUntil(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      RunFor(std::chrono::milliseconds(1));
    }
    return true;
  }
  /// Runs the I/O loop for `d` (an io_context that ran out of work must be restarted).
  void RunFor(std::chrono::milliseconds d) {
    if (io_.stopped()) io_.restart();
    io_.run_for(d);
  }

  struct Outcome {
    bool done = false;
    RouteResult result;
  };
  /// Routes a request to `key`; `out` receives its outcome.
  void Route(const std::string& key, const std::shared_ptr<Outcome>& out) {
    v1::RequestHead head;
    head.set_request_id("r" + std::to_string(++calls_));
    router_->Route(key, head, "x", [out](RouteResult&& r) {
      out->result = std::move(r);
      out->done = true;
    });
  }

  /// Waits for a report of `key` for which `match` holds; returns it.
  std::optional<v1::HandleMetricsReport> WaitForReport(
      const std::string& key, const std::function<bool(const v1::HandleMetricsReport&)>& match) {
    std::optional<v1::HandleMetricsReport> found;
    size_t seen = 0;
    RunUntil([&] {
      auto batches = controller_.batches();
      for (; seen < batches.size(); ++seen) {
        for (const auto& r : batches[seen].reports()) {
          if (r.deployment_key() == key && match(r)) found = r;
        }
      }
      return found.has_value();
    });
    return found;
  }

  RecordingController controller_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  asio::io_context io_;
  std::unique_ptr<Router> router_;
  int calls_ = 0;
};

TEST(MetricsWindowTest, AggregatesMeanMaxMinOverTheWindow) {
  MetricsWindow w;
  EXPECT_FALSE(w.Aggregate("mean").has_value());
  for (int i = 0; i < 4; ++i) w.Add(i, i);  // values 0 1 2 3 at t = 0..3
  EXPECT_DOUBLE_EQ(*w.Aggregate("mean"), 1.5);
  EXPECT_DOUBLE_EQ(*w.Aggregate("max"), 3);
  EXPECT_DOUBLE_EQ(*w.Aggregate("min"), 0);
  EXPECT_DOUBLE_EQ(*w.Aggregate(""), 1.5);  // unset: mean
  // A series shorter than the reference one: its missing points count as 0.
  EXPECT_DOUBLE_EQ(*w.Aggregate("mean", 6), 1.0);
  w.Prune(2);  // keeps t >= 2
  EXPECT_EQ(w.size(), 2u);
  EXPECT_DOUBLE_EQ(*w.Aggregate("mean"), 2.5);
  EXPECT_DOUBLE_EQ(*w.Aggregate("min"), 2);
}

TEST_F(RouterMetricsTest, ARequestQueuedAtZeroReplicasIsPushedAtOnceThenServed) {
  StartRouter(/*push_interval_s=*/3600);  // only the cold-start push can arrive
  router_->UpdateTargets(kKey, Targets({}, "min", 30));
  auto first = std::make_shared<Outcome>();
  Route(kKey, first);
  auto report = WaitForReport(kKey, [](const auto&) { return true; });
  ASSERT_TRUE(report.has_value());
  // "min" over a window of zeros would hide the request: at zero replicas the current queued
  // count is reported.
  EXPECT_DOUBLE_EQ(report->queued_requests(), 1);
  EXPECT_EQ(report->handle_id(), "handle-1");
  EXPECT_EQ(report->source(), "proxy:node-1");
  EXPECT_TRUE(report->running_requests().empty());
  EXPECT_GT(report->timestamp_s(), 1.6e9);
  EXPECT_EQ(controller_.count(), 1u);

  // The scale-up brings a replica: the queued request goes to it at once.
  HoldingReplica a(io_, "a");
  router_->UpdateTargets(kKey, Targets({&a}, "min", 30));
  ASSERT_TRUE(RunUntil([&] { return a.held() == 1; }));
  a.ReleaseAll();
  ASSERT_TRUE(RunUntil([&] { return first->done; }));
  EXPECT_EQ(first->result.code, RouteResult::Code::kOk);
  EXPECT_EQ(first->result.body, "a");
  EXPECT_EQ(controller_.count(), 1u);  // nothing else was due
}

TEST_F(RouterMetricsTest, RequestsQueuedBeforeTheTargetsArrivePushOnceTheyDo) {
  StartRouter(/*push_interval_s=*/3600);
  auto r = std::make_shared<Outcome>();
  Route(kKey, r);  // the deployment is not known yet
  RunFor(std::chrono::milliseconds(20));
  EXPECT_EQ(controller_.count(), 0u);
  router_->UpdateTargets(kKey, Targets({}, "mean", 30));
  auto report = WaitForReport(kKey, [](const auto&) { return true; });
  ASSERT_TRUE(report.has_value());
  EXPECT_DOUBLE_EQ(report->queued_requests(), 1);
}

TEST_F(RouterMetricsTest, ReportsRequestsRunningOnEachReplicaAndForgetsThemAfterTheWindow) {
  StartRouter(/*push_interval_s=*/0.05);
  HoldingReplica a(io_, "a");
  router_->UpdateTargets(kKey, Targets({&a}, "max", /*look_back_s=*/0.3));
  std::vector<std::shared_ptr<Outcome>> results;
  for (int i = 0; i < 3; ++i) {
    results.push_back(std::make_shared<Outcome>());
    Route(kKey, results.back());
  }
  ASSERT_TRUE(RunUntil([&] { return a.held() == 3; }));
  auto busy = WaitForReport(kKey, [](const v1::HandleMetricsReport& r) {
    auto it = r.running_requests().find("a");
    return it != r.running_requests().end() && it->second == 3;
  });
  ASSERT_TRUE(busy.has_value());
  EXPECT_DOUBLE_EQ(busy->queued_requests(), 0);
  a.ReleaseAll();
  ASSERT_TRUE(RunUntil([&] { return results[0]->done && results[1]->done && results[2]->done; }));
  // Once the busy points leave the 0.3 s window the max drops to 0.
  auto idle = WaitForReport(kKey, [](const v1::HandleMetricsReport& r) {
    auto it = r.running_requests().find("a");
    return it != r.running_requests().end() && it->second == 0;
  });
  ASSERT_TRUE(idle.has_value());
}

TEST_F(RouterMetricsTest, MeanOverTheWindowOfQueuedAndRunningRequests) {
  StartRouter(/*push_interval_s=*/0.05);
  HoldingReplica a(io_, "a");
  // One slot: one request runs, the next ones wait in the router.
  router_->UpdateTargets(kKey, Targets({&a}, "mean", /*look_back_s=*/1, true, /*max=*/1));
  // The probe answer (0) must not overwrite the count of the first request sent.
  ASSERT_TRUE(RunUntil([&] { return a.probes == 1; }));
  std::vector<std::shared_ptr<Outcome>> results;
  auto route = [&] {
    results.push_back(std::make_shared<Outcome>());
    Route(kKey, results.back());
  };
  route();
  ASSERT_TRUE(RunUntil([&] { return a.held() == 1; }));
  auto running = [](const v1::HandleMetricsReport& r) {
    auto it = r.running_requests().find("a");
    return it == r.running_requests().end() ? -1.0 : it->second;
  };
  // A window full of equal points: the mean is exact.
  ASSERT_TRUE(WaitForReport(kKey, [&](const v1::HandleMetricsReport& r) {
    return r.queued_requests() == 0 && running(r) == 1;
  }));
  route();
  route();  // two requests now wait for the slot
  // The window mixes zeros and twos for a second: the mean lies in between...
  auto mixed = WaitForReport(kKey, [](const v1::HandleMetricsReport& r) {
    return r.queued_requests() > 0;
  });
  ASSERT_TRUE(mixed.has_value());
  EXPECT_LT(mixed->queued_requests(), 2);
  // ...until the zeros leave it.
  auto steady = WaitForReport(kKey, [&](const v1::HandleMetricsReport& r) {
    EXPECT_LE(r.queued_requests(), 2);
    return r.queued_requests() == 2 && running(r) == 1;
  });
  ASSERT_TRUE(steady.has_value());
  EXPECT_EQ(a.held(), 1u);
  ASSERT_TRUE(RunUntil([&] {
    a.ReleaseAll();
    return results[0]->done && results[1]->done && results[2]->done;
  }));
}

TEST_F(RouterMetricsTest, DeploymentsWithoutAutoscalingAreNotReported) {
  StartRouter(/*push_interval_s=*/0.03);
  HoldingReplica a(io_, "a"), b(io_, "b");
  router_->UpdateTargets(kKey, Targets({&a}, "mean", 1));
  router_->UpdateTargets("app#Fixed", Targets({&b}, "mean", 1, /*autoscaling=*/false));
  auto r1 = std::make_shared<Outcome>(), r2 = std::make_shared<Outcome>();
  Route(kKey, r1);
  Route("app#Fixed", r2);
  ASSERT_TRUE(RunUntil([&] { return controller_.count() >= 3; }));
  for (const auto& batch : controller_.batches()) {
    ASSERT_EQ(batch.reports_size(), 1);
    EXPECT_EQ(batch.reports(0).deployment_key(), kKey);
    EXPECT_EQ(batch.reports(0).running_requests().count("b"), 0u);
  }
  // Autoscaling turned off: the reports stop.
  router_->UpdateTargets(kKey, Targets({&a}, "mean", 1, /*autoscaling=*/false));
  RunFor(std::chrono::milliseconds(20));  // lets a push in flight land
  size_t before = controller_.count();
  RunFor(std::chrono::milliseconds(150));
  EXPECT_EQ(controller_.count(), before);
  a.ReleaseAll();
  b.ReleaseAll();
  ASSERT_TRUE(RunUntil([&] { return r1->done && r2->done; }));
}

TEST(RouterMetricsFailureTest, AControllerWithoutTheRpcDoesNotDisturbRouting) {
  v1::Controller::CallbackService unimplemented;
  int port = 0;
  auto server = rpc::StartGrpcServer("127.0.0.1", 0, {&unimplemented}, &port);
  ASSERT_NE(server, nullptr);
  asio::io_context io;
  {
    Router router(io.get_executor(), "local");
    MetricsOptions options;
    options.controller_address = "127.0.0.1:" + std::to_string(port);
    options.source = "client:1";
    options.record_interval_s = 0.01;
    options.push_interval_s = 0.01;
    router.EnableMetrics(std::move(options));
    HoldingReplica a(io, "a");
    v1::DeploymentTargets t;
    t.set_is_available(true);
    t.mutable_autoscaling()->set_metrics_interval_s(0.01);
    t.mutable_autoscaling()->set_look_back_period_s(1);
    bool done = false;
    RouteResult out;
    v1::RequestHead head;
    head.set_request_id("x");
    router.UpdateTargets("app#D", t);
    router.Route("app#D", head, "x", [&](RouteResult&& r) {
      out = std::move(r);
      done = true;
    });
    io.run_for(std::chrono::milliseconds(100));  // several failed pushes
    *t.add_replicas() = a.Info(10);
    router.UpdateTargets("app#D", t);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (a.held() == 0 && std::chrono::steady_clock::now() < deadline) {
      io.run_for(std::chrono::milliseconds(1));
    }
    a.ReleaseAll();
    while (!done && std::chrono::steady_clock::now() < deadline) {
      io.run_for(std::chrono::milliseconds(1));
    }
    ASSERT_TRUE(done);
    EXPECT_EQ(out.code, RouteResult::Code::kOk);
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
}

}  // namespace
}  // namespace serve::router
