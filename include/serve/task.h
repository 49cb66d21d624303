#pragma once

// serve::Task<T>: the return type of coroutine handlers. A handler written as
//   serve::Task<std::string> operator()(serve::HttpRequest r) { co_return co_await h.remote(...); }
// may co_await DeploymentResponse values, ResponseStream::next_async(), serve::sleep_for() and
// other Tasks.
//
// Execution in a replica (the full threading contract is in deployment.h, next to
// serve::Concurrency):
// - The replica starts a Task handler on one of its executor threads and runs it until its first
//   co_await that suspends. While suspended it holds no thread: one replica can have up to
//   max_ongoing_requests coroutine handlers awaiting downstream calls at once.
// - serve's awaitables (DeploymentResponse, ResponseStream::next_async, sleep_for) resume the
//   coroutine on the executor of the replica that started it (its strand in serialized mode),
//   never on serve's handle I/O thread, with the request context (request id, cancellation,
//   logger) restored. Awaitables of other libraries resume wherever they complete.
// - Outside a replica (a client program) serve's awaitables resume on the thread that
//   completes them.
// - A coroutine parameter taken by reference refers to storage the replica keeps alive until
//   the handler finishes (the request, decoded arguments); references to locals of a caller
//   that does not co_await the Task at once dangle, as with any lazy coroutine.

#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

#include <serve/duration.h>
#include <serve/version.h>

namespace serve {

template <class T = void>
class Task;

namespace detail {

/// Lets a thread block until a task finishes (Task::get).
struct TaskWaiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
};

/// While alive, serve's awaitables suspended on this thread resume inline on the thread that
/// completes them instead of on the replica's executor: Task::get() blocks its thread, and
/// resuming on an executor whose threads (or strand) it holds could deadlock.
class SERVE_EXPORT InlineResumeScope {
 public:
  InlineResumeScope();
  ~InlineResumeScope();
  InlineResumeScope(const InlineResumeScope&) = delete;
  InlineResumeScope& operator=(const InlineResumeScope&) = delete;

 private:
  bool previous_;
};

/// Resumes `h` after `delay` on the executor of the code that suspends (inline on serve's timer
/// thread when there is none). When the request being served is cancelled first, sets
/// `*cancelled` and resumes early.
SERVE_EXPORT void ResumeAfter(std::chrono::nanoseconds delay, std::coroutine_handle<> h,
                              bool* cancelled);
/// Throws serve::RequestCancelledError for the request being served.
[[noreturn]] SERVE_EXPORT void ThrowRequestCancelled();

template <class T>
struct TaskPromiseBase {
  std::coroutine_handle<> continuation;
  TaskWaiter* waiter = nullptr;
  std::function<void()> on_done;  ///< Task::start
  std::exception_ptr error;
  std::suspend_always initial_suspend() noexcept { return {}; }
  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      auto& promise = h.promise();
      if (auto c = promise.continuation) return c;
      if (promise.on_done) {
        // The frame may be destroyed inside `done`: touch nothing of it afterwards.
        auto done = std::move(promise.on_done);
        done();
        return std::noop_coroutine();
      }
      if (TaskWaiter* w = promise.waiter) {
        // The frame may be destroyed by the waiting thread as soon as it sees `done`.
        std::lock_guard lock(w->mu);
        w->done = true;
        w->cv.notify_all();
      }
      return std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  FinalAwaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() { error = std::current_exception(); }
};

template <class T>
struct TaskPromise : TaskPromiseBase<T> {
  std::optional<T> value;
  Task<T> get_return_object();
  template <class U>
  void return_value(U&& v) { value.emplace(std::forward<U>(v)); }
  T take() {
    if (this->error) std::rethrow_exception(this->error);
    return std::move(*value);
  }
};

template <>
struct TaskPromise<void> : TaskPromiseBase<void> {
  Task<void> get_return_object();
  void return_void() {}
  void take() {
    if (this->error) std::rethrow_exception(this->error);
  }
};

}  // namespace detail

/// A lazily started coroutine producing T. Move-only; awaiting it starts it, on the awaiting
/// thread, and the awaiter continues on the thread where it finishes.
template <class T>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::TaskPromise<T>;
  using value_type = T;

  explicit Task(std::coroutine_handle<promise_type> h) : h_(h) {}
  Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Task& operator=(Task&& o) noexcept {
    if (this != &o) {
      if (h_) h_.destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  ~Task() {
    if (h_) h_.destroy();
  }

  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> caller) noexcept {
    h_.promise().continuation = caller;
    return h_;
  }
  T await_resume() { return h_.promise().take(); }

  /// Runs the task to completion on this thread, blocking while it awaits (its awaits then
  /// resume on the threads that complete them), and returns its value or rethrows its
  /// exception. Blocks a thread: inside handlers co_await the task instead.
  T get() && {
    detail::TaskWaiter waiter;
    h_.promise().waiter = &waiter;
    {
      detail::InlineResumeScope inline_resume;
      h_.resume();
    }
    std::unique_lock lock(waiter.mu);
    waiter.cv.wait(lock, [&] { return waiter.done; });
    return h_.promise().take();
  }

  /// Starts the task without waiting for it (used by hosts such as the replica): runs it on
  /// this thread until it first suspends or finishes. `on_done` (must not throw) runs once, on
  /// the thread that finishes the task, possibly before Start returns; the Task may be
  /// destroyed from inside it. take() then gives the result.
  void start(std::function<void()> on_done) & {
    h_.promise().on_done = std::move(on_done);
    h_.resume();
  }
  /// The value of a finished task, or rethrows its exception.
  T take() && { return h_.promise().take(); }

  /// Deprecated spellings of get(), start() and take().
  T Get() && { return std::move(*this).get(); }
  void Start(std::function<void()> on_done) & { start(std::move(on_done)); }
  T Take() && { return std::move(*this).take(); }

 private:
  template <class U>
  friend class Task;
  std::coroutine_handle<promise_type> h_;
};

template <class T>
Task<T> detail::TaskPromise<T>::get_return_object() {
  return Task<T>(std::coroutine_handle<TaskPromise<T>>::from_promise(*this));
}
inline Task<void> detail::TaskPromise<void>::get_return_object() {
  return Task<void>(std::coroutine_handle<TaskPromise<void>>::from_promise(*this));
}

template <class T>
struct IsTask : std::false_type {};
template <class T>
struct IsTask<Task<T>> : std::true_type {};

/// `co_await serve::sleep_for(std::chrono::milliseconds(100))` in a coroutine handler: resumes
/// after `delay` without holding a thread meanwhile (asyncio.sleep). Throws
/// serve::RequestCancelledError when the request being served is cancelled first. A delay <= 0
/// still suspends once (lets other work of the executor run).
/// A number is read as seconds (older spelling): sleep_for(0.5).
inline auto sleep_for(Duration delay) {
  struct Awaiter {
    std::chrono::nanoseconds delay;
    bool cancelled = false;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) { detail::ResumeAfter(delay, h, &cancelled); }
    void await_resume() const {
      if (cancelled) detail::ThrowRequestCancelled();
    }
  };
  return Awaiter{std::chrono::duration_cast<std::chrono::nanoseconds>(delay)};
}

}  // namespace serve
