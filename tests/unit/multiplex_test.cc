// serve::Multiplexed: LRU eviction order, one load per id under concurrency (coroutines and
// threads), unload hooks and destructors, failed loads, the request's model id and the
// process-wide report the replica pushes to the controller.

#include <serve/multiplex.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <deque>
#include <optional>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sdk/host.h"
#include "sdk_test_support.h"

namespace {

using Pool = serve::testing::TestExecutor;

using serve::Multiplexed;
using serve::Task;

struct Model {
  explicit Model(std::string id, std::atomic<int>* destroyed = nullptr)
      : id(std::move(id)), destroyed(destroyed) {}
  ~Model() {
    if (destroyed) ++*destroyed;
  }
  std::string id;
  std::atomic<int>* destroyed;
};

// Suspends coroutines until Open(), then resumes them on the opening thread.
struct Gate {
  std::mutex mu;
  bool open = false;
  std::vector<std::coroutine_handle<>> waiting;
  auto Wait() {
    struct Awaiter {
      Gate& g;
      bool await_ready() {
        std::lock_guard lock(g.mu);
        return g.open;
      }
      bool await_suspend(std::coroutine_handle<> h) {
        std::lock_guard lock(g.mu);
        if (g.open) return false;
        g.waiting.push_back(h);
        return true;
      }
      void await_resume() {}
    };
    return Awaiter{*this};
  }
  void Open() {
    std::vector<std::coroutine_handle<>> hs;
    {
      std::lock_guard lock(mu);
      open = true;
      hs.swap(waiting);
    }
    for (auto h : hs) h.resume();
  }
};

// A request context whose Resumer records resumptions and runs them inline.
struct RecordingRequest final : serve::sdk::Resumer {
  RecordingRequest() { ctx.resumer = this; }
  void Resume(std::coroutine_handle<> h) override {
    ++resumes;
    serve::sdk::ScopedRequestContext scope(&ctx);
    h.resume();
  }
  serve::sdk::RequestContext ctx;
  std::atomic<int> resumes{0};
};

TEST(MultiplexTest, EvictsTheLeastRecentlyUsedModelAndRunsTheUnloadHookAndDestructor) {
  std::atomic<int> destroyed{0};
  std::vector<std::string> unloaded;
  Multiplexed<Model> models(
      [&](const std::string& id) { return std::make_shared<Model>(id, &destroyed); }, 2,
      [&](const std::string& id, Model& m) {
        EXPECT_EQ(m.id, id);
        unloaded.push_back(id);
      });
  EXPECT_EQ(models.get_sync("a")->id, "a");
  EXPECT_EQ(models.get_sync("b")->id, "b");
  EXPECT_EQ(models.get_sync("a")->id, "a");  // a hit: a becomes the most recently used
  EXPECT_EQ(models.num_loads(), 2);
  EXPECT_EQ(models.get_sync("c")->id, "c");  // evicts b
  EXPECT_EQ(unloaded, std::vector<std::string>({"b"}));
  EXPECT_EQ(destroyed.load(), 1);
  EXPECT_EQ(models.model_ids(), std::vector<std::string>({"a", "c"}));
  std::shared_ptr<Model> held = models.get_sync("a");
  models.get_sync("d");  // evicts c (a was used last)
  models.get_sync("e");  // evicts a, still held by `held`: its destructor waits for it
  EXPECT_EQ(unloaded, std::vector<std::string>({"b", "c", "a"}));
  EXPECT_EQ(destroyed.load(), 2);
  held.reset();
  EXPECT_EQ(destroyed.load(), 3);
  EXPECT_EQ(models.model_ids(), std::vector<std::string>({"d", "e"}));
  EXPECT_EQ(models.num_loads(), 5);
  EXPECT_EQ(models.num_unloads(), 3);
}

TEST(MultiplexTest, UnlimitedCacheNeverEvicts) {
  Multiplexed<Model> models([](const std::string& id) { return Model(id); }, -1);
  for (int i = 0; i < 20; ++i) models.get_sync("m" + std::to_string(i));
  EXPECT_EQ(models.model_ids().size(), 20u);
  EXPECT_EQ(models.num_unloads(), 0);
}

TEST(MultiplexTest, RejectsBadCapacityAndEmptyIds) {
  auto loader = [](const std::string& id) { return Model(id); };
  EXPECT_THROW(Multiplexed<Model>(loader, 0), std::invalid_argument);
  EXPECT_THROW(Multiplexed<Model>(loader, -2), std::invalid_argument);
  Multiplexed<Model> models(loader, 1);
  EXPECT_THROW(models.get_sync(""), std::invalid_argument);
}

TEST(MultiplexTest, ConcurrentCoroutinesForOneIdShareOneLoad) {
  Gate gate;
  std::atomic<int> loads{0};
  Multiplexed<Model> models(
      [&](const std::string& id) -> Task<std::shared_ptr<Model>> {
        ++loads;
        co_await gate.Wait();
        co_return std::make_shared<Model>(id);
      },
      2);
  auto owner = std::make_shared<RecordingRequest>();  // hosts own their Resumers by shared_ptr
  RecordingRequest& request = *owner;
  serve::sdk::ScopedRequestContext scope(&request.ctx);
  std::vector<Task<std::shared_ptr<Model>>> tasks;
  std::atomic<int> done{0};
  for (int i = 0; i < 8; ++i) {
    tasks.push_back(models.get("x"));
    tasks.back().Start([&] { ++done; });
  }
  EXPECT_EQ(loads.load(), 1);
  EXPECT_EQ(done.load(), 0);
  EXPECT_EQ(serve::sdk::MultiplexedModelIds(), std::vector<std::string>({"x"}));  // loading
  EXPECT_TRUE(models.model_ids().empty());
  gate.Open();
  EXPECT_EQ(done.load(), 8);
  EXPECT_EQ(request.resumes.load(), 7);  // the waiters resumed through the request's executor
  std::shared_ptr<Model> first = std::move(tasks[0]).Take();
  for (size_t i = 1; i < tasks.size(); ++i) EXPECT_EQ(std::move(tasks[i]).Take(), first);
  EXPECT_EQ(models.num_loads(), 1);
  EXPECT_EQ(models.model_ids(), std::vector<std::string>({"x"}));
}

TEST(MultiplexTest, ConcurrentThreadsForOneIdShareOneLoad) {
  std::atomic<int> loads{0};
  Multiplexed<Model> models(
      [&](const std::string& id) {
        ++loads;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        return std::make_shared<Model>(id);
      },
      3);
  std::vector<std::thread> threads;
  std::vector<std::shared_ptr<Model>> got(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] { got[i] = models.get_sync(i % 2 ? "odd" : "even"); });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(loads.load(), 2);
  for (int i = 2; i < 8; ++i) EXPECT_EQ(got[i], got[i % 2]);
}

TEST(MultiplexTest, AFailedLoadFailsItsWaitersAndIsNotCached) {
  Gate gate;
  int attempts = 0;
  Multiplexed<Model> models(
      [&](const std::string& id) -> Task<std::shared_ptr<Model>> {
        if (++attempts == 1) {
          co_await gate.Wait();
          throw std::runtime_error("no such model");
        }
        co_return std::make_shared<Model>(id);
      },
      2);
  auto a = models.get("x");
  auto b = models.get("x");
  a.Start([] {});
  b.Start([] {});
  gate.Open();
  EXPECT_THROW(std::move(a).Take(), std::runtime_error);
  EXPECT_THROW(std::move(b).Take(), std::runtime_error);
  EXPECT_TRUE(models.model_ids().empty());
  EXPECT_EQ(models.get_sync("x")->id, "x");
  EXPECT_EQ(attempts, 2);
}

TEST(MultiplexTest, ReadsTheRequestsModelIdAndReportsChanges) {
  std::atomic<int> changes{0};
  serve::sdk::SetMultiplexedModelsListener([&] { ++changes; });
  EXPECT_EQ(serve::get_multiplexed_model_id(), "");
  {
    Multiplexed<Model> models([](const std::string& id) { return Model(id); }, 1);
    serve::sdk::RequestContext ctx;
    ctx.multiplexed_model_id = "customer-7";
    {
      serve::sdk::ScopedRequestContext scope(&ctx);
      EXPECT_EQ(serve::get_multiplexed_model_id(), "customer-7");
      EXPECT_EQ(models.get().Get()->id, "customer-7");
    }
    EXPECT_EQ(serve::sdk::MultiplexedModelIds(), std::vector<std::string>({"customer-7"}));
    int before = changes.load();
    EXPECT_GE(before, 2);  // loading, then loaded
    models.get_sync("customer-7");
    EXPECT_EQ(changes.load(), before);  // a hit changes nothing
    models.get_sync("customer-8");
    EXPECT_GT(changes.load(), before);
    EXPECT_EQ(serve::sdk::MultiplexedModelIds(), std::vector<std::string>({"customer-8"}));
  }
  EXPECT_TRUE(serve::sdk::MultiplexedModelIds().empty());  // the cache went away
  serve::sdk::SetMultiplexedModelsListener(nullptr);
}

}  // namespace

namespace {

TEST(MultiplexTest, ChurnFromManyThreadsKeepsTheLimitAndEveryModelValid) {
  std::atomic<int> live{0};
  struct Counted {
    explicit Counted(std::string id, std::atomic<int>& live) : id(std::move(id)), live(live) {
      ++live;
    }
    ~Counted() { --live; }
    std::string id;
    std::atomic<int>& live;
  };
  serve::Multiplexed<Counted> models(
      [&](const std::string& id) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        return std::make_shared<Counted>(id, live);
      },
      2);
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        std::string id = "m" + std::to_string((i * 7 + t) % 4);
        if (models.get_sync(id)->id != id) ++wrong;
        EXPECT_LE(models.model_ids().size(), 2u);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_LE(live.load(), 2);
  EXPECT_EQ(models.num_loads() - models.num_unloads(),
            static_cast<int64_t>(models.model_ids().size()));
}

}  // namespace

namespace {


struct PoolRequest final : serve::sdk::Resumer {
  explicit PoolRequest(Pool& pool) : pool(pool) { ctx.resumer = this; }
  void Resume(std::coroutine_handle<> h) override {
    auto self = shared_from_this();
    pool.Post([this, self, h] {
      serve::sdk::ScopedRequestContext scope(&ctx);
      h.resume();
    });
  }
  Pool& pool;
  serve::sdk::RequestContext ctx;
  std::optional<Task<std::shared_ptr<Model>>> task;
};

// Suspends and resumes on the pool (like sleep_for(0) in a replica).
struct Yield {
  bool await_ready() { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    const serve::sdk::RequestContext* ctx = serve::sdk::CurrentRequestContext();
    ctx->resumer->Resume(h);
  }
  void await_resume() {}
};

TEST(MultiplexTest, CoroutineChurnOnAThreadPool) {
  Pool pool(4);
  Multiplexed<Model> models(
      [](const std::string& id) -> Task<std::shared_ptr<Model>> {
        co_await Yield{};
        co_return std::make_shared<Model>(id);
      },
      2);
  constexpr int kRequests = 4000;
  std::atomic<int> done{0}, wrong{0};
  std::vector<std::shared_ptr<PoolRequest>> requests;
  for (int i = 0; i < kRequests; ++i) requests.push_back(std::make_shared<PoolRequest>(pool));
  for (int i = 0; i < kRequests; ++i) {
    auto r = requests[i];
    std::string id = "m" + std::to_string(i % 4);
    pool.Post([r, id, &models, &done, &wrong] {
      serve::sdk::ScopedRequestContext scope(&r->ctx);
      r->task.emplace(models.get(id));
      r->task->Start([r, id, &done, &wrong] {
        try {
          if (std::move(*r->task).Take()->id != id) ++wrong;
        } catch (...) {
          ++wrong;
        }
        ++done;
      });
    });
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (done.load() < kRequests && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(done.load(), kRequests);
  EXPECT_EQ(wrong.load(), 0);
}

}  // namespace
