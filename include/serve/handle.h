#pragma once

// DeploymentHandle: calls another deployment from a replica (composition) or from a client
// program. Calls return a DeploymentResponse<R>: co_await it in a serve::Task coroutine handler
// (the coroutine holds no thread while it waits), or block on .result(timeout) in synchronous
// code.
//
// Threading:
// - remote() and remote_stream() never block: the call is handed to serve's handle runtime
//   (its own I/O thread), which routes it. A DeploymentResponse passed as an argument (chaining)
//   is not waited for either: the downstream call is sent once it resolves.
// - Inside a replica, code after `co_await response` (or `co_await stream.next_async()`) resumes
//   on the replica's executor, with the request context restored; never on the handle runtime's
//   I/O thread (see task.h). In a client program it resumes on that I/O thread: keep such code
//   short there.
// - Handles, responses and streams may be used from any thread; one DeploymentResponse or
//   ResponseStream must not be awaited by two coroutines at once.
// - Cancellation (spec §9.3): DeploymentResponse::cancel() drops a call that is still queued
//   and cancels one that runs (its handler sees is_request_cancelled(); coroutine handlers
//   get RequestCancelledError at their pending await); the response then fails with
//   RequestCancelledError. Destroying a ResponseStream before its end cancels the remote
//   generator. When the request being served is cancelled, the calls it made are cancelled
//   too, unless made with HandleOptions{.shield = true}.
// - A call to a deployment or application the controller does not know fails with
//   DeploymentUnavailableError ("Deployment 'D' does not exist in application 'A'." /
//   "Application 'A' does not exist.") after about half a second; a deployment that exists
//   but has no replica (scaled to zero, starting) is waited for.

#include <chrono>
#include <coroutine>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <serve/duration.h>
#include <serve/errors.h>
#include <serve/json.h>
#include <serve/version.h>

namespace serve {

namespace detail {

/// Outcome of one handle call, as delivered by the runtime.
struct CallResult {
  enum class Code { kOk, kError, kBackPressure, kUnavailable, kCancelled };
  Code code = Code::kOk;
  std::string body{};  ///< msgpack-encoded return value (kOk)
  std::string error_type{};
  std::string error_message{};

  /// A failed result with `code` and `message` (no error type).
  static CallResult Failure(Code code, std::string message) {
    CallResult r;
    r.code = code;
    r.error_message = std::move(message);
    return r;
  }
};

/// Completion state shared by a DeploymentResponse and the runtime. Thread-safe.
class SERVE_EXPORT ResponseState {
 public:
  ResponseState();
  ~ResponseState();
  /// Stores the result (the first one wins; later ones are ignored), runs the WhenComplete
  /// callbacks on this thread, then resumes a waiting coroutine: through the executor it
  /// suspended on (see task.h), inline when it suspended outside one.
  void Complete(CallResult result);
  bool Ready() const;
  /// Waits until completed or `timeout_s` passes (nullopt: forever). True when completed.
  bool Wait(std::optional<double> timeout_s) const;
  /// Registers `h` to resume on completion; false when already complete (do not suspend).
  bool Suspend(std::coroutine_handle<> h);
  const CallResult& result() const;  ///< requires Ready()
  /// Runs `fn` once completed: now on this thread if it is, else on the completing thread.
  void WhenComplete(std::function<void()> fn);
  /// Installed by the runtime that carries the call: asks it to cancel the call. False when
  /// the state is already complete (e.g. cancelled before it was handed over): do not send it.
  bool SetCanceller(std::function<void()> cancel);
  /// Completes with kCancelled now (unless complete) and asks the runtime to cancel the call.
  void Cancel();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Items of a streamed handle call, pushed by the runtime. Thread-safe.
class SERVE_EXPORT StreamState {
 public:
  StreamState();
  ~StreamState();
  /// Adds one msgpack-encoded item (ignored once finished) and resumes a waiting coroutine as
  /// ResponseState::Complete does.
  void Push(std::string item);
  /// No more items; `failure` (code != kOk) when the stream failed. Only the first call counts.
  void Finish(CallResult failure = {});
  /// True when Next() would not block.
  bool Ready() const;
  /// True once finished (items may still be queued).
  bool Finished() const;
  /// Registers `h` to resume when an item or the end arrives; false when one already has.
  bool Suspend(std::coroutine_handle<> h);
  /// Next item; nullopt at the end. Throws the failure, or TimeoutError after `timeout_s`.
  std::optional<std::string> Next(std::optional<double> timeout_s);
  /// As ResponseState::SetCanceller.
  bool SetCanceller(std::function<void()> cancel);
  /// The reader gave up: finishes with kCancelled now (unless finished) and asks the runtime
  /// to cancel the remote generator.
  void Cancel();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct CallTarget {
  std::string app{};       ///< "" = the caller's application
  std::string deployment{};
  std::string method = "__call__";
  std::string multiplexed_model_id{};
  bool stream = false;
  bool shield = false;     ///< not cancelled when the calling request is
};

/// Sends one call through the runtime of this process (installed by the replica or the client
/// library). Throws serve::ServeException when no runtime is installed.
SERVE_EXPORT std::shared_ptr<ResponseState> StartCall(const CallTarget& target,
                                                      std::string encoded_args);
/// Same for a streaming call (the method is a serve::Stream generator).
SERVE_EXPORT std::shared_ptr<StreamState> StartStream(const CallTarget& target,
                                                      std::string encoded_args);
/// An argument that is the result of another call (chaining): position in the arguments.
using ChainedArgs = std::vector<std::pair<size_t, std::shared_ptr<ResponseState>>>;
/// A call whose `args` (a JSON array) still lack the results of `upstream`: returns at once and
/// sends the call, with the request context of the caller, once every upstream call succeeded;
/// the first upstream failure becomes this call's failure.
SERVE_EXPORT std::shared_ptr<ResponseState> StartChainedCall(const CallTarget& target, Json args,
                                                             ChainedArgs upstream);
/// Same for a streaming call.
SERVE_EXPORT std::shared_ptr<StreamState> StartChainedStream(const CallTarget& target, Json args,
                                                             ChainedArgs upstream);
/// Throws the exception matching a failed CallResult.
[[noreturn]] SERVE_EXPORT void ThrowCallError(const CallResult& result);
SERVE_EXPORT std::string EncodeMsgpack(const Json& value);
SERVE_EXPORT Json DecodeMsgpack(const std::string& bytes);

template <class T>
struct IsDeploymentResponse;

}  // namespace detail

/// Options of a handle (`handle.options(...)` in Ray Serve).
struct HandleOptions {
  std::optional<std::string> method_name{};
  std::optional<std::string> multiplexed_model_id{};
  std::optional<bool> stream{};
  /// Shields the call from the caller's cancellation (the C++ form of asyncio.shield): when
  /// the request that made the call is cancelled, this call still runs to completion.
  std::optional<bool> shield{};
};

template <class R>
class DeploymentResponse;

/// The items of a streaming handle call (Ray's DeploymentResponseGenerator), in order.
/// Move-only. Destroying it before the end cancels the remote generator (the reader stopped).
template <class T = Json>
class ResponseStream {
 public:
  using value_type = T;
  explicit ResponseStream(std::shared_ptr<detail::StreamState> state) : state_(std::move(state)) {}
  ResponseStream(ResponseStream&&) noexcept = default;
  ResponseStream& operator=(ResponseStream&& o) noexcept {
    if (this != &o) {
      cancel();
      state_ = std::move(o.state_);
    }
    return *this;
  }
  ResponseStream(const ResponseStream&) = delete;
  ResponseStream& operator=(const ResponseStream&) = delete;
  ~ResponseStream() { cancel(); }

  /// The next item, or nullopt when the stream ended. Blocks (up to `timeout`, e.g.
  /// std::chrono::seconds(10) or 10.0 seconds: then serve::TimeoutError); rethrows a failure of
  /// the remote generator as DeploymentError, and RequestCancelledError after cancel().
  std::optional<T> next(std::optional<Duration> timeout = std::nullopt) {
    std::optional<std::string> item =
        state_->Next(timeout ? std::optional<double>(timeout->seconds()) : std::nullopt);
    if (!item) return std::nullopt;
    return detail::FromJson<T>(detail::DecodeMsgpack(*item));
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

  /// Stops the stream: the remote generator is cancelled before its next item, and next()
  /// throws RequestCancelledError once the items already received are read. No effect once the
  /// stream ended.
  void cancel() {
    if (state_ && !state_->Finished()) state_->Cancel();
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

  /// Calls the deployment with `args`; returns at once. A DeploymentResponse argument is
  /// chained: this call is sent once it resolved, with its value in its place (its failure
  /// becomes this call's failure). Throws std::invalid_argument on a handle with
  /// options(stream=true): its calls return a ResponseStream, so they are spelled
  /// remote_stream<T>().
  template <class R = Json, class... A>
  DeploymentResponse<R> remote(A&&... args) const {
    if (target_.stream) {
      throw std::invalid_argument(
          "this handle has options(stream=true): call remote_stream<T>() to get its items");
    }
    Json arr = Json::array();
    if constexpr ((detail::IsDeploymentResponse<std::decay_t<A>>::value || ...)) {
      detail::ChainedArgs upstream;
      (AddArg(arr, upstream, std::forward<A>(args)), ...);
      return DeploymentResponse<R>(
          detail::StartChainedCall(target_, std::move(arr), std::move(upstream)));
    } else {
      (arr.push_back(Json(std::forward<A>(args))), ...);
      return DeploymentResponse<R>(detail::StartCall(target_, detail::EncodeMsgpack(arr)));
    }
  }

  /// Calls a streaming method (one returning serve::Stream<T>); items arrive as produced. The
  /// C++ spelling of `handle.options(stream=True).remote(...)`. Arguments as for remote().
  template <class T = Json, class... A>
  ResponseStream<T> remote_stream(A&&... args) const {
    Json arr = Json::array();
    detail::CallTarget t = target_;
    t.stream = true;
    if constexpr ((detail::IsDeploymentResponse<std::decay_t<A>>::value || ...)) {
      detail::ChainedArgs upstream;
      (AddArg(arr, upstream, std::forward<A>(args)), ...);
      return ResponseStream<T>(detail::StartChainedStream(t, std::move(arr), std::move(upstream)));
    } else {
      (arr.push_back(Json(std::forward<A>(args))), ...);
      return ResponseStream<T>(detail::StartStream(t, detail::EncodeMsgpack(arr)));
    }
  }

  const std::string& deployment_name() const { return target_.deployment; }
  const std::string& app_name() const { return target_.app; }
  bool valid() const { return !target_.deployment.empty(); }

 private:
  template <class A>
  static void AddArg(Json& arr, detail::ChainedArgs& upstream, A&& a);

  detail::CallTarget target_;
};

/// The future result of a handle call.
template <class R = Json>
class DeploymentResponse {
 public:
  using value_type = R;
  explicit DeploymentResponse(std::shared_ptr<detail::ResponseState> state)
      : state_(std::move(state)) {}

  /// Blocks until the result arrives (or `timeout` passes, e.g. std::chrono::seconds(10) or
  /// 10.0 seconds: serve::TimeoutError). Rethrows a downstream failure as
  /// serve::DeploymentError (remote type and message), BackPressureError,
  /// DeploymentUnavailableError or RequestCancelledError.
  R result(std::optional<Duration> timeout = std::nullopt) const {
    if (!state_->Wait(timeout ? std::optional<double>(timeout->seconds()) : std::nullopt)) {
      throw TimeoutError("the deployment response timed out");
    }
    return Decode();
  }

  /// Cancels the call (spec §9.3): dropped if still queued, cancelled on its replica if
  /// running; result() and co_await then throw RequestCancelledError. Returns at once; no
  /// effect once the result arrived.
  void cancel() const { state_->Cancel(); }

  bool await_ready() const { return state_->Ready(); }
  bool await_suspend(std::coroutine_handle<> h) { return state_->Suspend(h); }
  R await_resume() const { return Decode(); }

 private:
  friend class DeploymentHandle;
  R Decode() const {
    const detail::CallResult& r = state_->result();
    if (r.code != detail::CallResult::Code::kOk) detail::ThrowCallError(r);
    if constexpr (std::is_void_v<R>) {
      return;
    } else {
      return detail::FromJson<R>(detail::DecodeMsgpack(r.body));
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
void DeploymentHandle::AddArg(Json& arr, detail::ChainedArgs& upstream, A&& a) {
  if constexpr (detail::IsDeploymentResponse<std::decay_t<A>>::value) {
    upstream.emplace_back(arr.size(), a.state_);  // filled in once it resolves
    arr.push_back(nullptr);
  } else {
    arr.push_back(Json(std::forward<A>(a)));
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
