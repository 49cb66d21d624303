// Local testing mode (serve/testing.h): applications run inside the test process, called
// through ordinary handles, with the replica's execution code.

#include <serve/batching.h>
#include <serve/multiplex.h>
#include <serve/serve.h>
#include <serve/testing.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace {

using serve::testing::run_local;

// --- Composition: bound arguments, handles, chaining ------------------------------------------

class Adder {
 public:
  explicit Adder(int n) : n_(n) {}
  int operator()(int x) const { return x + n_; }

 private:
  int n_;
};

class Multiplier {
 public:
  explicit Multiplier(int k) : k_(k) {}
  int operator()(int x) const { return x * k_; }

 private:
  int k_;
};

class Pipeline {
 public:
  Pipeline(serve::DeploymentHandle adder, serve::DeploymentHandle multiplier)
      : adder_(std::move(adder)), multiplier_(std::move(multiplier)) {}
  // The adder's response is chained into the multiplier call, unresolved.
  int operator()(int x) const { return multiplier_.remote<int>(adder_.remote(x)).result(5.0); }

 private:
  serve::DeploymentHandle adder_;
  serve::DeploymentHandle multiplier_;
};

TEST(LocalTestingTest, ComposesBoundDeploymentsAndChainsResponses) {
  auto app = run_local(serve::deployment<Pipeline>().bind(serve::deployment<Adder>().bind(1),
                                                          serve::deployment<Multiplier>().bind(3)));
  EXPECT_EQ(app.ingress().remote<int>(4).result(5.0), 15);  // (4 + 1) * 3
  // Every deployment is reachable by name, the callees built first.
  EXPECT_EQ(app.deployments(), (std::vector<std::string>{"Pipeline", "Adder", "Multiplier"}));
  EXPECT_EQ(app.handle("Adder").remote<int>(10).result(5.0), 11);
  // Chaining from the test itself.
  EXPECT_EQ(app.handle("Multiplier").remote<int>(app.handle("Adder").remote(1)).result(5.0), 6);
  EXPECT_EQ(serve::get_app_handle("default").remote<int>(0).result(5.0), 3);
}

// A constructor may call the deployments it was bound to: they are built first.
class Warmup {
 public:
  explicit Warmup(serve::DeploymentHandle adder) : warm_(adder.remote<int>(41).result(5.0)) {}
  int operator()() const { return warm_; }

 private:
  int warm_;
};

TEST(LocalTestingTest, ConstructorCallsItsCallees) {
  auto app = run_local(serve::deployment<Warmup>().bind(serve::deployment<Adder>().bind(1)));
  EXPECT_EQ(app.ingress().remote<int>().result(5.0), 42);
}

// --- Coroutine handlers ------------------------------------------------------------------------

// Returns true when two calls are inside at once (each waits up to 2 s for the other).
class Rendezvous {
 public:
  bool operator()() {
    std::unique_lock lock(mu_);
    ++inside_;
    cv_.notify_all();
    return cv_.wait_for(lock, std::chrono::seconds(2), [this] { return inside_ >= 2; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int inside_ = 0;
};

// One piece of user code at a time: a call can reach the rendezvous while another is there only
// if the first one's co_await released the strand.
class Gatherer {
 public:
  static constexpr serve::Concurrency serve_concurrency = serve::Concurrency::kSerialized;
  explicit Gatherer(serve::DeploymentHandle rendezvous) : rendezvous_(std::move(rendezvous)) {}
  serve::Task<serve::Json> operator()() {
    bool met = co_await rendezvous_.remote<bool>();
    // Resumed with this request's context restored.
    co_return serve::Json{{"met", met}, {"deployment", serve::get_replica_context().deployment}};
  }

 private:
  serve::DeploymentHandle rendezvous_;
};

TEST(LocalTestingTest, SuspendedTaskHoldsNoThreadAndResumesInItsDeployment) {
  auto app = run_local(
      serve::deployment<Gatherer>().bind(serve::deployment<Rendezvous>().bind()));
  auto first = app.ingress().remote();
  auto second = app.ingress().remote();
  for (auto* r : {&first, &second}) {
    serve::Json out = r->result(10.0);
    EXPECT_TRUE(out["met"].get<bool>());
    EXPECT_EQ(out["deployment"], "Gatherer");
  }
}

std::atomic<int> g_sleepers_woken{0};

class Sleeper {
 public:
  serve::Task<std::string> operator()(int ms) {
    co_await serve::sleep_for(std::chrono::milliseconds(ms));
    ++g_sleepers_woken;
    co_return "woke";
  }
};

class Parent {
 public:
  explicit Parent(serve::DeploymentHandle sleeper) : sleeper_(std::move(sleeper)) {}
  serve::Task<std::string> operator()(int ms) { co_return co_await sleeper_.remote<std::string>(ms); }
  // The same through a shielded handle: the call survives the cancellation of this request.
  serve::Task<std::string> shielded(int ms) {
    serve::HandleOptions shield;
    shield.shield = true;
    co_return co_await sleeper_.options(shield).remote<std::string>(ms);
  }

 private:
  serve::DeploymentHandle sleeper_;
};
}  // namespace
SERVE_DEPLOYMENT(Parent, serve::method("shielded", &Parent::shielded));
namespace {

TEST(LocalTestingTest, CancellingARequestCancelsTheCallsItMade) {
  // A sleeper outside any request, due later than the cancellation below, must not delay it.
  std::thread outside([] {
    []() -> serve::Task<void> { co_await serve::sleep_for(std::chrono::seconds(3)); }().Get();
  });
  auto started = std::chrono::steady_clock::now();
  {
    auto app = run_local(serve::deployment<Parent>().bind(serve::deployment<Sleeper>().bind()),
                         {.shutdown_timeout_s = 10});
    EXPECT_EQ(app.ingress().remote<std::string>(1).result(5.0), "woke");
    auto response = app.ingress().remote<std::string>(60000);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the child call start
    response.cancel();
    EXPECT_THROW(response.result(5.0), serve::RequestCancelledError);
  }
  // The child's sleep was cancelled too: the application stopped without waiting for it.
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
  outside.join();
}

TEST(LocalTestingTest, ShieldedCallsSurviveTheCancellationOfTheirCaller) {
  auto app = run_local(serve::deployment<Parent>().bind(serve::deployment<Sleeper>().bind()));
  int woken = g_sleepers_woken.load();
  auto response = app.ingress().method("shielded").remote<std::string>(300);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the child call start
  response.cancel();
  EXPECT_THROW(response.result(5.0), serve::RequestCancelledError);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (g_sleepers_woken.load() == woken && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(g_sleepers_woken.load(), woken + 1);
}

// --- Streams -----------------------------------------------------------------------------------

class Squares {
 public:
  serve::Stream<int> stream(int n, int fail_at) {
    for (int i = 0; i < n; ++i) {
      if (i == fail_at) throw std::out_of_range("stopped at " + std::to_string(i));
      co_yield i * i;
    }
  }
  int plain(int x) { return x; }
};
}  // namespace
SERVE_DEPLOYMENT(Squares, serve::method("stream", &Squares::stream),
                 serve::method("plain", &Squares::plain));
namespace {

// Reads a stream inside a coroutine handler, without blocking.
class StreamConsumer {
 public:
  explicit StreamConsumer(serve::DeploymentHandle squares) : squares_(std::move(squares)) {}
  serve::Task<std::vector<int>> operator()(int n) {
    auto stream = squares_.method("stream").remote_stream<int>(n, -1);
    std::vector<int> items;
    while (auto item = co_await stream.next_async()) items.push_back(*item);
    co_return items;
  }

 private:
  serve::DeploymentHandle squares_;
};

TEST(LocalTestingTest, StreamsItemsToTestsAndToCoroutines) {
  auto app = run_local(
      serve::deployment<StreamConsumer>().bind(serve::deployment<Squares>().bind()));
  auto stream = app.handle("Squares").method("stream").remote_stream<int>(4, -1);
  std::vector<int> items;
  while (auto item = stream.next(5.0)) items.push_back(*item);
  EXPECT_EQ(items, (std::vector<int>{0, 1, 4, 9}));
  EXPECT_EQ(app.ingress().remote<std::vector<int>>(5).result(5.0),
            (std::vector<int>{0, 1, 4, 9, 16}));

  // A generator failing midway: the items so far, then its error.
  auto failing = app.handle("Squares").method("stream").remote_stream<int>(5, 2);
  EXPECT_EQ(failing.next(5.0), 0);
  EXPECT_EQ(failing.next(5.0), 1);
  try {
    failing.next(5.0);
    ADD_FAILURE() << "expected the generator's error";
  } catch (const serve::DeploymentError& e) {
    EXPECT_EQ(e.type(), "out_of_range");
    EXPECT_EQ(e.remote_message(), "stopped at 2");
  }
  // The kind of a handler must match the call, as in a cluster.
  try {
    app.handle("Squares").method("stream").remote<int>(3, -1).result(5.0);
    ADD_FAILURE() << "expected a TypeError";
  } catch (const serve::DeploymentError& e) {
    EXPECT_EQ(e.type(), "TypeError");
    EXPECT_NE(e.remote_message().find("remote_stream()"), std::string::npos);
  }
  auto not_a_stream = app.handle("Squares").method("plain").remote_stream<int>(3);
  EXPECT_THROW(not_a_stream.next(5.0), serve::DeploymentError);
}

// --- Errors ------------------------------------------------------------------------------------

class Strict {
 public:
  int operator()(int x) {
    if (x < 0) throw std::out_of_range("negative input " + std::to_string(x));
    return x;
  }
};

class Caller {
 public:
  explicit Caller(serve::DeploymentHandle strict) : strict_(std::move(strict)) {}
  serve::Task<int> operator()(int x) { co_return co_await strict_.remote<int>(x); }

 private:
  serve::DeploymentHandle strict_;
};

TEST(LocalTestingTest, ErrorsSurfaceAsInACluster) {
  auto app = run_local(serve::deployment<Caller>().bind(serve::deployment<Strict>().bind()));
  try {
    app.handle("Strict").remote<int>(-1).result(5.0);
    ADD_FAILURE() << "expected a DeploymentError";
  } catch (const serve::DeploymentError& e) {
    EXPECT_EQ(e.type(), "out_of_range");
    EXPECT_EQ(e.remote_message(), "negative input -1");
  }
  // Through a caller: its await rethrows, and its own failure names the error it got.
  try {
    app.ingress().remote<int>(-2).result(5.0);
    ADD_FAILURE() << "expected a DeploymentError";
  } catch (const serve::DeploymentError& e) {
    EXPECT_EQ(e.type(), "DeploymentError");
    EXPECT_EQ(e.remote_message(), "out_of_range: negative input -2");
  }
  // Arguments are msgpack-encoded and decoded: a wrong type fails in the callee.
  try {
    app.handle("Strict").remote<int>("seven").result(5.0);
    ADD_FAILURE() << "expected a DeploymentError";
  } catch (const serve::DeploymentError& e) {
    EXPECT_EQ(e.type(), "type_error");
  }
  try {
    app.handle("Strict").remote<int>(1, 2).result(5.0);
    ADD_FAILURE() << "expected a DeploymentError";
  } catch (const serve::DeploymentError& e) {
    EXPECT_EQ(e.type(), "invalid_argument");
  }
  EXPECT_THROW(app.handle("Strict").method("missing").remote<int>(1).result(5.0),
               serve::DeploymentError);
  EXPECT_THROW(serve::get_deployment_handle("Nope").remote<int>(1).result(5.0),
               serve::DeploymentUnavailableError);
  EXPECT_THROW(serve::get_app_handle("other").remote<int>(1).result(5.0),
               serve::DeploymentUnavailableError);
  EXPECT_THROW(app.handle("Nope"), std::invalid_argument);
}

class Exploding {
 public:
  Exploding() { throw std::runtime_error("no model file"); }
  int operator()() { return 0; }
};

TEST(LocalTestingTest, ConstructorFailureAndLifecycle) {
  EXPECT_THROW(run_local(serve::deployment<Caller>().bind(serve::deployment<Exploding>().bind())),
               std::runtime_error);
  {
    auto app = run_local(serve::deployment<Adder>().bind(1));
    EXPECT_THROW(run_local(serve::deployment<Adder>().bind(2)), std::logic_error);
    EXPECT_EQ(app.ingress().remote<int>(1).result(5.0), 2);
  }
  // Once the application stopped, handles no longer reach it.
  EXPECT_THROW(serve::get_deployment_handle("Adder").remote<int>(1), serve::ServeException);
  EXPECT_THROW(run_local(serve::Application()), std::invalid_argument);
}

// --- user_config, replica context, multiplexing ------------------------------------------------

class Thresholder {
 public:
  void reconfigure(const serve::Json& config) { threshold_ = config.at("threshold").get<int>(); }
  serve::Json operator()(int x) const {
    const serve::ReplicaContext& ctx = serve::get_replica_context();
    return {{"above", x > threshold_.load()},
            {"app", ctx.app_name},
            {"deployment", ctx.deployment},
            {"model", serve::get_multiplexed_model_id()}};
  }

 private:
  std::atomic<int> threshold_{0};
};

TEST(LocalTestingTest, UserConfigReplicaContextAndModelIds) {
  auto app = run_local(
      serve::deployment<Thresholder>().name("Gate").user_config({{"threshold", 5}}).bind(),
      {.name = "checks"});
  serve::Json out = app.ingress().remote(6).result(5.0);
  EXPECT_TRUE(out["above"].get<bool>());
  EXPECT_EQ(out["app"], "checks");
  EXPECT_EQ(out["deployment"], "Gate");
  EXPECT_EQ(out["model"], "");
  app.reconfigure("Gate", {{"threshold", 7}});
  EXPECT_FALSE(app.ingress().remote(6).result(5.0)["above"].get<bool>());
  EXPECT_THROW(app.reconfigure("Gate", {{"limit", 1}}), std::exception);
  serve::HandleOptions model_id;
  model_id.multiplexed_model_id = "m-7";
  auto model = app.ingress().options(model_id);
  EXPECT_EQ(model.remote(1).result(5.0)["model"], "m-7");
  EXPECT_THROW(app.reconfigure("Nope", {}), std::invalid_argument);
}

TEST(LocalTestingTest, UserConfigWithoutReconfigureFailsToStart) {
  EXPECT_THROW(run_local(serve::deployment<Adder>().user_config({{"x", 1}}).bind(1)),
               std::logic_error);
}

// Batching helpers work in-process: concurrent calls of one deployment share a batch.
class BatchedModel {
 public:
  BatchedModel()
      : batch_([](std::vector<int> xs) {
                 std::vector<serve::Json> out;
                 for (int x : xs) out.push_back({{"y", x * 10}, {"batch", xs.size()}});
                 return out;
               },
               {.max_batch_size = 4, .batch_wait_timeout_s = 5.0}) {}
  serve::Task<serve::Json> operator()(int x) { co_return co_await batch_(x); }

 private:
  serve::Batcher<int, serve::Json> batch_;
};

TEST(LocalTestingTest, ConcurrentCallsShareABatch) {
  auto app = run_local(serve::deployment<BatchedModel>().bind());
  std::vector<serve::DeploymentResponse<serve::Json>> responses;
  for (int i = 0; i < 4; ++i) responses.push_back(app.ingress().remote(i));
  for (int i = 0; i < 4; ++i) {
    serve::Json out = responses[i].result(10.0);
    EXPECT_EQ(out["y"], i * 10);
    EXPECT_EQ(out["batch"], 4);  // the full batch closed at once, well before its timeout
  }
}

// --- HTTP ingress ------------------------------------------------------------------------------

class Greeter {
 public:
  serve::HttpResponse operator()(const serve::HttpRequest& request) {
    if (request.path == "/json") return serve::HttpResponse::json({{"n", request.json().at("n")}});
    if (request.path == "/fail") throw std::invalid_argument("no greeting for you");
    if (request.method == "POST") return serve::HttpResponse::text("created", 201);
    return serve::HttpResponse::text("hello " + request.query("name", "world") + " at " +
                                      request.route_prefix);
  }
};

class Ticker {
 public:
  serve::Stream<std::string> operator()(const serve::HttpRequest& request) {
    int n = std::stoi(request.query("n", "3"));
    for (int i = 0; i < n; ++i) co_yield std::to_string(i) + ";";
  }
};

class Counted {
 public:
  serve::Task<serve::Json> operator()() { co_return serve::Json{{"count", ++count_}}; }

 private:
  int count_ = 0;
};

TEST(LocalTestingTest, HttpIngressAnswersAsTheProxyWould) {
  auto app = run_local(serve::deployment<Greeter>().bind());
  serve::HttpRequest get;
  get.query_string = "name=ada";
  serve::HttpResponse r = app.http(get).result(5.0);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello ada at /");
  EXPECT_EQ(r.headers["Content-Type"], "text/plain; charset=utf-8");
  serve::HttpRequest post;
  post.method = "POST";
  EXPECT_EQ(app.http(post).result(5.0).status, 201);
  serve::HttpRequest json;
  json.path = "/json";
  json.body = R"({"n": [1, 2]})";
  r = app.http(json).result(5.0);
  EXPECT_EQ(serve::Json::parse(r.body), (serve::Json{{"n", {1, 2}}}));
  EXPECT_EQ(r.headers["content-type"], "application/json");
  serve::HttpRequest fail;
  fail.path = "/fail";
  r = app.http(fail).result(5.0);
  EXPECT_EQ(r.status, 500);
  EXPECT_NE(r.body.find("invalid_argument: no greeting for you"), std::string::npos);
  // The request can also be passed through a handle, as a client program does: as an argument,
  // without the proxy's route prefix.
  EXPECT_EQ(app.ingress().remote<serve::HttpResponse>(get).result(5.0).body, "hello ada at ");
}

TEST(LocalTestingTest, HttpIngressStreamsAndCoroutines) {
  {
    auto app = run_local(serve::deployment<Ticker>().bind());
    serve::HttpRequest request;
    request.query_string = "n=4";
    EXPECT_EQ(app.http(request).result(5.0).body, "0;1;2;3;");
  }
  auto app = run_local(serve::deployment<Counted>().bind());
  EXPECT_EQ(serve::Json::parse(app.http({}).result(5.0).body), (serve::Json{{"count", 1}}));
  EXPECT_EQ(serve::Json::parse(app.http({}).result(5.0).body), (serve::Json{{"count", 2}}));
}

}  // namespace
