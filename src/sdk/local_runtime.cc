#include "sdk/local_runtime.h"

#include <pthread.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <random>
#include <stdexcept>
#include <utility>

#include "sdk/execution.h"

namespace serve::sdk {

namespace {

std::string RandomHex(size_t digits) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  std::string out;
  while (out.size() < digits) {
    char buf[17];
    std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(rng()));
    out += buf;
  }
  out.resize(digits);
  return out;
}

detail::CallResult ErrorResult(std::exception_ptr error) {
  detail::CallResult r;
  r.code = detail::CallResult::Code::kError;
  r.error_message = ExceptionText(error, &r.error_type);
  return r;
}

detail::CallResult Value(const Json& value) {
  detail::CallResult r;
  r.body = detail::EncodeMsgpack(value);
  return r;
}

}  // namespace

bool WorkerPool::Post(std::function<void()> job) {
  std::unique_lock lock(mu_);
  if (stop_) {
    lock.unlock();
    job = nullptr;  // dropped outside the lock: it may own what posts jobs
    return false;
  }
  jobs_.push_back(std::move(job));
  if (static_cast<int>(jobs_.size()) > idle_) {
    threads_.emplace_back([this] { Run(); });
  } else {
    cv_.notify_one();
  }
  return true;
}

void WorkerPool::Run() {
  ::pthread_setname_np(::pthread_self(), "serve-local");
  std::unique_lock lock(mu_);
  while (true) {
    ++idle_;
    cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
    --idle_;
    if (stop_) return;
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    job = nullptr;
    lock.lock();
  }
}

void WorkerPool::Stop() {
  std::vector<std::thread> threads;
  std::deque<std::function<void()>> dropped;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    threads = std::move(threads_);
    dropped = std::move(jobs_);
  }
  cv_.notify_all();
  for (auto& t : threads) t.join();
}

/// One call under way: the request it serves, and where its outcome goes.
struct LocalRuntime::LocalCall final : Resumer {
  void Resume(std::coroutine_handle<> h) override {
    auto self = std::static_pointer_cast<LocalCall>(shared_from_this());
    runtime->Schedule(*deployment, [self, h] {
      ScopedRequestContext scope(&self->ctx);
      h.resume();
    });
  }
  /// Cancels this call's handler (is_request_cancelled(), its pending await) and the calls it
  /// made, except shielded ones.
  void Cancel() {
    std::vector<std::function<void()>> cancel;
    {
      std::lock_guard lock(mu);
      cancelled.store(true);
      cancel = std::move(children);
    }
    for (auto& fn : cancel) fn();
  }
  /// Cancels a call made while serving this one when this one is cancelled (now if it is).
  void AddChild(std::function<void()> cancel) {
    {
      std::lock_guard lock(mu);
      if (!cancelled.load()) {
        children.push_back(std::move(cancel));
        return;
      }
    }
    cancel();
  }

  std::shared_ptr<LocalRuntime> runtime;
  LocalDeployment* deployment = nullptr;  // owned by runtime
  std::string method;
  std::string args;  // msgpack
  bool stream = false;
  std::optional<HttpRequest> http;  // an HTTP call (kept while a coroutine handler runs)
  std::atomic<bool> cancelled{false};
  RequestContext ctx;  // installed around every job of this call
  std::shared_ptr<detail::ResponseState> response;  // a unary or HTTP call
  std::shared_ptr<detail::StreamState> items;       // a streaming call
  std::mutex mu;
  std::vector<std::function<void()>> children;  // guarded by mu
};

LocalRuntime::~LocalRuntime() = default;

void LocalRuntime::Add(const detail::AppNode& node) {
  auto d = std::make_unique<LocalDeployment>();
  const std::string& name = *node.options.name;
  d->context = ReplicaContext{app_name_, name, RandomHex(8), ""};
  d->context.replica_tag = d->context.replica_id;
  detail::Factory factory = FindFactory(node.factory_key);
  if (factory == nullptr) {
    throw std::logic_error("deployment '" + name + "': its class is not registered");
  }
  RequestContext ctx;
  ctx.replica = &d->context;
  {
    ScopedRequestContext scope(&ctx);
    d->instance = factory(detail::EncodeMsgpack(node.init_args));
    if (node.options.user_config) d->instance->Reconfigure(*node.options.user_config);
  }
  d->limit = d->instance->Serialized()
                 ? 1
                 : std::max(1, node.options.max_ongoing_requests.value_or(
                                   node.options.num_replicas_auto ? 5 : 100));
  std::lock_guard lock(mu_);
  order_.push_back(name);
  deployments_[name] = std::move(d);
}

void LocalRuntime::SetIngress(std::string name) {
  std::lock_guard lock(mu_);
  ingress_ = std::move(name);
}

LocalDeployment* LocalRuntime::Find(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = deployments_.find(name);
  return it == deployments_.end() ? nullptr : it->second.get();
}

std::vector<std::string> LocalRuntime::Names() {
  std::lock_guard lock(mu_);
  return order_;
}

std::shared_ptr<LocalRuntime::LocalCall> LocalRuntime::Prepare(const detail::CallTarget& target,
                                                               detail::CallResult* failure) {
  const std::string app = target.app.empty() ? app_name_ : target.app;
  if (app != app_name_) {
    *failure = detail::CallResult::Failure(detail::CallResult::Code::kUnavailable,
                       "Application '" + app + "' does not exist.");
    return nullptr;
  }
  std::string name = target.deployment;
  if (name == detail::kAppIngress) {
    std::lock_guard lock(mu_);
    name = ingress_;
  }
  LocalDeployment* d = Find(name);
  if (d == nullptr) {
    *failure = detail::CallResult::Failure(detail::CallResult::Code::kUnavailable,
                       "Deployment '" + name + "' does not exist in application '" + app + "'.");
    return nullptr;
  }
  auto call = std::make_shared<LocalCall>();
  call->runtime = shared_from_this();
  call->deployment = d;
  call->method = target.method;
  call->stream = target.stream;
  // As in a cluster, a call made while serving a request carries its request id and route.
  const RequestContext* parent = CurrentRequestContext();
  call->ctx.request_id = parent != nullptr && !parent->request_id.empty() ? parent->request_id
                                                                          : RandomHex(32);
  call->ctx.route = parent != nullptr ? parent->route : "";
  call->ctx.multiplexed_model_id = target.multiplexed_model_id;
  call->ctx.cancelled = &call->cancelled;
  call->ctx.resumer = call.get();
  call->ctx.replica = &d->context;
  return call;
}

namespace {

// The request being served on this thread when it is a local call, else nullptr.
template <class Call>
Call* ParentCall(const RequestContext* ctx) {
  return ctx == nullptr ? nullptr : dynamic_cast<Call*>(ctx->resumer);
}

// Lets `state` cancel `call` (false: it was cancelled before it was handed over: drop it) and,
// with `cascade`, lets the request being served on this thread cancel `state`, as a cluster
// cancels the calls a cancelled request made.
template <class Call, class State>
bool Attach(const std::shared_ptr<Call>& call, const std::shared_ptr<State>& state,
            bool cascade) {
  std::weak_ptr<Call> weak = call;
  if (!state->SetCanceller([weak] {
        if (auto c = weak.lock()) c->Cancel();
      })) {
    return false;
  }
  if (Call* parent = cascade ? ParentCall<Call>(CurrentRequestContext()) : nullptr) {
    std::weak_ptr<State> child = state;
    parent->AddChild([child] {
      if (auto s = child.lock()) s->Cancel();
    });
  }
  return true;
}

}  // namespace

void LocalRuntime::Call(const detail::CallTarget& target, std::string encoded_args,
                        std::shared_ptr<detail::ResponseState> state) {
  detail::CallResult failure;
  std::shared_ptr<LocalCall> call = Prepare(target, &failure);
  if (!call) {
    state->Complete(std::move(failure));
    return;
  }
  call->args = std::move(encoded_args);
  call->response = state;
  if (Attach(call, state, !target.shield)) Launch(call);
}

void LocalRuntime::CallStream(const detail::CallTarget& target, std::string encoded_args,
                              std::shared_ptr<detail::StreamState> stream) {
  detail::CallResult failure;
  std::shared_ptr<LocalCall> call = Prepare(target, &failure);
  if (!call) {
    stream->Finish(std::move(failure));
    return;
  }
  call->args = std::move(encoded_args);
  call->items = stream;
  if (Attach(call, stream, !target.shield)) Launch(call);
}

void LocalRuntime::CallHttp(HttpRequest request, std::shared_ptr<detail::ResponseState> state) {
  detail::CallTarget target;
  target.deployment = detail::kAppIngress;
  detail::CallResult failure;
  std::shared_ptr<LocalCall> call = Prepare(target, &failure);
  if (!call) {
    state->Complete(std::move(failure));
    return;
  }
  if (request.route_prefix.empty()) request.route_prefix = "/";
  call->ctx.route = request.route_prefix;
  call->http = std::move(request);
  call->response = state;
  if (Attach(call, state, /*cascade=*/false)) Launch(call);  // a new request, as from the proxy
}

void LocalRuntime::Launch(const std::shared_ptr<LocalCall>& call) {
  bool admitted = false;
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      live_[call.get()] = call;
      admitted = true;
    }
  }
  if (!admitted) {
    detail::CallResult stopped = detail::CallResult::Failure(
        detail::CallResult::Code::kUnavailable, "The application '" + app_name_ + "' stopped.");
    if (call->response) call->response->Complete(stopped);
    if (call->items) call->items->Finish(stopped);
    return;
  }
  Schedule(*call->deployment, [this, call] { Start(call); });
}

void LocalRuntime::Schedule(LocalDeployment& d, std::function<void()> job) {
  {
    std::lock_guard lock(d.mu);
    if (d.running >= d.limit) {
      d.queued.push_back(std::move(job));
      return;
    }
    ++d.running;
  }
  pool_.Post([this, &d, job = std::move(job)]() mutable { RunJob(d, std::move(job)); });
}

void LocalRuntime::RunJob(LocalDeployment& d, std::function<void()> job) {
  job();
  job = nullptr;
  std::function<void()> next;
  {
    std::lock_guard lock(d.mu);
    if (d.queued.empty()) {
      --d.running;
      return;
    }
    next = std::move(d.queued.front());
    d.queued.pop_front();
  }
  pool_.Post([this, &d, next = std::move(next)]() mutable { RunJob(d, std::move(next)); });
}

void LocalRuntime::Start(const std::shared_ptr<LocalCall>& call) {
  ScopedRequestContext scope(&call->ctx);
  HostCall host_call;
  host_call.method = call->method;
  if (call->http) {
    host_call.http = &*call->http;
  } else {
    host_call.args = call->args;
  }
  host_call.stream = call->stream;
  host_call.cancelled = &call->cancelled;
  host_call.request_id = call->ctx.request_id;
  RunCall(*call->deployment->instance, host_call,
          [this, call](detail::CallOutput&& out, std::exception_ptr error) {
            Finish(call, std::move(out), error);
          });
}

void LocalRuntime::Finish(const std::shared_ptr<LocalCall>& call, detail::CallOutput&& out,
                          std::exception_ptr error) {
  LocalCall& c = *call;
  if (c.http) {
    // What the proxy answers: the handler's value as HTTP, or a 500 naming the error.
    HttpResponse reply;
    try {
      if (error) std::rethrow_exception(error);
      if (out.stream) {
        reply = HttpResponse::text("");
        while (!c.cancelled.load()) {
          std::optional<Json> item = out.stream();
          if (!item) break;
          reply.body += HttpChunk(*item);
        }
      } else {
        reply = ToHttpResponse(std::move(out));
      }
    } catch (...) {
      std::string type;
      std::string what = ExceptionText(std::current_exception(), &type);
      reply = HttpErrorResponse(type, what);
    }
    c.response->Complete(Value(Json(reply)));
  } else if (c.items) {
    if (error) {
      c.items->Finish(ErrorResult(error));
    } else {
      // The generator runs on this thread up to its end, one item per step, stopping at the
      // next item once the reader cancelled (as in a replica).
      try {
        while (!c.cancelled.load()) {
          std::optional<Json> item = out.stream();
          if (!item) break;
          c.items->Push(detail::EncodeMsgpack(*item));
        }
        c.items->Finish();
      } catch (...) {
        c.items->Finish(ErrorResult(std::current_exception()));
      }
    }
  } else {
    try {
      if (error) std::rethrow_exception(error);
      c.response->Complete(Value(out.http ? Json(*out.http) : out.value));
    } catch (...) {
      c.response->Complete(ErrorResult(std::current_exception()));
    }
  }
  std::lock_guard lock(mu_);
  if (live_.erase(call.get()) > 0 && live_.empty()) drained_.notify_all();
}

void LocalRuntime::RunUserCode(LocalDeployment& d, const std::function<void()>& fn) {
  RequestContext ctx;
  ctx.replica = &d.context;
  if (!d.instance->Serialized()) {
    ScopedRequestContext scope(&ctx);
    fn();
    return;
  }
  std::promise<void> done;
  std::future<void> result = done.get_future();
  Schedule(d, [&] {
    ScopedRequestContext scope(&ctx);
    try {
      fn();
      done.set_value();
    } catch (...) {
      done.set_exception(std::current_exception());
    }
  });
  result.get();
}

void LocalRuntime::Shutdown(double timeout_s) {
  auto timeout = std::chrono::duration<double>(std::max(0.0, timeout_s));
  std::vector<std::shared_ptr<LocalCall>> remaining;
  {
    std::unique_lock lock(mu_);
    stopping_ = true;
    if (!drained_.wait_for(lock, timeout, [this] { return live_.empty(); })) {
      for (auto& [ptr, weak] : live_) {
        if (auto c = weak.lock()) remaining.push_back(std::move(c));
      }
    }
  }
  for (auto& c : remaining) {
    if (c->response) c->response->Cancel();
    if (c->items) c->items->Cancel();
  }
  remaining.clear();
  {
    std::unique_lock lock(mu_);
    drained_.wait_for(lock, timeout, [this] { return live_.empty(); });
  }
  pool_.Stop();
  std::vector<std::unique_ptr<LocalDeployment>> owned;
  {
    std::lock_guard lock(mu_);
    for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
      owned.push_back(std::move(deployments_[*it]));
    }
  }
  for (auto& d : owned) {  // callers first: they may still hold handles to callees
    RequestContext ctx;
    ctx.replica = &d->context;
    ScopedRequestContext scope(&ctx);
    d->instance.reset();
  }
  // The LocalDeployment records stay (with no instance): late resumptions may name them.
  std::lock_guard lock(mu_);
  for (auto& d : owned) deployments_[d->context.deployment] = std::move(d);
}

}  // namespace serve::sdk
