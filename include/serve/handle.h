#pragma once

// DeploymentHandle: calls another deployment from a replica (composition). Calls return a
// DeploymentResponse<R>: block with .result(timeout) in synchronous code, or co_await it in a
// serve::Task coroutine handler. Code after a co_await resumes on serve's I/O thread: keep it
// non-blocking (as with asyncio in Ray Serve), or call .result() from synchronous handlers.

#include <chrono>
#include <coroutine>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include <serve/errors.h>
#include <serve/json.h>
#include <serve/version.h>

namespace serve {

namespace detail {

/// Outcome of one handle call, as delivered by the runtime.
struct CallResult {
  enum class Code { kOk, kError, kBackPressure, kUnavailable, kCancelled };
  Code code = Code::kOk;
  std::string body;  ///< msgpack-encoded return value (kOk)
  std::string error_type;
  std::string error_message;
};

/// Completion state shared by a DeploymentResponse and the runtime. Thread-safe.
class SERVE_EXPORT ResponseState {
 public:
  ResponseState();
  ~ResponseState();
  /// Stores the result; returns the coroutine to resume (null if none is waiting). The
  /// runtime resumes it on its own thread.
  std::coroutine_handle<> Complete(CallResult result);
  bool Ready() const;
  /// Waits until completed or `timeout_s` passes (nullopt: forever). True when completed.
  bool Wait(std::optional<double> timeout_s) const;
  /// Registers `h` to resume on completion; false when already complete (do not suspend).
  bool Suspend(std::coroutine_handle<> h);
  const CallResult& result() const;  ///< requires Ready()

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Items of a streamed handle call, pushed by the runtime. Thread-safe.
class SERVE_EXPORT StreamState {
 public:
  StreamState();
  ~StreamState();
  /// Adds one msgpack-encoded item; returns the coroutine to resume (null if none waits).
  [[nodiscard]] std::coroutine_handle<> Push(std::string item);
  /// No more items; `failure` (code != kOk) when the stream failed. Returns the coroutine to
  /// resume, if one waits.
  [[nodiscard]] std::coroutine_handle<> Finish(CallResult failure = {});
  /// True when Next() would not block.
  bool Ready() const;
  /// Registers `h` to resume when an item or the end arrives; false when one already has.
  bool Suspend(std::coroutine_handle<> h);
  /// Next item; nullopt at the end. Throws the failure, or TimeoutError after `timeout_s`.
  std::optional<std::string> Next(std::optional<double> timeout_s);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct CallTarget {
  std::string app;         ///< "" = the caller's application
  std::string deployment;
  std::string method = "__call__";
  std::string multiplexed_model_id;
  bool stream = false;
  bool shield = false;     ///< not cancelled when the calling request is
};

/// Sends one call through the runtime of this process (installed by the replica). Throws
/// serve::ServeException when no runtime is installed (handles only work inside replicas).
SERVE_EXPORT std::shared_ptr<ResponseState> StartCall(const CallTarget& target,
                                                      std::string encoded_args);
/// Same for a streaming call (the method is a serve::Stream generator).
SERVE_EXPORT std::shared_ptr<StreamState> StartStream(const CallTarget& target,
                                                      std::string encoded_args);
/// Throws the exception matching a failed CallResult.
[[noreturn]] SERVE_EXPORT void ThrowCallError(const CallResult& result);
SERVE_EXPORT std::string EncodeMsgpack(const Json& value);
SERVE_EXPORT Json DecodeMsgpack(const std::string& bytes);

template <class T>
struct IsDeploymentResponse;

}  // namespace detail

/// Options of a handle (`handle.options(...)` in Ray Serve).
struct HandleOptions {
  std::optional<std::string> method_name;
  std::optional<std::string> multiplexed_model_id;
  std::optional<bool> stream;
  /// Shields the call from the caller's cancellation (the C++ form of asyncio.shield): when
  /// the request that made the call is cancelled, this call still runs to completion.
  std::optional<bool> shield;
};

template <class R>
class DeploymentResponse;

/// The items of a streaming handle call (Ray's DeploymentResponseGenerator), in order.
template <class T = Json>
class ResponseStream {
 public:
  explicit ResponseStream(std::shared_ptr<detail::StreamState> state) : state_(std::move(state)) {}
  /// The next item, or nullopt when the stream ended. Blocks (up to `timeout_s`: then
  /// serve::TimeoutError); rethrows a failure of the remote generator as DeploymentError.
  std::optional<T> next(std::optional<double> timeout_s = std::nullopt) {
    std::optional<std::string> item = state_->Next(timeout_s);
    if (!item) return std::nullopt;
    return detail::DecodeMsgpack(*item).template get<T>();
  }

  /// The same inside a serve::Task coroutine, without blocking a thread:
  ///   while (auto item = co_await stream.next_async()) { ... }
  auto next_async() {
    struct Awaiter {
      ResponseStream* stream;
      bool await_ready() const { return stream->state_->Ready(); }
      bool await_suspend(std::coroutine_handle<> h) { return stream->state_->Suspend(h); }
      std::optional<T> await_resume() { return stream->next(); }
    };
    return Awaiter{this};
  }

 private:
  std::shared_ptr<detail::StreamState> state_;
};

/// A handle to a deployment; cheap to copy. Arrives in a constructor for every bound
/// deployment passed to `.bind(...)`.
class SERVE_EXPORT DeploymentHandle {
 public:
  DeploymentHandle() = default;
  /// Handle to `deployment` of application `app` ("" = the caller's application).
  explicit DeploymentHandle(std::string deployment, std::string app = "");

  /// A handle that calls method `name` (`handle.method_name` in Ray Serve).
  DeploymentHandle method(std::string name) const;
  DeploymentHandle options(const HandleOptions& o) const;

  /// Calls the deployment with `args` (a DeploymentResponse argument is resolved first).
  /// Throws std::invalid_argument on a handle with options(stream=true): its calls return a
  /// ResponseStream, so they are spelled remote_stream<T>().
  template <class R = Json, class... A>
  DeploymentResponse<R> remote(A&&... args) const {
    if (target_.stream) {
      throw std::invalid_argument(
          "this handle has options(stream=true): call remote_stream<T>() to get its items");
    }
    Json arr = Json::array();
    (arr.push_back(ResolveArg(std::forward<A>(args))), ...);
    return DeploymentResponse<R>(detail::StartCall(target_, detail::EncodeMsgpack(arr)));
  }

  /// Calls a streaming method (one returning serve::Stream<T>); items arrive as produced. The
  /// C++ spelling of `handle.options(stream=True).remote(...)`.
  template <class T = Json, class... A>
  ResponseStream<T> remote_stream(A&&... args) const {
    Json arr = Json::array();
    (arr.push_back(ResolveArg(std::forward<A>(args))), ...);
    detail::CallTarget t = target_;
    t.stream = true;
    return ResponseStream<T>(detail::StartStream(t, detail::EncodeMsgpack(arr)));
  }

  const std::string& deployment_name() const { return target_.deployment; }
  const std::string& app_name() const { return target_.app; }
  bool valid() const { return !target_.deployment.empty(); }

 private:
  template <class A>
  static Json ResolveArg(A&& a);

  detail::CallTarget target_;
};

/// The future result of a handle call.
template <class R = Json>
class DeploymentResponse {
 public:
  explicit DeploymentResponse(std::shared_ptr<detail::ResponseState> state)
      : state_(std::move(state)) {}

  /// Blocks until the result arrives (or `timeout_s` passes: serve::TimeoutError). Rethrows a
  /// downstream failure as serve::DeploymentError (remote type and message),
  /// BackPressureError, DeploymentUnavailableError or RequestCancelledError.
  R result(std::optional<double> timeout_s = std::nullopt) const {
    if (!state_->Wait(timeout_s)) throw TimeoutError("the deployment response timed out");
    return Decode();
  }

  bool await_ready() const { return state_->Ready(); }
  bool await_suspend(std::coroutine_handle<> h) { return state_->Suspend(h); }
  R await_resume() const { return Decode(); }

 private:
  R Decode() const {
    const detail::CallResult& r = state_->result();
    if (r.code != detail::CallResult::Code::kOk) detail::ThrowCallError(r);
    if constexpr (std::is_void_v<R>) {
      return;
    } else {
      return detail::DecodeMsgpack(r.body).template get<R>();
    }
  }
  std::shared_ptr<detail::ResponseState> state_;
};

namespace detail {
template <class T>
struct IsDeploymentResponse : std::false_type {};
template <class R>
struct IsDeploymentResponse<DeploymentResponse<R>> : std::true_type {};
}  // namespace detail

template <class A>
Json DeploymentHandle::ResolveArg(A&& a) {
  if constexpr (detail::IsDeploymentResponse<std::decay_t<A>>::value) {
    return Json(a.result());  // chaining: the upstream result is passed on
  } else {
    return Json(std::forward<A>(a));
  }
}

SERVE_EXPORT void to_json(Json& j, const DeploymentHandle& h);
SERVE_EXPORT void from_json(const Json& j, DeploymentHandle& h);

/// A handle to `deployment` of `app` (from inside a replica).
SERVE_EXPORT DeploymentHandle get_deployment_handle(const std::string& deployment,
                                                    const std::string& app = "");
/// A handle to the ingress deployment of application `app` (from inside a replica).
SERVE_EXPORT DeploymentHandle get_app_handle(const std::string& app);

namespace detail {
/// Deployment name a handle from get_app_handle() carries until the runtime resolves it.
inline constexpr char kAppIngress[] = "__app_ingress__";
}  // namespace detail

}  // namespace serve
