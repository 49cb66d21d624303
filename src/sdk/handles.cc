// The handle machinery: ResponseState/StreamState, chained calls, the sleep timer thread,
// starting calls through the installed HandleRuntime, and DeploymentHandle.

#include <algorithm>
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
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sdk/host.h"
#include "sdk/sdk_internal.h"

namespace serve {

namespace {

thread_local bool tls_inline_resume = false;  // inside Task::Get (InlineResumeScope)

// The executor a coroutine suspending on this thread resumes on; null: inline.
std::shared_ptr<sdk::Resumer> CurrentResumer() {
  const sdk::RequestContext* ctx = tls_request_context;
  if (tls_inline_resume || ctx == nullptr || ctx->resumer == nullptr) return nullptr;
  return ctx->resumer->shared_from_this();
}

void ResumeOn(const std::shared_ptr<sdk::Resumer>& resumer, std::coroutine_handle<> h) {
  if (!h) return;
  if (resumer) {
    resumer->Resume(h);
  } else {
    h.resume();
  }
}

detail::CallResult Cancelled(const std::string& why) {
  detail::CallResult r;
  r.code = detail::CallResult::Code::kCancelled;
  r.error_message = why;
  return r;
}

// Resumes sleeping coroutines (serve::sleep_for) at their deadline, or early when their request
// is cancelled (checked every kCancelPoll while such sleepers exist). One thread per process,
// started on first use and never stopped.
class TimerThread {
 public:
  using Clock = std::chrono::steady_clock;
  static TimerThread& Get() {
    static TimerThread* t = new TimerThread();  // never destroyed: sleepers may outlive main
    return *t;
  }
  void Add(Clock::time_point at, std::coroutine_handle<> h, bool* cancelled) {
    Entry e{h, CurrentResumer(), nullptr, cancelled};
    if (const sdk::RequestContext* ctx = tls_request_context; ctx != nullptr && e.resumer) {
      e.flag = ctx->cancelled;  // lives as long as the resumer (the request) we keep
    }
    std::lock_guard lock(mu_);
    // Wake the thread for an earlier deadline, and for a cancellable sleeper: it may be
    // waiting for a later deadline without polling cancel flags.
    bool wake = entries_.empty() || at < entries_.begin()->first || e.flag != nullptr;
    entries_.emplace(at, std::move(e));
    if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
    if (wake) cv_.notify_one();
  }

 private:
  struct Entry {
    std::coroutine_handle<> h;
    std::shared_ptr<sdk::Resumer> resumer;
    const std::atomic<bool>* flag;  // the request's cancel flag, or null
    bool* cancelled;                // in the awaiter
  };
  static constexpr auto kCancelPoll = std::chrono::milliseconds(20);

  void Run() {
    std::unique_lock lock(mu_);
    while (true) {
      if (entries_.empty()) {
        cv_.wait(lock);
        continue;
      }
      auto now = Clock::now();
      std::vector<Entry> due;
      bool watch = false;  // some sleeper can be cancelled
      for (auto it = entries_.begin(); it != entries_.end();) {
        bool cancelled = it->second.flag != nullptr && it->second.flag->load();
        if (it->first <= now || cancelled) {
          if (cancelled) *it->second.cancelled = true;
          due.push_back(std::move(it->second));
          it = entries_.erase(it);
        } else {
          watch |= it->second.flag != nullptr;
          ++it;
        }
      }
      if (!due.empty()) {
        lock.unlock();
        for (auto& e : due) ResumeOn(e.resumer, e.h);
        lock.lock();
        continue;
      }
      auto wake = entries_.begin()->first;
      if (watch) wake = std::min(wake, now + kCancelPoll);
      cv_.wait_until(lock, wake);
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<Clock::time_point, Entry> entries_;
  std::thread thread_;
};

}  // namespace

namespace detail {

InlineResumeScope::InlineResumeScope() : previous_(std::exchange(tls_inline_resume, true)) {}
InlineResumeScope::~InlineResumeScope() { tls_inline_resume = previous_; }

void ResumeAfter(std::chrono::nanoseconds delay, std::coroutine_handle<> h, bool* cancelled) {
  TimerThread::Get().Add(std::chrono::steady_clock::now() + std::max(delay, {}), h, cancelled);
}

void ThrowRequestCancelled() {
  const sdk::RequestContext* ctx = tls_request_context;
  throw RequestCancelledError("Request " + (ctx ? ctx->request_id : std::string()) +
                              " was cancelled.");
}

struct ResponseState::Impl {
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  std::optional<CallResult> result;
  std::coroutine_handle<> waiting;
  std::shared_ptr<sdk::Resumer> resumer;  // where `waiting` resumes
  std::vector<std::function<void()>> when_complete;
  std::function<void()> canceller;
};

ResponseState::ResponseState() : impl_(std::make_unique<Impl>()) {}
ResponseState::~ResponseState() = default;

void ResponseState::Complete(CallResult result) {
  std::coroutine_handle<> h;
  std::shared_ptr<sdk::Resumer> resumer;
  std::vector<std::function<void()>> callbacks;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->result) return;
    impl_->result = std::move(result);
    impl_->cv.notify_all();
    h = std::exchange(impl_->waiting, {});
    resumer = std::move(impl_->resumer);
    callbacks = std::move(impl_->when_complete);
    impl_->canceller = nullptr;
  }
  for (auto& fn : callbacks) fn();
  ResumeOn(resumer, h);
}

bool ResponseState::Ready() const {
  std::lock_guard lock(impl_->mu);
  return impl_->result.has_value();
}

bool ResponseState::Wait(std::optional<double> timeout_s) const {
  std::unique_lock lock(impl_->mu);
  auto done = [&] { return impl_->result.has_value(); };
  if (!timeout_s) {
    impl_->cv.wait(lock, done);
    return true;
  }
  return impl_->cv.wait_for(lock, std::chrono::duration<double>(*timeout_s), done);
}

bool ResponseState::Suspend(std::coroutine_handle<> h) {
  std::shared_ptr<sdk::Resumer> resumer = CurrentResumer();
  std::lock_guard lock(impl_->mu);
  if (impl_->result) return false;
  impl_->waiting = h;
  impl_->resumer = std::move(resumer);
  return true;
}

const CallResult& ResponseState::result() const {
  std::lock_guard lock(impl_->mu);
  return *impl_->result;
}

void ResponseState::WhenComplete(std::function<void()> fn) {
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->result) {
      impl_->when_complete.push_back(std::move(fn));
      return;
    }
  }
  fn();
}

bool ResponseState::SetCanceller(std::function<void()> cancel) {
  std::lock_guard lock(impl_->mu);
  if (impl_->result) return false;
  impl_->canceller = std::move(cancel);
  return true;
}

void ResponseState::Cancel() {
  std::function<void()> cancel;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->result) return;
    cancel = impl_->canceller;
  }
  Complete(Cancelled(cancel ? "The request was cancelled."
                            : "The request was cancelled before it was sent."));
  if (cancel) cancel();
}

struct StreamState::Impl {
  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> items;
  bool finished = false;
  CallResult failure;
  std::coroutine_handle<> waiting;
  std::shared_ptr<sdk::Resumer> resumer;
  std::function<void()> canceller;
};

StreamState::StreamState() : impl_(std::make_unique<Impl>()) {}
StreamState::~StreamState() = default;

void StreamState::Push(std::string item) {
  std::coroutine_handle<> h;
  std::shared_ptr<sdk::Resumer> resumer;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->finished) return;
    impl_->items.push_back(std::move(item));
    impl_->cv.notify_all();
    h = std::exchange(impl_->waiting, {});
    resumer = std::move(impl_->resumer);
  }
  ResumeOn(resumer, h);
}

void StreamState::Finish(CallResult failure) {
  std::coroutine_handle<> h;
  std::shared_ptr<sdk::Resumer> resumer;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->finished) return;
    impl_->finished = true;
    impl_->failure = std::move(failure);
    impl_->cv.notify_all();
    h = std::exchange(impl_->waiting, {});
    resumer = std::move(impl_->resumer);
    impl_->canceller = nullptr;
  }
  ResumeOn(resumer, h);
}

bool StreamState::Ready() const {
  std::lock_guard lock(impl_->mu);
  return !impl_->items.empty() || impl_->finished;
}

bool StreamState::Finished() const {
  std::lock_guard lock(impl_->mu);
  return impl_->finished;
}

bool StreamState::Suspend(std::coroutine_handle<> h) {
  std::shared_ptr<sdk::Resumer> resumer = CurrentResumer();
  std::lock_guard lock(impl_->mu);
  if (!impl_->items.empty() || impl_->finished) return false;
  impl_->waiting = h;
  impl_->resumer = std::move(resumer);
  return true;
}

std::optional<std::string> StreamState::Next(std::optional<double> timeout_s) {
  std::unique_lock lock(impl_->mu);
  auto ready = [&] { return !impl_->items.empty() || impl_->finished; };
  if (!timeout_s) {
    impl_->cv.wait(lock, ready);
  } else if (!impl_->cv.wait_for(lock, std::chrono::duration<double>(*timeout_s), ready)) {
    throw TimeoutError("the stream produced no item in time");
  }
  if (!impl_->items.empty()) {
    std::string item = std::move(impl_->items.front());
    impl_->items.pop_front();
    return item;
  }
  if (impl_->failure.code != CallResult::Code::kOk) ThrowCallError(impl_->failure);
  return std::nullopt;
}

bool StreamState::SetCanceller(std::function<void()> cancel) {
  std::lock_guard lock(impl_->mu);
  if (impl_->finished) return false;
  impl_->canceller = std::move(cancel);
  return true;
}

void StreamState::Cancel() {
  std::function<void()> cancel;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->finished) return;
    cancel = impl_->canceller;
  }
  Finish(Cancelled("The stream was cancelled."));
  if (cancel) cancel();
}

std::atomic<sdk::HandleRuntime*>& RuntimeSlot() {
  static std::atomic<sdk::HandleRuntime*> runtime{nullptr};
  return runtime;
}

namespace {

sdk::HandleRuntime* RuntimeFor(const CallTarget& target) {
  sdk::HandleRuntime* runtime = RuntimeSlot().load();
  if (runtime == nullptr) {
    throw ServeException("DeploymentHandle calls are only available inside a replica");
  }
  if (target.deployment.empty()) throw ServeException("calling an empty DeploymentHandle");
  return runtime;
}

// Waits for the upstream calls of a chained call, then sends it (`send`) with their values in
// place, or fails it (`fail`) with the first upstream failure.
struct Chain {
  CallTarget target;
  Json args;
  ChainedArgs upstream;
  sdk::RequestContext context;  // request id and route of the caller
  std::atomic<size_t> remaining{0};
  std::function<void(std::string)> send;
  std::function<void(CallResult)> fail;

  void Arm(const std::shared_ptr<Chain>& self) {
    if (const sdk::RequestContext* ctx = tls_request_context) {
      context.request_id = ctx->request_id;
      context.route = ctx->route;
    }
    remaining = upstream.size();
    std::vector<std::shared_ptr<ResponseState>> states;  // Fire() may run within the loop
    for (auto& [index, state] : upstream) states.push_back(state);
    for (auto& state : states) {
      state->WhenComplete([self] {
        if (--self->remaining == 0) self->Fire();
      });
    }
  }
  void Fire() {
    for (auto& [index, state] : upstream) {
      const CallResult& r = state->result();
      if (r.code != CallResult::Code::kOk) {
        fail(r);
        return;
      }
      Json value = Json::from_msgpack(r.body, /*strict=*/true, /*allow_exceptions=*/false);
      if (value.is_discarded()) {
        CallResult bad;
        bad.code = CallResult::Code::kError;
        bad.error_type = "ValueError";
        bad.error_message = "malformed msgpack payload of a chained response";
        fail(std::move(bad));
        return;
      }
      args[index] = std::move(value);
    }
    upstream.clear();  // drop the upstream results
    sdk::ScopedRequestContext scope(&context);
    send(EncodeMsgpack(args));
  }
};

}  // namespace

std::shared_ptr<ResponseState> StartCall(const CallTarget& target, std::string encoded_args) {
  sdk::HandleRuntime* runtime = RuntimeFor(target);
  auto state = std::make_shared<ResponseState>();
  runtime->Call(target, std::move(encoded_args), state);
  return state;
}

std::shared_ptr<StreamState> StartStream(const CallTarget& target, std::string encoded_args) {
  sdk::HandleRuntime* runtime = RuntimeFor(target);
  auto state = std::make_shared<StreamState>();
  runtime->CallStream(target, std::move(encoded_args), state);
  return state;
}

std::shared_ptr<ResponseState> StartChainedCall(const CallTarget& target, Json args,
                                                ChainedArgs upstream) {
  sdk::HandleRuntime* runtime = RuntimeFor(target);
  auto state = std::make_shared<ResponseState>();
  auto chain = std::make_shared<Chain>();
  chain->target = target;
  chain->args = std::move(args);
  chain->upstream = std::move(upstream);
  // The chain keeps the state: a dropped response is still sent (as in Ray).
  chain->send = [runtime, target, state](std::string encoded) {
    if (state->Ready()) return;  // cancelled meanwhile
    runtime->Call(target, std::move(encoded), state);
  };
  chain->fail = [state](CallResult failure) { state->Complete(std::move(failure)); };
  chain->Arm(chain);
  return state;
}

std::shared_ptr<StreamState> StartChainedStream(const CallTarget& target, Json args,
                                                ChainedArgs upstream) {
  sdk::HandleRuntime* runtime = RuntimeFor(target);
  auto state = std::make_shared<StreamState>();
  auto chain = std::make_shared<Chain>();
  chain->target = target;
  chain->args = std::move(args);
  chain->upstream = std::move(upstream);
  chain->send = [runtime, target, state](std::string encoded) {
    if (state->Finished()) return;  // cancelled meanwhile
    runtime->CallStream(target, std::move(encoded), state);
  };
  chain->fail = [state](CallResult failure) { state->Finish(std::move(failure)); };
  chain->Arm(chain);
  return state;
}

void ThrowCallError(const CallResult& r) {
  switch (r.code) {
    case CallResult::Code::kBackPressure: throw BackPressureError(r.error_message);
    case CallResult::Code::kUnavailable: throw DeploymentUnavailableError(r.error_message);
    case CallResult::Code::kCancelled: throw RequestCancelledError(r.error_message);
    default: throw DeploymentError(r.error_type, r.error_message);
  }
}

}  // namespace detail

DeploymentHandle::DeploymentHandle(std::string deployment, std::string app) {
  target_.deployment = std::move(deployment);
  target_.app = std::move(app);
}

DeploymentHandle DeploymentHandle::method(std::string name) const {
  DeploymentHandle h = *this;
  h.target_.method = std::move(name);
  return h;
}

DeploymentHandle DeploymentHandle::options(const HandleOptions& o) const {
  DeploymentHandle h = *this;
  if (o.method_name) h.target_.method = *o.method_name;
  if (o.multiplexed_model_id) h.target_.multiplexed_model_id = *o.multiplexed_model_id;
  if (o.stream) h.target_.stream = *o.stream;
  if (o.shield) h.target_.shield = *o.shield;
  return h;
}

void to_json(Json& j, const DeploymentHandle& h) {
  j = Json{{"__serve_handle__", {{"deployment", h.deployment_name()}, {"app", h.app_name()}}}};
}

void from_json(const Json& j, DeploymentHandle& h) {
  auto it = j.find("__serve_handle__");
  if (it == j.end() || !it->is_object()) {
    throw std::invalid_argument("expected a bound deployment (DeploymentHandle) argument");
  }
  h = DeploymentHandle(it->value("deployment", ""), it->value("app", ""));
}

DeploymentHandle get_deployment_handle(const std::string& deployment, const std::string& app) {
  return DeploymentHandle(deployment, app);
}

DeploymentHandle get_app_handle(const std::string& app) {
  return DeploymentHandle(detail::kAppIngress, app);
}

}  // namespace serve
