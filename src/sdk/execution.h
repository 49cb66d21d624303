#pragma once

// How a host runs one call of a user instance. Shared by the replica's data server and the
// local testing runtime (serve/testing.h), so that both decode arguments, run synchronous,
// coroutine and streaming handlers, check the handler's kind against the call and name errors
// the same way. Not part of include/serve.

#include <atomic>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <serve/deployment.h>
#include <serve/http.h>

namespace serve::sdk {

/// An error reported to callers under a Ray-style type name (e.g. "TypeError") instead of its
/// C++ type.
struct SERVE_EXPORT TypedError : std::runtime_error {
  TypedError(std::string type_name, const std::string& what)
      : std::runtime_error(what), type(std::move(type_name)) {}
  std::string type;
};

/// The message of `e`; `*type` receives the type name callers see (DeploymentError::type()):
/// TypedError's, else the demangled C++ type, "unknown" for a non-std exception.
SERVE_EXPORT std::string ExceptionText(std::exception_ptr e, std::string* type);

/// Ray's rule for the HTTP reply of a handler's output: an HttpResponse as is, a string as
/// text/plain, any other value as JSON. `out` must not be a stream.
SERVE_EXPORT HttpResponse ToHttpResponse(detail::CallOutput&& out);
/// The HTTP reply when the handler of an HTTP call threw: 500, with the type and message.
SERVE_EXPORT HttpResponse HttpErrorResponse(const std::string& type, const std::string& message);
/// The bytes sent for one item a handler streams over HTTP: a string as is, else JSON text.
SERVE_EXPORT std::string HttpChunk(const Json& item);

/// One call, as a host received it.
struct HostCall {
  std::string_view method;
  /// An HTTP call (ingress through the proxy); must stay valid until `done` ran.
  const HttpRequest* http = nullptr;
  /// A gRPC call (through the proxy): the request bytes and context; valid until `done` ran.
  const detail::GrpcInput* grpc = nullptr;
  /// Otherwise: the msgpack-encoded array of arguments ("" = none); read before RunCall returns.
  std::string_view args;
  /// The caller reads items (remote_stream). HTTP and gRPC calls accept both kinds of handler.
  bool stream = false;
  /// Set before the call starts: the handler does not run (RequestCancelledError).
  const std::atomic<bool>* cancelled = nullptr;
  std::string_view request_id;  ///< named in the cancellation message
};

/// Receives the outcome of a call: `error` set, or `out` holding the value, the HttpResponse or
/// (for a streaming handler) the generator, which the host then runs.
using CallDone = std::function<void(detail::CallOutput&& out, std::exception_ptr error)>;

/// Runs `call` on `instance` on this thread, under the request context the host installed
/// (sdk::ScopedRequestContext; its resumer receives the resumptions of a coroutine handler).
/// `done` runs exactly once: before RunCall returns for a synchronous or streaming handler; for
/// a coroutine handler, on the thread that finishes it (possibly before RunCall returns), after
/// its frame is destroyed. `error` is set when the call was cancelled before it started
/// (RequestCancelledError), the method or arguments do not fit (std::invalid_argument), the
/// handler threw, or its kind does not match `call.stream` (TypeError: a stream called with
/// remote(), or a value called with remote_stream()).
SERVE_EXPORT void RunCall(detail::Instance& instance, const HostCall& call, CallDone done);

}  // namespace serve::sdk
