#pragma once

// serve::Stream<T>: the return type of streaming (generator) handlers, written with co_yield:
//   serve::Stream<std::string> operator()(serve::HttpRequest r) {
//     for (int i = 0; i < 10; ++i) co_yield std::to_string(i) + "\n";
//   }
// Over HTTP each yielded value is sent as it is produced (chunked transfer encoding): strings
// as raw bytes, other values as JSON text. When the request is cancelled (the HTTP client went
// away, a handle caller destroyed or cancel()ed its ResponseStream, or its calling request was
// cancelled) the stream stops at the next co_yield and the generator is destroyed
// (serve::is_request_cancelled() turns true). A generator is synchronous: it runs on one replica
// thread from its first item to its last and cannot co_await (a co_await in its body does not
// compile; block with .result() / .next() on handle calls instead).

#include <coroutine>
#include <exception>
#include <optional>
#include <utility>

namespace serve {

namespace detail {
template <class>
inline constexpr bool kStreamCannotAwait = false;
}  // namespace detail

template <class T>
class [[nodiscard]] Stream {
 public:
  struct promise_type {
    std::optional<T> current;
    std::exception_ptr error;
    Stream get_return_object() {
      return Stream(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    template <class U>
    std::suspend_always yield_value(U&& value) {
      current.emplace(std::forward<U>(value));
      return {};
    }
    void return_void() {}
    void unhandled_exception() { error = std::current_exception(); }
    /// Rejects co_await at compile time: the generator runs synchronously on a replica thread
    /// and nothing would resume it.
    template <class U>
    std::suspend_never await_transform(U&&) {
      static_assert(detail::kStreamCannotAwait<U>,
                    "serve::Stream<T> generators are synchronous: co_await is not allowed in a "
                    "Stream generator. Block on the call instead (response.result(), "
                    "stream.next()), or return serve::Task<T> to await.");
      return {};
    }
  };
  using value_type = T;

  explicit Stream(std::coroutine_handle<promise_type> h) : h_(h) {}
  Stream(Stream&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Stream& operator=(Stream&& o) noexcept {
    if (this != &o) {
      if (h_) h_.destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  Stream(const Stream&) = delete;
  ~Stream() {
    if (h_) h_.destroy();
  }

  /// Runs the generator to its next co_yield: the value, or nullopt when it finished.
  /// Rethrows an exception the generator threw.
  std::optional<T> next() {
    if (!h_ || h_.done()) return std::nullopt;
    h_.promise().current.reset();
    h_.resume();
    if (h_.done()) {
      if (h_.promise().error) std::rethrow_exception(h_.promise().error);
      return std::nullopt;
    }
    return std::move(h_.promise().current);
  }
  /// Deprecated spelling of next().
  std::optional<T> Next() { return next(); }

 private:
  std::coroutine_handle<promise_type> h_;
};

template <class T>
struct IsStream : std::false_type {};
template <class T>
struct IsStream<Stream<T>> : std::true_type {};

}  // namespace serve
