// The queue behind serve::Batcher: forms batches, runs them on the replica's executor and
// completes each caller (see include/serve/batching.h for the contract).

#include <serve/batching.h>

#include <algorithm>
#include <deque>
#include <string>
#include <thread>

#include <serve/context.h>

#include "sdk/builtin_metrics.h"
#include "sdk/host.h"

namespace serve::detail {

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<BatchClock*> g_clock{nullptr};
std::atomic<int> g_max_ongoing{0};

// A coroutine nobody awaits: frees its frame when it finishes.
struct Detached {
  struct promise_type {
    Detached get_return_object() {
      return Detached{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() {}
    void unhandled_exception() { std::terminate(); }
  };
  std::coroutine_handle<promise_type> h;
};

Clock::time_point Now() {
  BatchClock* c = g_clock.load();
  return c ? c->now() : Clock::now();
}

// Sleeps until `delay` passed without honouring the request's cancellation (the timer serves
// the whole queue, not the request whose context happens to be installed).
struct TimerAwaiter {
  std::chrono::nanoseconds delay;
  bool cancelled = false;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    const sdk::RequestContext* ctx = sdk::CurrentRequestContext();
    if (ctx == nullptr) {
      ResumeAfter(delay, h, &cancelled);
      return;
    }
    sdk::RequestContext copy = *ctx;
    copy.cancelled = nullptr;
    sdk::ScopedRequestContext scope(&copy);
    ResumeAfter(delay, h, &cancelled);
  }
  void await_resume() const noexcept {}
};

Detached TimerWait(std::chrono::nanoseconds delay, std::function<void()> fn) {
  co_await TimerAwaiter{delay};
  fn();
}

void Schedule(Clock::time_point at, std::function<void()> fn) {
  if (BatchClock* c = g_clock.load()) {
    c->schedule(at, std::move(fn));
    return;
  }
  TimerWait(std::max(at - Clock::now(), Clock::duration::zero()), std::move(fn)).h.resume();
}

void ValidateMaxBatchSize(int n) {
  if (n < 1) {
    throw std::invalid_argument("max_batch_size must be an integer >= 1, instead got " +
                                std::to_string(n));
  }
}

void MaybeWarn(int max_batch_size, int max_concurrent_batches) {
  if (auto w = BatchCapacityWarning(max_batch_size, max_concurrent_batches, g_max_ongoing.load())) {
    serve::logger().warning(*w);
  }
}

}  // namespace

BatchItem::~BatchItem() = default;

struct BatchQueue::Impl {
  BatchRunFn run;
  mutable std::mutex mu;
  int max_batch_size;
  std::chrono::nanoseconds timeout;
  int max_concurrent;
  std::string function_name;  // tag of the batch metrics
  std::deque<std::shared_ptr<BatchItem>> queue;
  bool own_thread = false;
  bool capacity_checked = false;  // the capacity warning was considered (first Submit)
  int running = 0;
  std::optional<Clock::time_point> forming_since;  // the forming batch's start
  std::optional<Clock::time_point> timer_at;       // earliest armed timer
};

namespace {

struct Batch {
  std::vector<std::shared_ptr<BatchItem>> items;
  // For the metrics: how long it formed, its total weight, the queue left behind.
  double wait_ms = 0;
  std::size_t size = 0;
  int max_size = 1;
  std::size_t queue_left = 0;
};

void Pump(const std::shared_ptr<BatchQueue>& self, BatchQueue::Impl& impl);

// Completes the batch's callers, frees its slot and forms the next batch.
void Finish(const std::shared_ptr<BatchQueue>& self, BatchQueue::Impl& impl, Batch& batch) {
  for (auto& item : batch.items) CompleteBatchItem(*item);
  {
    std::lock_guard lock(impl.mu);
    --impl.running;
  }
  Pump(self, impl);
}

Detached RunBatch(std::shared_ptr<BatchQueue> self, BatchQueue::Impl* impl,
                  std::shared_ptr<Batch> batch) {
  sdk::builtin::BatchLaunched(impl->function_name, batch->wait_ms, batch->size, batch->max_size,
                              batch->queue_left);
  auto started = Clock::now();
  try {
    co_await impl->run(batch->items);
  } catch (...) {  // run() catches the user's errors; this is e.g. bad_alloc
    for (auto& item : batch->items) item->error = std::current_exception();
  }
  sdk::builtin::BatchExecuted(
      impl->function_name,
      std::chrono::duration<double, std::milli>(Clock::now() - started).count());
  Finish(self, *impl, *batch);
}

// Starts a batch on a thread of its own (streaming batches, batches with blocking callers), or
// on the executor of its first caller (inline without one).
void Launch(const std::shared_ptr<BatchQueue>& self, BatchQueue::Impl& impl,
            std::shared_ptr<Batch> batch) {
  std::shared_ptr<sdk::Resumer> resumer = batch->items.front()->resumer;
  // Blocking callers hold executor threads while they wait: a batch with one of them must not
  // need an executor thread to run (all of them may be taken by its callers).
  bool own_thread = impl.own_thread ||
                    std::any_of(batch->items.begin(), batch->items.end(),
                                [](const auto& item) { return !item->waiter; });
  auto h = RunBatch(self, &impl, std::move(batch)).h;
  if (own_thread) {
    std::thread([h] { h.resume(); }).detach();
  } else if (resumer) {
    resumer->Resume(h);
  } else {
    h.resume();
  }
}

void Pump(const std::shared_ptr<BatchQueue>& self, BatchQueue::Impl& impl) {
  std::vector<std::shared_ptr<Batch>> launch;
  std::vector<std::shared_ptr<BatchItem>> cancelled;
  std::optional<Clock::time_point> arm;
  {
    std::lock_guard lock(impl.mu);
    while (true) {
      for (auto it = impl.queue.begin(); it != impl.queue.end();) {
        if ((*it)->cancelled != nullptr && (*it)->cancelled->load()) {
          cancelled.push_back(std::move(*it));
          it = impl.queue.erase(it);
        } else {
          ++it;
        }
      }
      if (impl.queue.empty()) {
        impl.forming_since.reset();
        break;
      }
      if (impl.running >= impl.max_concurrent) break;
      auto now = Now();
      if (!impl.forming_since) impl.forming_since = now;
      // The batch: queued items of the head's model id, in order, up to max_batch_size weight.
      const std::string& model = impl.queue.front()->model_id;
      std::vector<std::size_t> picked;
      std::size_t total = 0;
      bool full = false;
      const auto max = static_cast<std::size_t>(impl.max_batch_size);
      for (std::size_t i = 0; i < impl.queue.size(); ++i) {
        const BatchItem& item = *impl.queue[i];
        if (item.model_id != model) continue;
        if (total + item.weight > max) {
          full = true;
          break;
        }
        total += item.weight;
        picked.push_back(i);
        if (total == max) {
          full = true;
          break;
        }
      }
      auto deadline = *impl.forming_since + impl.timeout;
      if (!full && now < deadline) {
        if (!impl.timer_at || deadline < *impl.timer_at) {
          impl.timer_at = deadline;
          arm = deadline;
        }
        break;
      }
      auto batch = std::make_shared<Batch>();
      for (std::size_t i : picked) batch->items.push_back(impl.queue[i]);
      for (auto it = picked.rbegin(); it != picked.rend(); ++it) {
        impl.queue.erase(impl.queue.begin() + static_cast<std::ptrdiff_t>(*it));
      }
      batch->wait_ms = std::chrono::duration<double, std::milli>(now - *impl.forming_since).count();
      batch->size = total;
      batch->max_size = impl.max_batch_size;
      batch->queue_left = impl.queue.size();
      // Closed by its wait: items of other model ids queued in the same window close with it
      // (each in its own slot); closed by size: the next batch starts its own wait.
      if (full) impl.forming_since.reset();
      ++impl.running;
      launch.push_back(std::move(batch));
    }
  }
  for (auto& item : cancelled) {
    item->error = std::make_exception_ptr(
        RequestCancelledError("Request was cancelled before its batch ran."));
    CompleteBatchItem(*item);
  }
  if (arm) {
    std::weak_ptr<BatchQueue> weak = self;
    BatchQueue::Impl* p = &impl;
    Schedule(*arm, [weak, p, at = *arm] {
      auto s = weak.lock();
      if (!s) return;
      {
        std::lock_guard lock(p->mu);
        if (p->timer_at && *p->timer_at <= at) p->timer_at.reset();
      }
      Pump(s, *p);
    });
  }
  for (auto& batch : launch) Launch(self, impl, std::move(batch));
}

}  // namespace

BatchQueue::BatchQueue(BatchRunFn run, BatchOptions options, bool own_thread)
    : impl_(std::make_unique<Impl>()) {
  impl_->own_thread = own_thread;
  ValidateMaxBatchSize(options.max_batch_size);
  if (!(options.batch_wait_timeout_s >= 0)) {
    throw std::invalid_argument("batch_wait_timeout_s must be a float >= 0, instead got " +
                                std::to_string(options.batch_wait_timeout_s));
  }
  if (options.max_concurrent_batches < 1) {
    throw std::invalid_argument("max_concurrent_batches must be an integer >= 1, instead got " +
                                std::to_string(options.max_concurrent_batches));
  }
  impl_->run = std::move(run);
  impl_->max_batch_size = options.max_batch_size;
  impl_->timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::duration<double>(options.batch_wait_timeout_s));
  impl_->max_concurrent = options.max_concurrent_batches;
  impl_->function_name = options.function_name.empty() ? "batch" : options.function_name;
}

BatchQueue::~BatchQueue() = default;

void BatchQueue::Prepare(BatchItem& item) {
  if (const sdk::RequestContext* ctx = sdk::CurrentRequestContext()) {
    item.cancelled = ctx->cancelled;
    if (ctx->resumer != nullptr) item.resumer = ctx->resumer->shared_from_this();
    item.model_id = ctx->multiplexed_model_id;  // serve::get_multiplexed_model_id()
  }
  int max = max_batch_size();
  if (item.weight > static_cast<std::size_t>(max)) {
    item.error = std::make_exception_ptr(std::invalid_argument(
        "Size of item (" + std::to_string(item.weight) + ") exceeds max_batch_size (" +
        std::to_string(max) + ")."));
    item.done = true;
  }
}

void BatchQueue::Submit(std::shared_ptr<BatchItem> item) {
  bool check = false;
  int size = 0, concurrent = 0;
  {
    std::lock_guard lock(impl_->mu);
    impl_->queue.push_back(std::move(item));
    // Checked at the first call rather than at construction: the host may learn
    // max_ongoing_requests after the user's constructor ran.
    check = !std::exchange(impl_->capacity_checked, true);
    size = impl_->max_batch_size;
    concurrent = impl_->max_concurrent;
  }
  if (check) MaybeWarn(size, concurrent);
  Pump(shared_from_this(), *impl_);
}

void BatchQueue::SetMaxBatchSize(int n) {
  ValidateMaxBatchSize(n);
  int concurrent;
  {
    std::lock_guard lock(impl_->mu);
    impl_->max_batch_size = n;
    concurrent = impl_->max_concurrent;
  }
  MaybeWarn(n, concurrent);
  Pump(shared_from_this(), *impl_);  // a smaller size may fill the forming batch
}

void BatchQueue::SetBatchWaitTimeoutS(double s) {
  if (!(s >= 0)) {
    throw std::invalid_argument("batch_wait_timeout_s must be a float >= 0, instead got " +
                                std::to_string(s));
  }
  SetBatchWaitTimeout(std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::duration<double>(s)));
}

void BatchQueue::SetBatchWaitTimeout(std::chrono::nanoseconds timeout) {
  {
    std::lock_guard lock(impl_->mu);
    impl_->timeout = std::max(timeout, std::chrono::nanoseconds::zero());
  }
  Pump(shared_from_this(), *impl_);  // a shorter wait may end the forming batch
}

int BatchQueue::max_batch_size() const {
  std::lock_guard lock(impl_->mu);
  return impl_->max_batch_size;
}
std::chrono::nanoseconds BatchQueue::batch_wait_timeout() const {
  std::lock_guard lock(impl_->mu);
  return impl_->timeout;
}
int BatchQueue::max_concurrent_batches() const {
  std::lock_guard lock(impl_->mu);
  return impl_->max_concurrent;
}
std::size_t BatchQueue::queued() const {
  std::lock_guard lock(impl_->mu);
  return impl_->queue.size();
}

void CompleteBatchItem(BatchItem& item) {
  if (std::coroutine_handle<> h = item.waiter) {
    if (item.resumer) {
      item.resumer->Resume(h);
    } else {
      h.resume();
    }
    return;
  }
  std::lock_guard lock(item.mu);
  item.done = true;
  item.cv.notify_all();
}

std::optional<std::string> BatchCapacityWarning(int max_batch_size, int max_concurrent_batches,
                                                int max_ongoing_requests) {
  long long capacity = static_cast<long long>(max_batch_size) * max_concurrent_batches;
  if (max_ongoing_requests <= 0 || capacity <= max_ongoing_requests) return std::nullopt;
  return "`max_batch_size` (" + std::to_string(max_batch_size) + ") * `max_concurrent_batches` (" +
         std::to_string(max_concurrent_batches) + ") is larger than `max_ongoing_requests` (" +
         std::to_string(max_ongoing_requests) +
         "). This means the replica will never receive a full batch. Please update "
         "`max_ongoing_requests` to be >= `max_batch_size` * `max_concurrent_batches`.";
}

void SetBatchingMaxOngoingRequests(int n) { g_max_ongoing.store(n); }

void SetBatchClockForTesting(BatchClock* clock) { g_clock.store(clock); }

void ThrowBatchSizeMismatch(std::size_t inputs, std::size_t outputs) {
  throw ServeException("Batched function doesn't preserve batch size. The input list has length " +
                       std::to_string(inputs) + " but the returned list has length " +
                       std::to_string(outputs) + ".");
}

}  // namespace serve::detail
