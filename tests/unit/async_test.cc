// Unit tests of asynchronous execution in the SDK (libserve.so): where serve's awaitables resume
// (through the request's Resumer, not on the completing thread), detached Task runs, coroutine
// handlers through Instance::Call, DeploymentResponse::cancel(), chaining without blocking,
// stream cancellation when the reader stops, sleep_for, and the serialized-mode trait. A fake
// HandleRuntime stands in for the replica's.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <serve/serve.h>

#include "sdk/host.h"
#include "sdk_test_support.h"

namespace {

using serve::testing::TestExecutor;

using namespace std::chrono_literals;
using serve::detail::CallResult;


// A request as a host sees it: its context, resuming coroutines on the executor with the
// context installed.
class TestRequest final : public serve::sdk::Resumer {
 public:
  TestRequest(TestExecutor& executor, std::string id) : executor_(executor) {
    ctx.request_id = std::move(id);
    ctx.route = "/";
    ctx.cancelled = &cancelled;
    ctx.resumer = this;
  }
  void Resume(std::coroutine_handle<> h) override {
    ++resumes;
    auto self = shared_from_this();
    executor_.Post([this, self, h] {
      serve::sdk::ScopedRequestContext scope(&ctx);
      h.resume();
    });
  }
  /// Runs `fn` on the executor under this request's context and waits for it.
  void RunOnExecutor(const std::function<void()>& fn) {
    std::promise<void> done;
    executor_.Post([&] {
      serve::sdk::ScopedRequestContext scope(&ctx);
      fn();
      done.set_value();
    });
    done.get_future().get();
  }

  serve::sdk::RequestContext ctx;
  std::atomic<bool> cancelled{false};
  std::atomic<int> resumes{0};

 private:
  TestExecutor& executor_;
};

// Records the calls handed to it; tests complete them from their own threads.
class FakeRuntime final : public serve::sdk::HandleRuntime {
 public:
  struct Recorded {
    serve::detail::CallTarget target;
    serve::Json args;
    std::string request_id;
    std::shared_ptr<serve::detail::ResponseState> state;
    std::shared_ptr<serve::detail::StreamState> stream;
  };
  FakeRuntime() { serve::sdk::SetHandleRuntime(this); }
  ~FakeRuntime() override { serve::sdk::SetHandleRuntime(nullptr); }

  void Call(const serve::detail::CallTarget& target, std::string args,
            std::shared_ptr<serve::detail::ResponseState> state) override {
    std::lock_guard lock(mu_);
    if (!state->SetCanceller([this] { ++cancels; })) return;
    calls_.push_back({target, serve::detail::DecodeMsgpack(args), RequestId(), state, nullptr});
  }
  void CallStream(const serve::detail::CallTarget& target, std::string args,
                  std::shared_ptr<serve::detail::StreamState> stream) override {
    std::lock_guard lock(mu_);
    if (!stream->SetCanceller([this] { ++cancels; })) return;
    calls_.push_back({target, serve::detail::DecodeMsgpack(args), RequestId(), nullptr, stream});
  }
  size_t size() {
    std::lock_guard lock(mu_);
    return calls_.size();
  }
  Recorded at(size_t i) {
    std::lock_guard lock(mu_);
    return calls_.at(i);
  }
  std::atomic<int> cancels{0};

 private:
  static std::string RequestId() {
    const serve::sdk::RequestContext* ctx = serve::sdk::CurrentRequestContext();
    return ctx ? ctx->request_id : "";
  }
  std::mutex mu_;
  std::vector<Recorded> calls_;
};

CallResult Ok(const serve::Json& value) {
  CallResult r;
  r.body = serve::detail::EncodeMsgpack(value);
  return r;
}

// Completes `state` from a thread of its own, as the handle runtime's I/O thread does.
void CompleteFromAnotherThread(const std::shared_ptr<serve::detail::ResponseState>& state,
                               CallResult r) {
  std::thread([state, r = std::move(r)]() mutable { state->Complete(std::move(r)); }).join();
}

template <class Pred>
bool Eventually(Pred pred, std::chrono::milliseconds timeout = 5s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return pred();
}

// Starts `task` detached on the executor under `request`; `done` turns true when it finished.
template <class T>
void StartOn(TestRequest& request, serve::Task<T>& task, std::atomic<bool>& done) {
  request.RunOnExecutor([&] { task.start([&done] { done = true; }); });
}

}  // namespace

// ---- Where continuations run -----------------------------------------------------------------

TEST(AsyncTest, AwaitingAResponseResumesOnTheRequestsExecutorNotTheCompletingThread) {
  FakeRuntime runtime;
  TestExecutor executor;
  auto request = std::make_shared<TestRequest>(executor, "req-1");
  std::thread::id resumed_on;
  std::string context_after;
  auto handler = [&]() -> serve::Task<int> {
    int v = co_await serve::DeploymentHandle("Model").remote<int>(20);
    resumed_on = std::this_thread::get_id();
    context_after = serve::sdk::CurrentRequestContext()->request_id;
    co_return v + 1;
  };
  serve::Task<int> task = handler();
  std::atomic<bool> done{false};
  StartOn(*request, task, done);
  ASSERT_EQ(runtime.size(), 1u);
  EXPECT_FALSE(done);
  EXPECT_EQ(runtime.at(0).request_id, "req-1");  // the child call carries its parent's id
  CompleteFromAnotherThread(runtime.at(0).state, Ok(41));
  ASSERT_TRUE(Eventually([&] { return done.load(); }));
  EXPECT_EQ(std::move(task).take(), 42);
  EXPECT_EQ(resumed_on, executor.id());
  EXPECT_EQ(context_after, "req-1");
  EXPECT_EQ(request->resumes.load(), 1);
}

TEST(AsyncTest, WithoutAnExecutorAwaitsResumeOnTheCompletingThread) {
  FakeRuntime runtime;
  std::thread::id resumed_on;
  auto handler = [&]() -> serve::Task<int> {
    int v = co_await serve::DeploymentHandle("Model").remote<int>();
    resumed_on = std::this_thread::get_id();
    co_return v;
  };
  serve::Task<int> task = handler();
  std::atomic<bool> done{false};
  task.start([&] { done = true; });
  std::thread::id completer;
  std::thread t([&] {
    completer = std::this_thread::get_id();
    runtime.at(0).state->Complete(Ok(7));
  });
  t.join();
  EXPECT_TRUE(done);
  EXPECT_EQ(resumed_on, completer);
  EXPECT_EQ(std::move(task).take(), 7);
}

TEST(AsyncTest, TaskGetInsideARequestResumesInlineInsteadOfOnTheBlockedExecutor) {
  // Get() blocks the executor's only thread: resuming there would deadlock.
  FakeRuntime runtime;
  TestExecutor executor;
  auto request = std::make_shared<TestRequest>(executor, "req-get");
  std::thread completer([&] {
    ASSERT_TRUE(Eventually([&] { return runtime.size() == 1; }));
    runtime.at(0).state->Complete(Ok(5));
  });
  int value = 0;
  request->RunOnExecutor([&] {
    auto inner = []() -> serve::Task<int> {
      co_return co_await serve::DeploymentHandle("Model").remote<int>();
    };
    value = inner().get();
  });
  completer.join();
  EXPECT_EQ(value, 5);
  EXPECT_EQ(request->resumes.load(), 0);
}

TEST(AsyncTest, StartRunsUntilTheFirstSuspensionAndReportsTheEndOnce) {
  int steps = 0;
  std::atomic<int> done{0};
  auto immediate = [&]() -> serve::Task<std::string> {
    ++steps;
    co_return "now";
  };
  serve::Task<std::string> t = immediate();
  t.start([&] { ++done; });
  EXPECT_EQ(steps, 1);
  EXPECT_EQ(done.load(), 1);
  EXPECT_EQ(std::move(t).take(), "now");

  auto failing = []() -> serve::Task<void> {
    throw std::runtime_error("boom");
    co_return;
  };
  serve::Task<void> f = failing();
  f.start([&] { ++done; });
  EXPECT_EQ(done.load(), 2);
  EXPECT_THROW(std::move(f).take(), std::runtime_error);
}

// ---- Coroutine handlers through Instance::Call ------------------------------------------------

class UnitAsyncModel {
 public:
  explicit UnitAsyncModel(serve::DeploymentHandle down) : down_(std::move(down)) {}
  // A const& parameter of a coroutine: must live until the handler finished.
  serve::Task<std::string> greet(const std::string& name) {
    std::string reply = co_await down_.remote<std::string>(name);
    co_return reply + " / " + name;
  }
  serve::Task<serve::HttpResponse> operator()(const serve::HttpRequest& r) {
    std::string reply = co_await down_.remote<std::string>(r.path);
    co_return serve::HttpResponse::text(reply + " for " + r.path, 202);
  }

 private:
  serve::DeploymentHandle down_;
};
SERVE_DEPLOYMENT(UnitAsyncModel, serve::method("greet", &UnitAsyncModel::greet));

class UnitSerialModel {
 public:
  static constexpr serve::Concurrency serve_concurrency = serve::Concurrency::kSerialized;
  int operator()() { return 1; }
};
SERVE_DEPLOYMENT(UnitSerialModel);

using serve::testing::MakeInstance;

TEST(AsyncTest, CoroutineHandlerIsReturnedPendingAndKeepsItsArguments) {
  FakeRuntime runtime;
  TestExecutor executor;
  auto request = std::make_shared<TestRequest>(executor, "req-h");
  auto inst = MakeInstance(serve::deployment<UnitAsyncModel>().bind(
      serve::deployment<UnitSerialModel>().name("Down").bind()));
  EXPECT_FALSE(inst->Serialized());
  serve::Json args = serve::Json::array({"Ann"});
  serve::detail::CallInput in;
  in.args = &args;
  serve::detail::CallOutput out = inst->Call("greet", in);
  ASSERT_TRUE(out.pending);
  args = serve::Json();  // the decoded argument lives in the coroutine, not here
  std::atomic<bool> done{false};
  StartOn(*request, out.pending->task, done);
  ASSERT_EQ(runtime.size(), 1u);
  EXPECT_EQ(runtime.at(0).target.deployment, "Down");
  EXPECT_EQ(runtime.at(0).target.method, "__call__");
  EXPECT_EQ(runtime.at(0).args, serve::Json::array({"Ann"}));
  CompleteFromAnotherThread(runtime.at(0).state, Ok("hello"));
  ASSERT_TRUE(Eventually([&] { return done.load(); }));
  EXPECT_EQ(std::move(out.pending->task).take().value, "hello / Ann");

  // HTTP: the request is referenced, not copied; the host keeps it alive.
  serve::HttpRequest http;
  http.path = "/x";
  serve::detail::CallInput hin;
  hin.http = &http;
  serve::detail::CallOutput hout = inst->Call("__call__", hin);
  ASSERT_TRUE(hout.pending);
  std::atomic<bool> hdone{false};
  StartOn(*request, hout.pending->task, hdone);
  ASSERT_EQ(runtime.size(), 2u);
  CompleteFromAnotherThread(runtime.at(1).state, Ok("ok"));
  ASSERT_TRUE(Eventually([&] { return hdone.load(); }));
  serve::detail::CallOutput result = std::move(hout.pending->task).take();
  ASSERT_TRUE(result.http);
  EXPECT_EQ(result.http->status, 202);
  EXPECT_EQ(result.http->body, "ok for /x");
}

TEST(AsyncTest, SerializedTraitReachesTheInstance) {
  EXPECT_TRUE(MakeInstance(serve::deployment<UnitSerialModel>().bind())->Serialized());
  EXPECT_EQ(serve::detail::ConcurrencyOf<UnitSerialModel>(), serve::Concurrency::kSerialized);
  EXPECT_EQ(serve::detail::ConcurrencyOf<UnitAsyncModel>(), serve::Concurrency::kConcurrent);
}

// ---- Cancellation -----------------------------------------------------------------------------

TEST(AsyncTest, CancelFailsTheResponseAtOnceAndTellsTheRuntime) {
  FakeRuntime runtime;
  auto response = serve::DeploymentHandle("Model").remote<int>();
  ASSERT_EQ(runtime.size(), 1u);
  response.cancel();
  EXPECT_EQ(runtime.cancels.load(), 1);
  EXPECT_THROW(response.result(1.0), serve::RequestCancelledError);
  // The late answer of the replica is ignored; cancelling again does nothing.
  runtime.at(0).state->Complete(Ok(1));
  response.cancel();
  EXPECT_EQ(runtime.cancels.load(), 1);
  EXPECT_THROW(response.result(1.0), serve::RequestCancelledError);
}

TEST(AsyncTest, CancelWakesAnAwaitingCoroutineWithRequestCancelledError) {
  FakeRuntime runtime;
  TestExecutor executor;
  auto request = std::make_shared<TestRequest>(executor, "req-c");
  std::optional<serve::DeploymentResponse<int>> response;
  std::string error;
  auto handler = [&]() -> serve::Task<void> {
    response.emplace(serve::DeploymentHandle("Model").remote<int>());
    try {
      (void)co_await *response;
    } catch (const serve::RequestCancelledError& e) {
      error = e.what();
    }
  };
  serve::Task<void> task = handler();
  std::atomic<bool> done{false};
  StartOn(*request, task, done);
  EXPECT_FALSE(done);
  std::thread([&] { response->cancel(); }).join();
  ASSERT_TRUE(Eventually([&] { return done.load(); }));
  EXPECT_EQ(error, "The request was cancelled.");
}

TEST(AsyncTest, DroppingAStreamBeforeItsEndCancelsIt) {
  FakeRuntime runtime;
  {
    auto stream = serve::DeploymentHandle("Gen").remote_stream<int>(3);
    ASSERT_EQ(runtime.size(), 1u);
    runtime.at(0).stream->Push(serve::detail::EncodeMsgpack(1));
    EXPECT_EQ(stream.next(1.0), 1);
  }  // the reader stops
  EXPECT_EQ(runtime.cancels.load(), 1);
  EXPECT_TRUE(runtime.at(0).stream->Finished());

  {  // a stream read to its end is not cancelled
    auto stream = serve::DeploymentHandle("Gen").remote_stream<int>(1);
    runtime.at(1).stream->Push(serve::detail::EncodeMsgpack(9));
    runtime.at(1).stream->Finish();
    EXPECT_EQ(stream.next(1.0), 9);
    EXPECT_EQ(stream.next(1.0), std::nullopt);
  }
  EXPECT_EQ(runtime.cancels.load(), 1);

  {  // moved: only the last owner cancels
    auto a = serve::DeploymentHandle("Gen").remote_stream<int>(1);
    auto b = std::move(a);
    b.cancel();
    EXPECT_THROW(b.next(1.0), serve::RequestCancelledError);
  }
  EXPECT_EQ(runtime.cancels.load(), 2);
}

// ---- Chaining ---------------------------------------------------------------------------------

TEST(AsyncTest, ChainingSendsTheCallOnceTheUpstreamResolvedWithoutBlocking) {
  FakeRuntime runtime;
  TestExecutor executor;
  auto request = std::make_shared<TestRequest>(executor, "req-chain");
  std::optional<serve::DeploymentResponse<int>> up;
  std::optional<serve::DeploymentResponse<int>> down;
  request->RunOnExecutor([&] {  // returns without waiting for the upstream
    up.emplace(serve::DeploymentHandle("Adder").remote<int>(1));
    down.emplace(serve::DeploymentHandle("Multiplier").remote<int>(*up, "x"));
  });
  ASSERT_EQ(runtime.size(), 1u);  // only the upstream went out
  CompleteFromAnotherThread(runtime.at(0).state, Ok(2));
  ASSERT_EQ(runtime.size(), 2u);
  FakeRuntime::Recorded sent = runtime.at(1);
  EXPECT_EQ(sent.target.deployment, "Multiplier");
  EXPECT_EQ(sent.args, serve::Json::array({2, "x"}));
  EXPECT_EQ(sent.request_id, "req-chain");  // sent with the caller's request context
  sent.state->Complete(Ok(4));
  EXPECT_EQ(down->result(1.0), 4);
}

TEST(AsyncTest, ChainingPassesTheUpstreamFailureOn) {
  FakeRuntime runtime;
  auto up = serve::DeploymentHandle("Adder").remote<int>(1);
  auto down = serve::DeploymentHandle("Multiplier").remote<int>(up);
  CallResult failed;
  failed.code = CallResult::Code::kError;
  failed.error_type = "domain_error";
  failed.error_message = "negative";
  runtime.at(0).state->Complete(failed);
  EXPECT_EQ(runtime.size(), 1u);  // never sent
  try {
    down.result(1.0);
    FAIL() << "no error";
  } catch (const serve::DeploymentError& e) {
    EXPECT_EQ(e.type(), "domain_error");
  }
}

TEST(AsyncTest, CancellingAChainedCallBeforeItIsSentDropsIt) {
  FakeRuntime runtime;
  auto up = serve::DeploymentHandle("Adder").remote<int>(1);
  auto down = serve::DeploymentHandle("Multiplier").remote<int>(up);
  down.cancel();
  EXPECT_THROW(down.result(1.0), serve::RequestCancelledError);
  runtime.at(0).state->Complete(Ok(2));
  EXPECT_EQ(runtime.size(), 1u);
}

// ---- sleep_for --------------------------------------------------------------------------------

TEST(AsyncTest, SleepForResumesOnTheExecutorAfterTheDelay) {
  TestExecutor executor;
  auto request = std::make_shared<TestRequest>(executor, "req-s");
  std::thread::id resumed_on;
  auto start = std::chrono::steady_clock::now();
  auto handler = [&]() -> serve::Task<void> {
    co_await serve::sleep_for(50ms);
    resumed_on = std::this_thread::get_id();
  };
  serve::Task<void> task = handler();
  std::atomic<bool> done{false};
  StartOn(*request, task, done);
  ASSERT_TRUE(Eventually([&] { return done.load(); }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms);
  EXPECT_EQ(resumed_on, executor.id());
  std::move(task).take();
}

TEST(AsyncTest, ManySleepersWaitAtOnceWithoutThreads) {
  TestExecutor executor;  // one thread for all of them
  auto request = std::make_shared<TestRequest>(executor, "req-many");
  std::atomic<int> finished{0};
  auto sleeper = []() -> serve::Task<void> { co_await serve::sleep_for(200ms); };
  std::vector<serve::Task<void>> tasks;
  for (int i = 0; i < 500; ++i) tasks.push_back(sleeper());
  auto start = std::chrono::steady_clock::now();
  request->RunOnExecutor([&] {
    for (auto& t : tasks) t.start([&finished] { ++finished; });  // then they may be destroyed
  });
  ASSERT_TRUE(Eventually([&] { return finished.load() == 500; }));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST(AsyncTest, SleepForEndsEarlyWithRequestCancelledErrorWhenTheRequestIsCancelled) {
  TestExecutor executor;
  auto request = std::make_shared<TestRequest>(executor, "req-sc");
  std::string error;
  auto handler = [&]() -> serve::Task<void> {
    try {
      co_await serve::sleep_for(30s);
    } catch (const serve::RequestCancelledError& e) {
      error = e.what();
    }
  };
  serve::Task<void> task = handler();
  std::atomic<bool> done{false};
  StartOn(*request, task, done);
  request->cancelled = true;
  ASSERT_TRUE(Eventually([&] { return done.load(); }, 2s));
  EXPECT_EQ(error, "Request req-sc was cancelled.");
}
