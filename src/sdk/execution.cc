#include "sdk/execution.h"

#include <memory>
#include <typeinfo>

namespace serve::sdk {

std::string ExceptionText(std::exception_ptr e, std::string* type) {
  try {
    std::rethrow_exception(e);
  } catch (const TypedError& ex) {
    *type = ex.type;
    return ex.what();
  } catch (const std::exception& ex) {
    *type = detail::Demangle(typeid(ex).name());
    return ex.what();
  } catch (...) {
    *type = "unknown";
    return "unknown exception";
  }
}

HttpResponse ToHttpResponse(detail::CallOutput&& out) {
  if (out.http) return std::move(*out.http);
  if (out.value.is_string()) return HttpResponse::text(out.value.get<std::string>());
  return HttpResponse::json(out.value);
}

HttpResponse HttpErrorResponse(const std::string& type, const std::string& message) {
  HttpResponse r;
  r.status = 500;
  r.body = "Internal Server Error\n\n" + type + ": " + message + "\n";
  return r;
}

std::string HttpChunk(const Json& item) {
  return item.is_string() ? item.get<std::string>() : item.dump();
}

namespace {

// The handler's kind must match how it was called (as in Ray Serve); HTTP calls take both.
std::exception_ptr CheckKind(std::string_view method, bool http, bool stream,
                             const detail::CallOutput& out) {
  if (http) return nullptr;
  if (out.stream && !stream) {
    return std::make_exception_ptr(
        TypedError("TypeError", "Method '" + std::string(method) +
                                    "' returns a stream; call it with remote_stream() "
                                    "(options(stream=true))."));
  }
  if (!out.stream && stream) {
    return std::make_exception_ptr(
        TypedError("TypeError", "Method '" + std::string(method) +
                                    "' does not stream; call it with remote() instead."));
  }
  return nullptr;
}

}  // namespace

void RunCall(detail::Instance& instance, const HostCall& call, CallDone done) {
  detail::CallOutput out;
  std::exception_ptr error;
  if (call.cancelled != nullptr && call.cancelled->load()) {
    // Cancelled while it waited for a thread: the handler never runs.
    error = std::make_exception_ptr(TypedError(
        "RequestCancelledError", "Request " + std::string(call.request_id) + " was cancelled."));
  } else {
    try {
      Json args;
      detail::CallInput in;
      if (call.grpc != nullptr) {
        in.grpc = call.grpc;
      } else if (call.http != nullptr) {
        in.http = call.http;
      } else {
        args = call.args.empty() ? Json::array() : detail::DecodeMsgpack(std::string(call.args));
        in.args = &args;
      }
      out = instance.Call(std::string(call.method), in);
    } catch (...) {
      error = std::current_exception();
    }
  }
  if (!error && out.pending) {
    // A coroutine handler: runs here until it first suspends. The callback keeps the call (and
    // so the coroutine frame) until it finished; Task::Start allows destroying it from there.
    std::shared_ptr<detail::PendingCall> pending = std::move(out.pending);
    detail::PendingCall* task = pending.get();
    task->task.Start([pending = std::move(pending), done = std::move(done),
                      method = std::string(call.method),
                      http = call.http != nullptr || call.grpc != nullptr,
                      stream = call.stream]() mutable {
      std::shared_ptr<detail::PendingCall> finished = std::move(pending);
      detail::CallOutput result;
      std::exception_ptr failure;
      try {
        result = std::move(finished->task).Take();
      } catch (...) {
        failure = std::current_exception();
      }
      finished.reset();  // destroys the finished coroutine (we run inside its final suspension)
      if (!failure) failure = CheckKind(method, http, stream, result);
      done(std::move(result), failure);
    });
    return;
  }
  if (!error) {
    error = CheckKind(call.method, call.http != nullptr || call.grpc != nullptr, call.stream, out);
  }
  done(std::move(out), error);
}

}  // namespace serve::sdk
