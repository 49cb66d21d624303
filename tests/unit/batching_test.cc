// Unit tests of serve::Batcher (include/serve/batching.h): batch closing on size and on the
// wait (fake clock), opportunistic batching with timeout 0, max_concurrent_batches, live
// setters, wrong-length results and exceptions failing the whole batch, cancellation before a
// batch runs, batch_size_fn weights, splitting by model id, option validation, the capacity
// warning, the blocking variant, and resuming callers on a replica-like executor.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <serve/batching.h>
#include <serve/serve.h>

#include "sdk/host.h"
#include "sdk_test_support.h"

namespace {

using Executor = serve::testing::TestExecutor;

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Time moves only in Advance(), which runs the callbacks that came due, in deadline order.
class FakeClock final : public serve::detail::BatchClock {
 public:
  FakeClock() { serve::detail::SetBatchClockForTesting(this); }
  ~FakeClock() override { serve::detail::SetBatchClockForTesting(nullptr); }
  Clock::time_point now() override {
    std::lock_guard lock(mu_);
    return now_;
  }
  void schedule(Clock::time_point at, std::function<void()> fn) override {
    std::lock_guard lock(mu_);
    timers_.emplace(at, std::move(fn));
  }
  void Advance(Clock::duration d) {
    std::unique_lock lock(mu_);
    now_ += d;
    while (!timers_.empty() && timers_.begin()->first <= now_) {
      auto fn = std::move(timers_.begin()->second);
      timers_.erase(timers_.begin());
      lock.unlock();
      fn();
      lock.lock();
    }
  }

 private:
  std::mutex mu_;
  Clock::time_point now_{};
  std::multimap<Clock::time_point, std::function<void()>> timers_;
};

// One awaiting caller of a batcher, started on this thread (no replica: resumes inline).
struct Caller {
  explicit Caller(serve::Task<int> t) : task(std::move(t)) {
    task.Start([this] { done = true; });
  }
  int value() { return std::move(task).Take(); }
  serve::Task<int> task;
  bool done = false;
};

// Records each batch the batch function sees; returns x * 10 per item.
struct Recorder {
  std::vector<std::vector<int>> batches;
  std::function<std::vector<int>(std::vector<int>)> fn() {
    return [this](std::vector<int> xs) {
      batches.push_back(xs);
      std::vector<int> out;
      for (int x : xs) out.push_back(x * 10);
      return out;
    };
  }
  std::vector<std::size_t> sizes() const {
    std::vector<std::size_t> s;
    for (auto& b : batches) s.push_back(b.size());
    return s;
  }
};

std::vector<std::unique_ptr<Caller>> StartCallers(serve::Batcher<int, int>& b, int from, int n) {
  std::vector<std::unique_ptr<Caller>> callers;
  for (int i = from; i < from + n; ++i) callers.push_back(std::make_unique<Caller>(b(i)));
  return callers;
}

TEST(BatcherTest, FullBatchRunsAtOnce) {
  FakeClock clock;
  Recorder rec;
  serve::Batcher<int, int> b(rec.fn(), {.max_batch_size = 4, .batch_wait_timeout_s = 10});
  auto callers = StartCallers(b, 0, 3);
  EXPECT_TRUE(rec.batches.empty());
  callers.push_back(std::make_unique<Caller>(b(3)));
  ASSERT_EQ(rec.sizes(), (std::vector<std::size_t>{4}));
  EXPECT_EQ(rec.batches[0], (std::vector<int>{0, 1, 2, 3}));  // arrival order
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(callers[i]->done);
    EXPECT_EQ(callers[i]->value(), i * 10);
  }
}

TEST(BatcherTest, WaitCountsFromFirstItem) {
  FakeClock clock;
  Recorder rec;
  serve::Batcher<int, int> b(rec.fn(), {.max_batch_size = 10, .batch_wait_timeout_s = 0.1});
  auto callers = StartCallers(b, 0, 1);
  clock.Advance(60ms);
  auto more = StartCallers(b, 1, 2);
  clock.Advance(39ms);
  EXPECT_TRUE(rec.batches.empty());
  EXPECT_EQ(b.queued(), 3u);
  clock.Advance(1ms);
  ASSERT_EQ(rec.sizes(), (std::vector<std::size_t>{3}));
  EXPECT_TRUE(more[1]->done);
  EXPECT_EQ(more[1]->value(), 20);
}

// An awaitable the test releases: lets a batch function stay "running".
struct Gate {
  std::vector<std::coroutine_handle<>> waiting;
  auto wait() {
    struct A {
      Gate* g;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> h) { g->waiting.push_back(h); }
      void await_resume() const noexcept {}
    };
    return A{this};
  }
  void Open() {
    auto w = std::exchange(waiting, {});
    for (auto h : w) h.resume();
  }
};

TEST(BatcherTest, TimeoutZeroIsOpportunistic) {
  FakeClock clock;
  Gate gate;
  std::vector<std::size_t> sizes;
  serve::Batcher<int, int> b(
      [&](std::vector<int> xs) -> serve::Task<std::vector<int>> {
        sizes.push_back(xs.size());
        co_await gate.wait();
        co_return xs;
      },
      {.max_batch_size = 8});
  EXPECT_EQ(b.batch_wait_timeout_s(), 0.0);  // the seed's default
  auto first = StartCallers(b, 0, 1);
  EXPECT_EQ(sizes, (std::vector<std::size_t>{1}));  // ran at once, alone
  auto rest = StartCallers(b, 1, 5);  // queue while the first batch runs
  EXPECT_EQ(b.queued(), 5u);
  gate.Open();  // first finishes; the queued five run as one batch
  EXPECT_EQ(sizes, (std::vector<std::size_t>{1, 5}));
  EXPECT_TRUE(first[0]->done);
  gate.Open();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(rest[i]->value(), i + 1);
}

TEST(BatcherTest, MaxConcurrentBatches) {
  FakeClock clock;
  Gate gate;
  std::vector<std::size_t> sizes;
  serve::Batcher<int, int> b(
      [&](std::vector<int> xs) -> serve::Task<std::vector<int>> {
        sizes.push_back(xs.size());
        co_await gate.wait();
        co_return xs;
      },
      {.max_batch_size = 2, .max_concurrent_batches = 2});
  auto callers = StartCallers(b, 0, 6);
  EXPECT_EQ(sizes, (std::vector<std::size_t>{1, 1}));  // two slots, opportunistic
  EXPECT_EQ(b.queued(), 4u);
  gate.Open();
  EXPECT_EQ(sizes, (std::vector<std::size_t>{1, 1, 2, 2}));
  gate.Open();
  for (auto& c : callers) EXPECT_TRUE(c->done);
}

TEST(BatcherTest, LiveSetters) {
  FakeClock clock;
  Recorder rec;
  serve::Batcher<int, int> b(rec.fn(), {.max_batch_size = 10, .batch_wait_timeout_s = 5});
  auto callers = StartCallers(b, 0, 3);
  b.set_max_batch_size(3);  // the forming batch is now full
  EXPECT_EQ(rec.sizes(), (std::vector<std::size_t>{3}));
  EXPECT_EQ(b.max_batch_size(), 3);
  auto more = StartCallers(b, 3, 2);
  EXPECT_EQ(rec.batches.size(), 1u);
  b.set_batch_wait_timeout(std::chrono::milliseconds(0));  // the wait is over
  EXPECT_EQ(rec.sizes(), (std::vector<std::size_t>{3, 2}));
  EXPECT_EQ(b.batch_wait_timeout_s(), 0.0);
  EXPECT_THROW(b.set_max_batch_size(0), std::invalid_argument);
  EXPECT_THROW(b.set_batch_wait_timeout_s(-1), std::invalid_argument);
}

TEST(BatcherTest, WrongLengthFailsEveryCaller) {
  FakeClock clock;
  serve::Batcher<int, int> b([](std::vector<int>) { return std::vector<int>{1}; },
                             {.max_batch_size = 3, .batch_wait_timeout_s = 1});
  auto callers = StartCallers(b, 0, 3);
  for (auto& c : callers) {
    ASSERT_TRUE(c->done);
    try {
      c->value();
      FAIL() << "expected an error";
    } catch (const serve::ServeException& e) {
      EXPECT_STREQ(e.what(),
                   "Batched function doesn't preserve batch size. The input list has length 3 "
                   "but the returned list has length 1.");
    }
  }
}

TEST(BatcherTest, ExceptionFailsWholeBatch) {
  FakeClock clock;
  int calls = 0;
  serve::Batcher<int, int> b(
      [&](std::vector<int>) -> std::vector<int> {
        ++calls;
        throw std::runtime_error("model exploded");
      },
      {.max_batch_size = 2, .batch_wait_timeout_s = 1});
  auto callers = StartCallers(b, 0, 2);
  EXPECT_EQ(calls, 1);
  for (auto& c : callers) EXPECT_THROW(c->value(), std::runtime_error);
  // The queue still works afterwards.
  auto more = StartCallers(b, 0, 2);
  EXPECT_EQ(calls, 2);
}

TEST(BatcherTest, CancelledRequestsAreRemovedBeforeTheBatchRuns) {
  FakeClock clock;
  Recorder rec;
  serve::Batcher<int, int> b(rec.fn(), {.max_batch_size = 10, .batch_wait_timeout_s = 0.05});
  std::atomic<bool> flags[3] = {false, false, false};
  serve::sdk::RequestContext ctx[3];
  std::vector<std::unique_ptr<Caller>> callers;
  for (int i = 0; i < 3; ++i) {
    ctx[i].request_id = "r" + std::to_string(i);
    ctx[i].cancelled = &flags[i];
    serve::sdk::ScopedRequestContext scope(&ctx[i]);
    callers.push_back(std::make_unique<Caller>(b(i)));
  }
  flags[1] = true;
  clock.Advance(50ms);
  ASSERT_EQ(rec.batches.size(), 1u);
  EXPECT_EQ(rec.batches[0], (std::vector<int>{0, 2}));
  EXPECT_EQ(callers[0]->value(), 0);
  EXPECT_THROW(callers[1]->value(), serve::RequestCancelledError);
  EXPECT_EQ(callers[2]->value(), 20);

  // All cancelled: the batch is skipped.
  std::atomic<bool> flag{false};
  serve::sdk::RequestContext c;
  c.cancelled = &flag;
  std::unique_ptr<Caller> lone;
  {
    serve::sdk::ScopedRequestContext scope(&c);
    lone = std::make_unique<Caller>(b(7));
  }
  flag = true;
  clock.Advance(50ms);
  EXPECT_EQ(rec.batches.size(), 1u);
  ASSERT_TRUE(lone->done);
  EXPECT_THROW(lone->value(), serve::RequestCancelledError);
}

TEST(BatcherTest, BatchSizeFnWeighsItems) {
  FakeClock clock;
  Recorder rec;
  serve::Batcher<int, int> b(rec.fn(), {.max_batch_size = 10, .batch_wait_timeout_s = 1},
                             [](const int& x) { return static_cast<std::size_t>(x); });
  auto heavy = std::make_unique<Caller>(b(11));  // alone heavier than the batch: fails alone
  ASSERT_TRUE(heavy->done);
  try {
    heavy->value();
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "Size of item (11) exceeds max_batch_size (10).");
  }
  auto callers = StartCallers(b, 4, 2);  // 4 + 5
  EXPECT_TRUE(rec.batches.empty());
  callers.push_back(std::make_unique<Caller>(b(3)));  // 4 + 5 + 3 > 10: closes {4, 5}
  ASSERT_EQ(rec.batches.size(), 1u);
  EXPECT_EQ(rec.batches[0], (std::vector<int>{4, 5}));
  clock.Advance(1s);
  ASSERT_EQ(rec.batches.size(), 2u);
  EXPECT_EQ(rec.batches[1], (std::vector<int>{3}));
}

TEST(BatcherTest, BatchesAreSplitByModelId) {
  FakeClock clock;
  Recorder rec;
  serve::Batcher<int, int> b(
      rec.fn(), {.max_batch_size = 10, .batch_wait_timeout_s = 0.01, .max_concurrent_batches = 2});
  std::vector<std::unique_ptr<Caller>> callers;
  const char* ids[] = {"a", "b", "a", "b", "a"};
  for (int i = 0; i < 5; ++i) {
    serve::sdk::RequestContext ctx;  // what serve::get_multiplexed_model_id() reads
    ctx.multiplexed_model_id = ids[i];
    serve::sdk::ScopedRequestContext scope(&ctx);
    callers.push_back(std::make_unique<Caller>(b(i)));
  }
  clock.Advance(10ms);
  ASSERT_EQ(rec.batches.size(), 2u);
  EXPECT_EQ(rec.batches[0], (std::vector<int>{0, 2, 4}));
  EXPECT_EQ(rec.batches[1], (std::vector<int>{1, 3}));
}

TEST(BatcherTest, ValidatesOptions) {
  auto fn = [](std::vector<int> xs) { return xs; };
  try {
    serve::Batcher<int, int> b(fn, {.max_batch_size = 0});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "max_batch_size must be an integer >= 1, instead got 0");
  }
  EXPECT_THROW((serve::Batcher<int, int>(fn, {.batch_wait_timeout_s = -0.5})),
               std::invalid_argument);
  EXPECT_THROW((serve::Batcher<int, int>(fn, {.max_concurrent_batches = 0})),
               std::invalid_argument);
  auto b = serve::batch<int, int>(fn);
  EXPECT_EQ(b.max_batch_size(), 10);
  EXPECT_EQ(b.max_concurrent_batches(), 1);
}

TEST(BatcherTest, CapacityWarning) {
  EXPECT_FALSE(serve::detail::BatchCapacityWarning(32, 1, 100));
  EXPECT_FALSE(serve::detail::BatchCapacityWarning(32, 1, 0));  // unknown
  auto w = serve::detail::BatchCapacityWarning(32, 4, 100);
  ASSERT_TRUE(w);
  EXPECT_NE(w->find("`max_batch_size` (32) * `max_concurrent_batches` (4) is larger than "
                    "`max_ongoing_requests` (100)"),
            std::string::npos);
}

TEST(BatcherTest, BlockingCallersWithRealClock) {
  Recorder rec;
  std::mutex mu;
  serve::Batcher<int, int> b(
      [&](std::vector<int> xs) {
        std::lock_guard lock(mu);
        return rec.fn()(std::move(xs));
      },
      {.max_batch_size = 4, .batch_wait_timeout_s = 30});
  std::vector<std::thread> threads;
  std::atomic<int> sum{0};
  auto start = Clock::now();
  for (int i = 0; i < 4; ++i) threads.emplace_back([&, i] { sum += b.call(i); });
  for (auto& t : threads) t.join();
  EXPECT_LT(Clock::now() - start, 10s);  // closed when full, not at the timeout
  EXPECT_EQ(sum.load(), 60);
  EXPECT_EQ(rec.sizes(), (std::vector<std::size_t>{4}));

  // The timeout with serve's timer thread.
  start = Clock::now();
  b.set_batch_wait_timeout(std::chrono::milliseconds(50));
  EXPECT_EQ(b.call(5), 50);
  EXPECT_GE(Clock::now() - start, 50ms);
}


class Request final : public serve::sdk::Resumer {
 public:
  Request(Executor& e, std::string id) : executor_(e) {
    ctx.request_id = std::move(id);
    ctx.cancelled = &cancelled;
    ctx.resumer = this;
  }
  void Resume(std::coroutine_handle<> h) override {
    auto self = shared_from_this();
    executor_.Post([this, self, h] {
      serve::sdk::ScopedRequestContext scope(&ctx);
      h.resume();
    });
  }
  serve::sdk::RequestContext ctx;
  std::atomic<bool> cancelled{false};

 private:
  Executor& executor_;
};

TEST(BatcherTest, RunsAndResumesOnTheReplicaExecutor) {
  // Leaked: serve's timer thread may still hold these requests' resumers (stale batch timers)
  // after the test, as a replica's executor outlives its timers.
  Executor& executor = *new Executor(1);
  std::thread::id batch_thread;
  serve::Batcher<int, int> b(
      [&](std::vector<int> xs) {
        batch_thread = std::this_thread::get_id();
        return xs;
      },
      {.max_batch_size = 8, .batch_wait_timeout_s = 0.05});
  constexpr int kN = 5;
  std::mutex mu;
  std::condition_variable cv;
  int finished = 0;
  std::vector<std::pair<int, std::thread::id>> results;
  std::vector<std::shared_ptr<Request>> requests;
  std::vector<std::unique_ptr<serve::Task<void>>> tasks;
  for (int i = 0; i < kN; ++i) {
    auto req = std::make_shared<Request>(executor, "r" + std::to_string(i));
    requests.push_back(req);
    auto body = [](serve::Batcher<int, int>& b, int i, std::mutex& mu,
                   std::vector<std::pair<int, std::thread::id>>& results) -> serve::Task<void> {
      int v = co_await b(i);
      std::lock_guard lock(mu);
      results.emplace_back(v, std::this_thread::get_id());
    };
    tasks.push_back(std::make_unique<serve::Task<void>>(body(b, i, mu, results)));
    serve::Task<void>* t = tasks.back().get();
    executor.Post([&, req, t] {
      serve::sdk::ScopedRequestContext scope(&req->ctx);
      t->Start([&] {
        std::lock_guard lock(mu);
        ++finished;
        cv.notify_all();
      });
    });
  }
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return finished == kN; }));
  EXPECT_EQ(batch_thread, executor.id());
  ASSERT_EQ(results.size(), static_cast<std::size_t>(kN));
  for (auto& [v, tid] : results) EXPECT_EQ(tid, executor.id());
}

// Many callers on a multi-threaded executor: every caller gets its own result exactly once and
// no batch exceeds max_batch_size (a regression test for awaiter lifetimes across threads).
TEST(BatcherTest, ManyCallersOnAThreadPool) {
  Executor& executor = *new Executor(4);  // leaked, as above
  std::mutex mu;
  std::vector<std::size_t> sizes;
  serve::Batcher<int, int> b(
      [&](std::vector<int> xs) {
        {
          std::lock_guard lock(mu);
          sizes.push_back(xs.size());
        }
        for (int& x : xs) x *= 10;
        return xs;
      },
      {.max_batch_size = 8, .batch_wait_timeout_s = 0.001, .max_concurrent_batches = 2});
  constexpr int kN = 400;
  std::condition_variable cv;
  int finished = 0;
  std::vector<int> results(kN, -1);
  std::vector<std::shared_ptr<Request>> requests;
  std::vector<std::unique_ptr<serve::Task<void>>> tasks;
  auto body = [](serve::Batcher<int, int>& b, int i, std::vector<int>& results) -> serve::Task<void> {
    results[i] = co_await b(i);
  };
  for (int i = 0; i < kN; ++i) {
    auto req = std::make_shared<Request>(executor, "r" + std::to_string(i));
    requests.push_back(req);
    tasks.push_back(std::make_unique<serve::Task<void>>(body(b, i, results)));
    serve::Task<void>* t = tasks.back().get();
    executor.Post([&, req, t] {
      serve::sdk::ScopedRequestContext scope(&req->ctx);
      t->Start([&] {
        std::lock_guard lock(mu);
        ++finished;
        cv.notify_all();
      });
    });
  }
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return finished == kN; }));
  std::size_t total = 0;
  for (std::size_t s : sizes) {
    EXPECT_LE(s, 8u);
    total += s;
  }
  EXPECT_EQ(total, static_cast<std::size_t>(kN));
  for (int i = 0; i < kN; ++i) EXPECT_EQ(results[i], i * 10);
}

}  // namespace

namespace {

using StepBatcher = serve::StreamingBatcher<int, int>;

// Reads a caller's stream to its end; the error message when it failed.
struct StreamReader {
  std::vector<int> values;
  std::string error;
  void Read(serve::Stream<int> s) {
    try {
      while (auto v = s.Next()) values.push_back(*v);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
};

TEST(StreamingBatcherTest, EachCallerGetsItsColumnAndCanEndEarly) {
  std::vector<std::size_t> sizes;
  // Caller x gets x, x+100, x+200, except that caller 1 stops after its first value.
  StepBatcher b(
      [&](std::vector<int> xs) -> serve::Stream<StepBatcher::Step> {
        sizes.push_back(xs.size());
        for (int step = 0; step < 3; ++step) {
          StepBatcher::Step out;
          for (int x : xs) {
            if (x == 1 && step > 0) {
              out.push_back(std::nullopt);
            } else {
              out.push_back(x + 100 * step);
            }
          }
          co_yield out;
        }
      },
      {.max_batch_size = 3, .batch_wait_timeout_s = 30});
  StreamReader readers[3];
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back([&, i] { readers[i].Read(b(i)); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(sizes, (std::vector<std::size_t>{3}));
  EXPECT_EQ(readers[0].values, (std::vector<int>{0, 100, 200}));
  EXPECT_EQ(readers[1].values, (std::vector<int>{1}));
  EXPECT_EQ(readers[2].values, (std::vector<int>{2, 102, 202}));
  for (auto& r : readers) EXPECT_EQ(r.error, "");
}

TEST(StreamingBatcherTest, ErrorsEndEveryOpenStream) {
  StepBatcher b(
      [](std::vector<int> xs) -> serve::Stream<StepBatcher::Step> {
        StepBatcher::Step first(xs.begin(), xs.end());
        co_yield first;
        StepBatcher::Step short_step(1, 7);  // wrong length for two callers
        co_yield short_step;
      },
      {.max_batch_size = 2, .batch_wait_timeout_s = 30});
  StreamReader readers[2];
  std::thread t([&] { readers[0].Read(b(5)); });
  readers[1].Read(b(6));
  t.join();
  EXPECT_EQ(readers[0].values, (std::vector<int>{5}));
  EXPECT_EQ(readers[1].values, (std::vector<int>{6}));
  EXPECT_EQ(readers[1].error,
            "Batched function doesn't preserve batch size. The input list has length 2 but the "
            "returned list has length 1.");
  EXPECT_EQ(readers[0].error, readers[1].error);
}

TEST(StreamingBatcherTest, ReaderThatStopsIsSkipped) {
  // Shared: the last generator may still be stopping (on its thread) when the test returns.
  auto steps = std::make_shared<std::atomic<int>>(0);
  StepBatcher b(
      [steps](std::vector<int> xs) -> serve::Stream<StepBatcher::Step> {
        for (int i = 0; i < 1000; ++i) {
          if (i > 0) std::this_thread::sleep_for(1ms);
          ++*steps;
          StepBatcher::Step step(xs.begin(), xs.end());
          co_yield step;
        }
      },
      {.max_batch_size = 1});
  {
    serve::Stream<int> s = b(9);
    EXPECT_EQ(s.Next(), 9);
  }  // the reader stops: the generator stops at the next step that finds no open stream
  serve::Stream<int> s2 = b(4);  // and the queue serves the next caller
  EXPECT_EQ(s2.Next(), 4);
  s2 = serve::Stream<int>(b(5));
  EXPECT_EQ(s2.Next(), 5);
  EXPECT_LT(steps->load(), 1000);  // three generators of 1000 steps each stopped early
}

}  // namespace
