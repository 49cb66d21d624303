#pragma once

// serve::Task<T>: the return type of coroutine handlers. A handler written as
//   serve::Task<std::string> operator()(serve::HttpRequest r) { co_return co_await h.remote(...); }
// may co_await DeploymentResponse values (and other Tasks).

#include <condition_variable>
#include <coroutine>
#include <exception>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

namespace serve {

template <class T = void>
class Task;

namespace detail {

/// Lets a thread block until a task finishes (Task::Get).
struct TaskWaiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
};

template <class T>
struct TaskPromiseBase {
  std::coroutine_handle<> continuation;
  TaskWaiter* waiter = nullptr;
  std::exception_ptr error;
  std::suspend_always initial_suspend() noexcept { return {}; }
  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      if (auto c = h.promise().continuation) return c;
      if (TaskWaiter* w = h.promise().waiter) {
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

/// A lazily started coroutine producing T. Move-only; awaiting it starts it.
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

  /// Runs the task to completion on this thread (blocking while it awaits remote results,
  /// which resume it on another thread) and returns its value or rethrows its exception.
  T Get() && {
    detail::TaskWaiter waiter;
    h_.promise().waiter = &waiter;
    h_.resume();
    std::unique_lock lock(waiter.mu);
    waiter.cv.wait(lock, [&] { return waiter.done; });
    return h_.promise().take();
  }

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

}  // namespace serve
