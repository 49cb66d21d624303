// Router tests over loopback sockets: the real Router and FramedConnection against scripted
// replica peers that answer probes and requests with the queue lengths a test chooses, so the
// power-of-two-choices decisions, the queue-length cache and the accept/retry rules can be
// checked request by request.

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>

#include "router/router.h"
#include "rpc/framed_connection.h"
#include "serve/v1/controller.pb.h"
#include "serve/v1/dataplane.pb.h"

namespace serve::router {
namespace {
namespace asio = boost::asio;
using rpc::FrameType;

/// A replica's data plane reduced to what the router sees: it answers probes with `queue_len`,
/// and requests per `mode`.
class ScriptedReplica {
 public:
  enum class Mode {
    kServe,           ///< kAccepted, then a reply reporting `queue_len`
    kReject,          ///< a rejection reporting `queue_len`
    kAcceptThenDrop,  ///< kAccepted, then the connection closes
    kDrop,            ///< the connection closes before accepting
  };
  ScriptedReplica(asio::io_context& io, std::string id)
      : id_(std::move(id)), acceptor_(io, {asio::ip::make_address("127.0.0.1"), 0}) {
    Accept();
  }

  v1::RunningReplica Info(int max_ongoing) const {
    v1::RunningReplica r;
    r.set_replica_id(id_);
    r.set_node_id(node_id);
    r.set_data_address("127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()));
    r.set_max_ongoing_requests(max_ongoing);
    return r;
  }

  int queue_len = 0;
  Mode mode = Mode::kServe;
  std::string node_id = "local";
  int requests = 0;  // requests received
  int probes = 0;    // probes answered

 private:
  void Accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, asio::ip::tcp::socket s) {
      if (ec) return;
      auto conn = std::make_shared<rpc::FramedConnection>(std::move(s));
      std::weak_ptr<rpc::FramedConnection> weak = conn;
      conns_.push_back(conn);
      conn->Start([this, weak](rpc::Frame&& f) { OnFrame(weak.lock(), std::move(f)); }, [] {});
      Accept();
    });
  }

  void OnFrame(const std::shared_ptr<rpc::FramedConnection>& conn, rpc::Frame&& f) {
    if (!conn) return;
    if (f.type == FrameType::kProbe) {
      ++probes;
      std::string p(4, '\0');
      uint32_t n = static_cast<uint32_t>(queue_len);
      std::memcpy(p.data(), &n, 4);
      conn->Send(FrameType::kProbeReply, f.id, std::move(p));
      return;
    }
    if (f.type != FrameType::kRequest) return;
    ++requests;
    v1::ResponseHead head;
    head.set_num_ongoing(queue_len);
    switch (mode) {
      case Mode::kReject:
        head.set_accepted(false);
        conn->Send(FrameType::kResponse, f.id, rpc::EncodeEnvelope(head, {}));
        return;
      case Mode::kDrop:
        conn->Close();
        return;
      case Mode::kAcceptThenDrop:
        conn->Send(FrameType::kAccepted, f.id, {});  // written when this read batch ends
        asio::post(acceptor_.get_executor(), [conn] { conn->Close(); });
        return;
      case Mode::kServe:
        conn->Send(FrameType::kAccepted, f.id, {});
        head.set_accepted(true);
        head.set_ok(true);
        // The reply counts this request as still ongoing (the router subtracts it).
        head.set_num_ongoing(queue_len + 1);
        conn->Send(FrameType::kResponse, f.id, rpc::EncodeEnvelope(head, id_));
        return;
    }
  }

  std::string id_;
  asio::ip::tcp::acceptor acceptor_;
  std::vector<std::shared_ptr<rpc::FramedConnection>> conns_;
};

class RouterTest : public ::testing::Test {
 protected:
  static constexpr char kKey[] = "app#Model";

  void SetTargets(const std::vector<ScriptedReplica*>& replicas, int max_ongoing = 100) {
    v1::DeploymentTargets t;
    t.set_is_available(true);
    for (auto* r : replicas) *t.add_replicas() = r->Info(max_ongoing);
    router_.UpdateTargets(kKey, t);
  }

  /// Runs the I/O loop until `done` holds (at most 10 s of wall time).
  bool RunUntil(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      io_.run_for(std::chrono::milliseconds(1));
    }
    return true;
  }

  /// Routes one request and waits for its outcome.
  RouteResult Call() {
    v1::RequestHead head;
    head.set_request_id("r" + std::to_string(++calls_));
    bool finished = false;
    RouteResult out;
    router_.Route(kKey, head, "x", [&](RouteResult&& r) {
      out = std::move(r);
      finished = true;
    });
    EXPECT_TRUE(RunUntil([&] { return finished; }));
    return out;
  }

  asio::io_context io_;
  Router router_{io_.get_executor(), "local"};
  int calls_ = 0;
};

TEST_F(RouterTest, ProbesNewReplicasAndPrefersTheShorterReportedQueue) {
  ScriptedReplica a(io_, "a"), b(io_, "b");
  a.queue_len = 0;
  b.queue_len = 50;
  SetTargets({&a, &b});
  ASSERT_TRUE(RunUntil([&] { return a.probes == 1 && b.probes == 1; }));
  for (int i = 0; i < 20; ++i) {
    RouteResult r = Call();
    ASSERT_EQ(r.code, RouteResult::Code::kOk);
    EXPECT_EQ(r.body, "a");
  }
  EXPECT_EQ(a.requests, 20);
  EXPECT_EQ(b.requests, 0);
}

TEST_F(RouterTest, QueueLengthsInRepliesUpdateTheCache) {
  ScriptedReplica a(io_, "a"), b(io_, "b");
  a.queue_len = 0;
  b.queue_len = 10;
  SetTargets({&a, &b});
  ASSERT_TRUE(RunUntil([&] { return a.probes == 1 && b.probes == 1; }));
  EXPECT_EQ(Call().body, "a");
  // `a` now reports a long queue in its reply; without further probes the router must learn it
  // from that reply and move to `b`.
  a.queue_len = 90;
  EXPECT_EQ(Call().body, "a");
  for (int i = 0; i < 10; ++i) EXPECT_EQ(Call().body, "b");
  EXPECT_EQ(a.probes, 1);
  EXPECT_EQ(b.probes, 1);
}

TEST_F(RouterTest, AFullReplicaIsNotChosen) {
  ScriptedReplica a(io_, "a"), b(io_, "b");
  a.queue_len = 5;  // == max_ongoing_requests
  b.queue_len = 4;
  SetTargets({&a, &b}, /*max_ongoing=*/5);
  ASSERT_TRUE(RunUntil([&] { return a.probes == 1 && b.probes == 1; }));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Call().body, "b");
  EXPECT_EQ(a.requests, 0);
}

TEST_F(RouterTest, PrefersReplicasOnItsOwnNodeWhileTheyHaveRoom) {
  ScriptedReplica a(io_, "a"), b(io_, "b"), c(io_, "c");
  a.queue_len = 3;  // local, but busier than the remote ones
  b.node_id = c.node_id = "elsewhere";
  SetTargets({&a, &b, &c}, /*max_ongoing=*/4);
  ASSERT_TRUE(RunUntil([&] { return a.probes == 1 && b.probes == 1 && c.probes == 1; }));
  for (int i = 0; i < 10; ++i) EXPECT_EQ(Call().body, "a");
  a.queue_len = 4;  // full: the other nodes' replicas take over
  EXPECT_EQ(Call().body, "a");  // this reply tells the router
  for (int i = 0; i < 10; ++i) EXPECT_NE(Call().body, "a");
  EXPECT_EQ(b.requests + c.requests, 10);
}

TEST_F(RouterTest, AReplicaThatCannotBeReachedIsAvoidedWhileOthersCanServe) {
  // The local replica's process is gone (its port refuses connections) and no update comes
  // (the controller is down too): requests go to the remote replica instead of retrying the
  // dead one forever.
  ScriptedReplica b(io_, "b");
  b.node_id = "elsewhere";
  v1::RunningReplica dead;
  {
    asio::ip::tcp::acceptor closed(io_, {asio::ip::make_address("127.0.0.1"), 0});
    dead.set_data_address("127.0.0.1:" + std::to_string(closed.local_endpoint().port()));
  }
  dead.set_replica_id("dead");
  dead.set_node_id("local");
  dead.set_max_ongoing_requests(100);
  v1::DeploymentTargets t;
  t.set_is_available(true);
  *t.add_replicas() = dead;
  *t.add_replicas() = b.Info(100);
  router_.UpdateTargets(kKey, t);
  for (int i = 0; i < 10; ++i) {
    RouteResult r = Call();
    ASSERT_EQ(r.code, RouteResult::Code::kOk);
    EXPECT_EQ(r.body, "b");
  }
}

TEST_F(RouterTest, AReplicaWhoseConnectionFailedIsPreferredAgainOnceItReconnects) {
  ScriptedReplica a(io_, "a"), b(io_, "b");
  a.mode = ScriptedReplica::Mode::kDrop;  // local, preferred, but drops every connection
  b.node_id = "elsewhere";
  SetTargets({&a, &b});
  ASSERT_TRUE(RunUntil([&] { return a.probes == 1 && b.probes == 1; }));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Call().body, "b");
  EXPECT_GE(a.requests, 1);
  // It recovers: the router's background reconnect (a probe) makes it reachable again.
  a.mode = ScriptedReplica::Mode::kServe;
  ASSERT_TRUE(RunUntil([&] { return Call().body == "a"; }));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Call().body, "a");
}

TEST_F(RouterTest, ARejectedRequestIsRetriedOnAnotherReplica) {
  ScriptedReplica a(io_, "a"), b(io_, "b");
  a.mode = ScriptedReplica::Mode::kReject;
  a.queue_len = 0;  // looks free until it rejects
  b.queue_len = 0;
  SetTargets({&a, &b});
  for (int i = 0; i < 10; ++i) {
    RouteResult r = Call();
    ASSERT_EQ(r.code, RouteResult::Code::kOk);
    EXPECT_EQ(r.body, "b");
  }
}

TEST_F(RouterTest, ARequestLostBeforeAcceptanceIsRetried) {
  ScriptedReplica a(io_, "a");
  a.mode = ScriptedReplica::Mode::kDrop;
  SetTargets({&a});
  ASSERT_TRUE(RunUntil([&] { return a.probes == 1; }));
  v1::RequestHead head;
  head.set_request_id("lost");
  bool finished = false;
  RouteResult out;
  router_.Route(kKey, head, "x", [&](RouteResult&& r) {
    out = std::move(r);
    finished = true;
  });
  ASSERT_TRUE(RunUntil([&] { return a.requests >= 1; }));
  // The replica is replaced: the request, never started, goes to the new one.
  ScriptedReplica b(io_, "b");
  SetTargets({&b});
  ASSERT_TRUE(RunUntil([&] { return finished; }));
  EXPECT_EQ(out.code, RouteResult::Code::kOk);
  EXPECT_EQ(out.body, "b");
}

TEST_F(RouterTest, ARequestLostAfterAcceptanceFailsAndIsNotRetried) {
  ScriptedReplica a(io_, "a"), b(io_, "b");
  a.mode = ScriptedReplica::Mode::kAcceptThenDrop;
  b.queue_len = 60;  // so that the first request goes to `a`
  SetTargets({&a, &b});
  ASSERT_TRUE(RunUntil([&] { return a.probes == 1 && b.probes == 1; }));
  RouteResult r = Call();
  EXPECT_EQ(r.code, RouteResult::Code::kReplicaDied);
  EXPECT_NE(r.error.find("died while handling request"), std::string::npos) << r.error;
  EXPECT_EQ(a.requests, 1);
  EXPECT_EQ(b.requests, 0);
}

TEST_F(RouterTest, ARequestRoutedAtZeroReplicasIsSentAsSoonAsAReplicaArrives) {
  ScriptedReplica a(io_, "a");  // started, not yet in the set (and keeps io_ busy)
  SetTargets({});               // available, scaled to zero
  v1::RequestHead head;
  head.set_request_id("cold");
  bool finished = false;
  RouteResult out;
  router_.Route(kKey, head, "x", [&](RouteResult&& r) {
    out = std::move(r);
    finished = true;
  });
  io_.run_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(finished);  // it waits; no "no replicas" failure
  auto start = std::chrono::steady_clock::now();
  SetTargets({&a});
  ASSERT_TRUE(RunUntil([&] { return finished; }));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500));
  EXPECT_EQ(out.code, RouteResult::Code::kOk);
  EXPECT_EQ(out.body, "a");
}

TEST_F(RouterTest, ARequestRoutedBeforeAnyTargetsWaitsForThem) {
  ScriptedReplica a(io_, "a");
  bool finished = false;
  RouteResult out;
  v1::RequestHead head;
  head.set_request_id("early");
  router_.Route(kKey, head, "x", [&](RouteResult&& r) {
    out = std::move(r);
    finished = true;
  });
  io_.run_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(finished);
  SetTargets({&a});
  ASSERT_TRUE(RunUntil([&] { return finished; }));
  EXPECT_EQ(out.code, RouteResult::Code::kOk);
}

TEST_F(RouterTest, CancellingAQueuedRequestFreesItsPlaceInTheQueue) {
  v1::DeploymentTargets t;
  t.set_is_available(true);
  t.set_max_queued_requests(1);
  router_.UpdateTargets(kKey, t);
  int first_calls = 0;
  RouteResult first;
  v1::RequestHead head;
  head.set_request_id("first");
  uint64_t id = router_.Route(kKey, head, "x", [&](RouteResult&& r) {
    first = std::move(r);
    ++first_calls;
  });
  ASSERT_NE(id, 0u);
  router_.Cancel(id);
  EXPECT_EQ(first_calls, 1);
  EXPECT_EQ(first.code, RouteResult::Code::kCancelled);
  router_.Cancel(id);  // a second cancel is a no-op
  EXPECT_EQ(first_calls, 1);
  // The cancelled request no longer counts against max_queued_requests.
  bool finished = false;
  RouteResult second;
  head.set_request_id("second");
  ASSERT_NE(router_.Route(kKey, head, "x",
                          [&](RouteResult&& r) {
                            second = std::move(r);
                            finished = true;
                          }),
            0u);
  ScriptedReplica a(io_, "a");
  *t.add_replicas() = a.Info(100);
  router_.UpdateTargets(kKey, t);
  ASSERT_TRUE(RunUntil([&] { return finished; }));
  EXPECT_EQ(second.code, RouteResult::Code::kOk);
  EXPECT_EQ(a.requests, 1);  // the cancelled one was never sent
  EXPECT_EQ(first_calls, 1);
}

TEST_F(RouterTest, BeyondMaxQueuedRequestsAtZeroReplicasIsBackPressure) {
  v1::DeploymentTargets t;
  t.set_is_available(true);
  t.set_max_queued_requests(1);
  router_.UpdateTargets(kKey, t);
  v1::RequestHead head;
  head.set_request_id("queued");
  EXPECT_NE(router_.Route(kKey, head, "x", [](RouteResult&&) {}), 0u);
  RouteResult out;
  head.set_request_id("dropped");
  EXPECT_EQ(router_.Route(kKey, head, "x", [&](RouteResult&& r) { out = std::move(r); }), 0u);
  EXPECT_EQ(out.code, RouteResult::Code::kBackPressure);
  EXPECT_NE(out.error.find("num_queued_requests=1, max_queued_requests=1"), std::string::npos)
      << out.error;
}

// ------------------------------------------------------------------ model multiplexing

class MultiplexRouterTest : public RouterTest {
 protected:
  /// Publishes `replicas` with the model ids each holds.
  void SetModels(Router& router,
                 const std::vector<std::pair<ScriptedReplica*, std::vector<std::string>>>& replicas,
                 int max_ongoing = 100) {
    v1::DeploymentTargets t;
    t.set_is_available(true);
    for (auto& [r, models] : replicas) {
      v1::RunningReplica info = r->Info(max_ongoing);
      for (auto& m : models) info.add_multiplexed_model_ids(m);
      *t.add_replicas() = info;
    }
    router.UpdateTargets(kKey, t);
  }
  /// Routes one request for `model`; `*out` is set when it finishes.
  void Send(Router& router, const std::string& model, std::optional<RouteResult>* out) {
    v1::RequestHead head;
    head.set_request_id("m" + std::to_string(++calls_));
    head.set_multiplexed_model_id(model);
    router.Route(kKey, head, "x", [out](RouteResult&& r) { *out = std::move(r); });
  }
  std::string CallModel(Router& router, const std::string& model) {
    std::optional<RouteResult> out;
    Send(router, model, &out);
    EXPECT_TRUE(RunUntil([&] { return out.has_value(); }));
    return out ? out->body : "";
  }
};

TEST_F(MultiplexRouterTest, RequestsGoToTheReplicasHoldingTheirModel) {
  ScriptedReplica a(io_, "a"), b(io_, "b"), c(io_, "c");
  c.queue_len = 0;
  a.queue_len = b.queue_len = 20;  // busier, yet they hold the models
  SetModels(router_, {{&a, {"m1", "m3"}}, {&b, {"m2"}}, {&c, {}}});
  ASSERT_TRUE(RunUntil([&] { return a.probes == 1 && b.probes == 1 && c.probes == 1; }));
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(CallModel(router_, "m1"), "a");
    EXPECT_EQ(CallModel(router_, "m2"), "b");
    EXPECT_EQ(CallModel(router_, "m3"), "a");
  }
  EXPECT_EQ(c.requests, 0);
  for (int i = 0; i < 10; ++i) Call();  // no model id: power of two choices over all three
  EXPECT_GT(c.requests, 0);
}

TEST_F(MultiplexRouterTest, AnUnheldModelGoesToTheFewestModelsReplicaOnceUntilReported) {
  ScriptedReplica a(io_, "a"), b(io_, "b"), c(io_, "c");
  SetModels(router_, {{&a, {"x", "y"}}, {&b, {"z"}}, {&c, {}}});
  ASSERT_TRUE(RunUntil([&] { return a.probes == 1 && b.probes == 1 && c.probes == 1; }));
  std::optional<RouteResult> first, second;
  Send(router_, "new", &first);
  Send(router_, "new", &second);
  ASSERT_TRUE(RunUntil([&] { return first.has_value(); }));
  EXPECT_EQ(first->body, "c");
  // The second waits for "new" to be reported (well within its matching timeout)...
  io_.run_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(second.has_value());
  EXPECT_EQ(c.requests, 1);
  // ...and follows it to its replica once it is.
  SetModels(router_, {{&a, {"x", "y"}}, {&b, {"z"}}, {&c, {"new"}}});
  ASSERT_TRUE(RunUntil([&] { return second.has_value(); }));
  EXPECT_EQ(second->body, "c");
  EXPECT_EQ(a.requests + b.requests, 0);
}

TEST_F(MultiplexRouterTest, FullHoldersAreAwaitedUntilTheMatchingTimeoutThenOthersServe) {
  ::setenv("RAY_SERVE_MULTIPLEXED_MODEL_ID_MATCHING_TIMEOUT_S", "0.2", 1);
  Router router(io_.get_executor(), "local");
  ::unsetenv("RAY_SERVE_MULTIPLEXED_MODEL_ID_MATCHING_TIMEOUT_S");
  ScriptedReplica a(io_, "a"), b(io_, "b");
  a.queue_len = 5;  // holds the model but is full
  SetModels(router, {{&a, {"m"}}, {&b, {}}}, /*max_ongoing=*/5);
  ASSERT_TRUE(RunUntil([&] { return a.probes == 1 && b.probes == 1; }));
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(CallModel(router, "m"), "b");
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(waited, 0.2);  // the timeout is uniform in [T, 2T]
  EXPECT_LT(waited, 1.5);
  EXPECT_EQ(a.requests, 0);
}

TEST_F(MultiplexRouterTest, ModelIdsAreIgnoredWhenMultiplexedRoutingIsOff) {
  ::setenv("SERVE_MULTIPLEXED_ROUTING", "0", 1);
  Router router(io_.get_executor(), "local");
  ::unsetenv("SERVE_MULTIPLEXED_ROUTING");
  ScriptedReplica a(io_, "a"), b(io_, "b");
  a.queue_len = 20;
  SetModels(router, {{&a, {"m"}}, {&b, {}}});
  ASSERT_TRUE(RunUntil([&] { return a.probes == 1 && b.probes == 1; }));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(CallModel(router, "m"), "b");
}

}  // namespace
}  // namespace serve::router
