#pragma once

// Dynamic request batching (`@serve.batch`).
//
//   class Model {
//    public:
//     Model() : batch_([this](std::vector<Image> xs) { return Predict(xs); },
//                      {.max_batch_size = 32, .batch_wait_timeout_s = 0.005}) {}
//     serve::Task<Label> operator()(Image x) { co_return co_await batch_(std::move(x)); }
//     void reconfigure(const serve::Json& c) { batch_.set_max_batch_size(c["max_batch_size"]); }
//    private:
//     std::vector<Label> Predict(const std::vector<Image>& xs);
//     serve::Batcher<Image, Label> batch_;
//   };
//
// Contract:
// - Callers submit one item each and get their own result. Items queue in arrival order; a
//   batch forms when a batch slot is free (at most max_concurrent_batches run at once): it takes
//   the queued items of the first item's multiplexed model id, up to max_batch_size, and closes
//   when full or when batch_wait_timeout_s has passed since it started forming (its first item,
//   or the moment a slot freed for items that queued meanwhile). Timeout 0: run what is queued.
//   When a wait ends, the items of other model ids that queued during it form their batches
//   too, as free slots allow (each batch takes one slot).
// - batch_size_fn(item) weighs an item (default 1); a batch holds items whose weights sum to at
//   most max_batch_size; an item heavier than max_batch_size on its own fails alone.
// - The batch function gets the items in arrival order and returns one output per item (a
//   vector or a serve::Task of one). Another length fails every caller with
//   serve::ServeException "Batched function doesn't preserve batch size. ..."; an exception
//   fails every caller with that exception.
// - Cancelled requests (serve::is_request_cancelled) are removed before their batch runs and
//   fail with serve::RequestCancelledError; a batch whose items are all cancelled is skipped.
// - In a replica, the batch function runs on the replica's executor (resumed through the
//   request context of the batch's first item); awaiting callers resume on the executor with
//   their own request context. Outside a replica it runs inline on the thread that closes the
//   batch (a caller, or serve's timer thread). A batch with a blocking caller (call()) runs on a
//   thread of its own, since its callers may hold every executor thread.
// - A Batcher is cheap to move; its queue lives until the last pending item is done.
// StreamingBatcher (below) batches generators: one value per caller per step.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <serve/errors.h>
#include <serve/stream.h>
#include <serve/task.h>
#include <serve/version.h>

namespace serve {

namespace sdk {
class Resumer;
}

/// Parameters of a Batcher, with the seed's defaults.
struct BatchOptions {
  int max_batch_size = 10;            ///< >= 1 (total weight with batch_size_fn)
  double batch_wait_timeout_s = 0.0;  ///< >= 0; 0 runs whatever is queued at once
  int max_concurrent_batches = 1;     ///< >= 1
  std::string function_name = "";     ///< the batch metrics' function_name tag ("": "batch")
};

namespace detail {

/// One pending call: the type-erased part the queue sees.
struct SERVE_EXPORT BatchItem {
  virtual ~BatchItem();
  std::string model_id;
  std::size_t weight = 1;
  const std::atomic<bool>* cancelled = nullptr;  ///< the caller's request flag, or null
  std::shared_ptr<sdk::Resumer> resumer;         ///< where the caller resumes; null: inline
  std::coroutine_handle<> waiter;                ///< the awaiting caller, or none (blocking)
  std::exception_ptr error;                      ///< set when the item failed
  /// Blocking callers (Batcher::call) wait here.
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
};

/// Runs one batch: fills each item's output or error. Runs on the executor of the batch.
using BatchRunFn = std::function<Task<void>(std::vector<std::shared_ptr<BatchItem>>&)>;

/// The queue of one Batcher (implementation in batching.cc).
class SERVE_EXPORT BatchQueue : public std::enable_shared_from_this<BatchQueue> {
 public:
  /// Throws std::invalid_argument for invalid options. `own_thread`: each batch runs on a new
  /// thread of its own instead of the first caller's executor (streaming batches, whose
  /// callers block executor threads while they wait).
  BatchQueue(BatchRunFn run, BatchOptions options, bool own_thread = false);
  ~BatchQueue();
  BatchQueue(const BatchQueue&) = delete;
  BatchQueue& operator=(const BatchQueue&) = delete;

  /// Fills the item's multiplexed model id, cancel flag and resumer from the calling thread's
  /// request context; fails it at once (done, error set) when its weight exceeds
  /// max_batch_size.
  void Prepare(BatchItem& item);
  /// Queues a prepared item; it is completed exactly once, later or before Submit returns.
  void Submit(std::shared_ptr<BatchItem> item);

  void SetMaxBatchSize(int n);
  void SetBatchWaitTimeout(std::chrono::nanoseconds timeout);
  /// Seconds; throws std::invalid_argument unless s >= 0.
  void SetBatchWaitTimeoutS(double s);
  int max_batch_size() const;
  std::chrono::nanoseconds batch_wait_timeout() const;
  int max_concurrent_batches() const;
  std::size_t queued() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// Completes an item: wakes its blocking caller or resumes its awaiting coroutine (through
/// its resumer; inline without one).
SERVE_EXPORT void CompleteBatchItem(BatchItem& item);

/// The warning logged when max_batch_size * max_concurrent_batches exceeds the replica's
/// max_ongoing_requests (a batch can then never fill), or nullopt.
SERVE_EXPORT std::optional<std::string> BatchCapacityWarning(int max_batch_size,
                                                             int max_concurrent_batches,
                                                             int max_ongoing_requests);
/// The replica's max_ongoing_requests, for that warning (0: unknown, no warning). The host
/// sets it when it learns the value; batchers check at their first call and on
/// set_max_batch_size, and log through serve::logger().
SERVE_EXPORT void SetBatchingMaxOngoingRequests(int n);

/// Test hooks: a clock for batch deadlines. `schedule(at, fn)` must call fn once at or after
/// `at` (from any thread). nullptr restores steady_clock and serve's timer thread.
struct BatchClock {
  virtual ~BatchClock() = default;
  virtual std::chrono::steady_clock::time_point now() = 0;
  virtual void schedule(std::chrono::steady_clock::time_point at, std::function<void()> fn) = 0;
};
SERVE_EXPORT void SetBatchClockForTesting(BatchClock* clock);

template <class Out>
struct TypedBatchItemOut : BatchItem {
  std::optional<Out> output;
};
template <class In, class Out>
struct TypedBatchItem : TypedBatchItemOut<Out> {
  explicit TypedBatchItem(In in) : input(std::move(in)) {}
  In input;
};

[[noreturn]] SERVE_EXPORT void ThrowBatchSizeMismatch(std::size_t inputs, std::size_t outputs);

}  // namespace detail

/// Batches calls of `fn(std::vector<In>) -> std::vector<Out>` (or -> serve::Task<...>).
template <class In, class Out>
class Batcher {
 public:
  using SyncFn = std::function<std::vector<Out>(std::vector<In>)>;
  using AsyncFn = std::function<Task<std::vector<Out>>(std::vector<In>)>;
  using SizeFn = std::function<std::size_t(const In&)>;

  /// Throws std::invalid_argument for invalid options.
  template <class F>
    requires std::is_invocable_v<F&, std::vector<In>>
  explicit Batcher(F fn, BatchOptions options = {}, SizeFn batch_size_fn = {})
      : size_fn_(std::move(batch_size_fn)) {
    using R = std::invoke_result_t<F&, std::vector<In>>;
    if constexpr (IsTask<R>::value) {
      queue_ = std::make_shared<detail::BatchQueue>(MakeRun(AsyncFn(std::move(fn))), options);
    } else {
      SyncFn sync(std::move(fn));
      AsyncFn async = [sync](std::vector<In> xs) -> Task<std::vector<Out>> {
        co_return sync(std::move(xs));
      };
      queue_ = std::make_shared<detail::BatchQueue>(MakeRun(std::move(async)), options);
    }
  }

  /// `co_await batcher(x)` in a coroutine handler: x's output once its batch ran. Rethrows the
  /// batch's exception, serve::ServeException on a wrong result length,
  /// serve::RequestCancelledError when the request was cancelled before its batch ran.
  Task<Out> operator()(In in) {
    auto item = MakeItem(std::move(in));
    if (!item->done) co_await Await{queue_.get(), &item};
    if (item->error) std::rethrow_exception(item->error);
    co_return std::move(*item->output);
  }

  /// The blocking variant for synchronous handlers: waits on this thread (the batch then runs
  /// on a thread of its own).
  Out call(In in) {
    auto item = MakeItem(std::move(in));
    if (!item->done) {
      queue_->Submit(item);
      std::unique_lock lock(item->mu);
      item->cv.wait(lock, [&] { return item->done; });
    }
    if (item->error) std::rethrow_exception(item->error);
    return std::move(*item->output);
  }

  /// Live setters (e.g. from reconfigure(user_config)); apply to batches formed afterwards.
  /// Throw std::invalid_argument for invalid values.
  void set_max_batch_size(int n) { queue_->SetMaxBatchSize(n); }
  void set_batch_wait_timeout_s(double s) { queue_->SetBatchWaitTimeoutS(s); }
  template <class Rep, class Period>
  void set_batch_wait_timeout(std::chrono::duration<Rep, Period> d) {
    set_batch_wait_timeout_s(std::chrono::duration<double>(d).count());
  }
  int max_batch_size() const { return queue_->max_batch_size(); }
  double batch_wait_timeout_s() const {
    return std::chrono::duration<double>(queue_->batch_wait_timeout()).count();
  }
  int max_concurrent_batches() const { return queue_->max_concurrent_batches(); }
  /// Items waiting for a batch (not counting running batches).
  std::size_t queued() const { return queue_->queued(); }

 private:
  using Item = detail::TypedBatchItem<In, Out>;

  // Trivially destructible on purpose: with an owning member (a shared_ptr) this co_await
  // temporary corrupted the heap under GCC 12 once callers resumed on other threads.
  struct Await {
    detail::BatchQueue* queue;
    const std::shared_ptr<Item>* item;  // the awaiting frame's
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      (*item)->waiter = h;
      std::shared_ptr<Item> copy = *item;
      queue->Submit(std::move(copy));  // may resume h (through its resumer) before returning
    }
    void await_resume() const noexcept {}
  };

  std::shared_ptr<Item> MakeItem(In in) {
    auto item = std::make_shared<Item>(std::move(in));
    if (size_fn_) item->weight = size_fn_(item->input);
    queue_->Prepare(*item);
    return item;
  }

  static detail::BatchRunFn MakeRun(AsyncFn fn) {
    return [fn = std::move(fn)](std::vector<std::shared_ptr<detail::BatchItem>>& items)
               -> Task<void> {
      std::vector<In> inputs;
      inputs.reserve(items.size());
      for (auto& i : items) inputs.push_back(std::move(static_cast<Item&>(*i).input));
      std::exception_ptr error;
      try {
        std::vector<Out> outputs = co_await fn(std::move(inputs));
        if (outputs.size() != items.size()) {
          detail::ThrowBatchSizeMismatch(items.size(), outputs.size());
        }
        for (std::size_t k = 0; k < items.size(); ++k) {
          static_cast<Item&>(*items[k]).output.emplace(std::move(outputs[k]));
        }
      } catch (...) {
        error = std::current_exception();
      }
      if (error) {
        for (auto& i : items) i->error = error;
      }
    };
  }

  SizeFn size_fn_;
  std::shared_ptr<detail::BatchQueue> queue_;
};

/// Streaming batches (`@serve.batch` on a generator): `fn(std::vector<In>)` returns a
/// serve::Stream of steps; each step holds one entry per caller of the batch, in order, and
/// nullopt at position i ends caller i's stream early (Ray's StopIteration). Every caller's
/// stream ends when the generator finishes. Forming, options, setters, weights, model ids and
/// cancellation are as for Batcher. A step of the wrong length, or an exception, ends every
/// still-open stream of the batch with that error (after the values already yielded).
/// - operator() returns the caller's serve::Stream<Out> for a streaming handler. It blocks its
///   thread between values (streaming handlers are synchronous); it ends early when the request
///   is cancelled, and a caller that stops reading is skipped by the rest of the batch.
/// - Each batch's generator runs on a thread of its own (the callers hold executor threads
///   while they wait), one step after another; values wait in each caller's queue until read.
template <class In, class Out>
class StreamingBatcher {
 public:
  using Step = std::vector<std::optional<Out>>;
  using Fn = std::function<Stream<Step>(std::vector<In>)>;
  using SizeFn = std::function<std::size_t(const In&)>;

  /// Throws std::invalid_argument for invalid options.
  explicit StreamingBatcher(Fn fn, BatchOptions options = {}, SizeFn batch_size_fn = {})
      : size_fn_(std::move(batch_size_fn)),
        queue_(std::make_shared<detail::BatchQueue>(MakeRun(std::move(fn)), options,
                                                    /*own_thread=*/true)) {}

  Stream<Out> operator()(In in) {
    auto item = std::make_shared<Item>(std::move(in));
    if (size_fn_) item->weight = size_fn_(item->input);
    queue_->Prepare(*item);
    Abandon guard{item.get()};
    if (!item->done) queue_->Submit(item);
    while (true) {
      std::optional<Out> value;
      {
        std::unique_lock lock(item->mu);
        while (item->values.empty() && !item->ended && !item->done) {
          if (item->cancelled != nullptr && item->cancelled->load()) co_return;
          item->cv.wait_for(lock, std::chrono::milliseconds(50));
        }
        if (item->values.empty()) {
          if (!item->ended && item->error) std::rethrow_exception(item->error);
          co_return;
        }
        value.emplace(std::move(item->values.front()));
        item->values.pop_front();
      }
      co_yield std::move(*value);
    }
  }

  void set_max_batch_size(int n) { queue_->SetMaxBatchSize(n); }
  void set_batch_wait_timeout_s(double s) { queue_->SetBatchWaitTimeoutS(s); }
  int max_batch_size() const { return queue_->max_batch_size(); }
  double batch_wait_timeout_s() const {
    return std::chrono::duration<double>(queue_->batch_wait_timeout()).count();
  }

 private:
  struct Item : detail::BatchItem {
    explicit Item(In in) : input(std::move(in)) {}
    In input;
    std::deque<Out> values;              // yielded, not read yet (under mu)
    bool ended = false;                  // nullopt yielded for it (under mu)
    std::atomic<bool> abandoned{false};  // its reader stopped
  };
  struct Abandon {  // marks the item when the caller's stream is destroyed
    Item* item;
    ~Abandon() { item->abandoned = true; }
  };

  static detail::BatchRunFn MakeRun(Fn fn) {
    return [fn = std::move(fn)](std::vector<std::shared_ptr<detail::BatchItem>>& items)
               -> Task<void> {
      std::vector<In> inputs;
      inputs.reserve(items.size());
      for (auto& i : items) inputs.push_back(std::move(static_cast<Item&>(*i).input));
      auto deliver = [&](std::size_t k, std::optional<Out> v) {
        auto& item = static_cast<Item&>(*items[k]);
        std::lock_guard lock(item.mu);
        if (item.ended) return;
        if (v) {
          if (!item.abandoned) item.values.push_back(std::move(*v));
        } else {
          item.ended = true;
        }
        item.cv.notify_all();
      };
      try {
        Stream<Step> steps = fn(std::move(inputs));
        while (std::optional<Step> step = steps.Next()) {
          if (step->size() != items.size()) {
            detail::ThrowBatchSizeMismatch(items.size(), step->size());
          }
          for (std::size_t k = 0; k < items.size(); ++k) deliver(k, std::move((*step)[k]));
          bool open = false;
          for (auto& i : items) {
            auto& item = static_cast<Item&>(*i);
            std::lock_guard lock(item.mu);
            open |= !item.ended && !item.abandoned;
          }
          if (!open) break;  // every caller ended or stopped reading
        }
      } catch (...) {
        for (auto& i : items) {
          std::lock_guard lock(i->mu);
          if (!static_cast<Item&>(*i).ended) i->error = std::current_exception();
        }
      }
      co_return;
    };
  }

  SizeFn size_fn_;
  std::shared_ptr<detail::BatchQueue> queue_;
};

/// `serve::batch<In, Out>(fn, options)`: a Batcher (the `@serve.batch` spelling).
template <class In, class Out, class F>
Batcher<In, Out> batch(F fn, BatchOptions options = {},
                       typename Batcher<In, Out>::SizeFn batch_size_fn = {}) {
  return Batcher<In, Out>(std::move(fn), options, std::move(batch_size_fn));
}

}  // namespace serve
