#pragma once

// gRPC ingress: methods of the user's own protobuf services, served through the proxy's gRPC
// port (docs/grpc.md). The proxy does not parse messages: the replica receives the request's
// bytes and the RPC's method name, and the handlers registered here parse and serialize them
// with the user's generated message classes (ParseFromString / SerializeToString), so the SDK
// itself needs no protobuf.
//
//   class Classifier {
//    public:
//     pkg::Reply Predict(const pkg::Request& req, serve::GrpcContext& ctx);  // unary
//     serve::Stream<pkg::Reply> Scores(const pkg::Request& req);             // server-streaming
//     serve::Task<pkg::Reply> Ask(pkg::Request req);                         // coroutine
//     serve::HttpResponse operator()(const serve::HttpRequest& r);           // HTTP as well
//   };
//   SERVE_DEPLOYMENT(Classifier, SERVE_GRPC_METHOD(&Classifier::Predict),
//                    SERVE_GRPC_METHOD(&Classifier::Scores), SERVE_GRPC_METHOD(&Classifier::Ask));
//
// A call of "/pkg.Service/Predict" runs the ingress's gRPC method named "Predict": with
// SERVE_GRPC_METHOD the C++ member's name, with serve::grpc_method("Predict", &C::predict) any.
// A handler takes the request message (by value or const reference) and optionally a
// serve::GrpcContext& after it.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include <serve/deployment.h>
#include <serve/grpc_context.h>

namespace serve {
namespace detail {

[[noreturn]] SERVE_EXPORT void ThrowGrpcParse(const std::string& method, const char* type);

template <class Resp>
std::string GrpcBytes(const Resp& message) {
  std::string bytes;
  message.SerializeToString(&bytes);
  return bytes;
}

/// Calls `fn` with the request (and the context when it takes one).
template <class Obj, class Fn, class Req>
decltype(auto) CallGrpc(Obj& obj, const Fn& fn, const Req& req, GrpcContext& ctx) {
  if constexpr (std::is_invocable_v<Fn, Obj&, const Req&, GrpcContext&>) {
    return std::invoke(fn, obj, req, ctx);
  } else {
    return std::invoke(fn, obj, req);
  }
}

template <class Obj, class Fn, class Req, class R>
Task<CallOutput> RunGrpcTask(Obj* obj, Fn fn, std::shared_ptr<Req> req, GrpcContext* ctx) {
  CallOutput out;
  out.value = GrpcBytes(co_await CallGrpc(*obj, fn, *req, *ctx));
  co_return out;
}

template <class Obj, class Fn, class R, class Req>
CallOutput InvokeGrpc(const std::string& name, Obj& obj, const Fn& fn, const CallInput& in) {
  if (in.grpc == nullptr) ThrowGrpcMismatch(name, false);
  auto req = std::make_shared<Req>();
  if (!req->ParseFromString(*in.grpc->request)) ThrowGrpcParse(name, typeid(Req).name());
  GrpcContext* ctx = in.grpc->context;
  CallOutput out;
  if constexpr (IsTask<R>::value) {
    out.pending = std::make_shared<PendingCall>(
        PendingCall{RunGrpcTask<Obj, Fn, Req, R>(&obj, fn, std::move(req), ctx)});
  } else if constexpr (IsStream<R>::value) {
    // The generator may hold references to the request: it lives as long as the generator.
    auto gen = std::make_shared<R>(CallGrpc(obj, fn, *req, *ctx));
    out.stream = [gen, req]() -> std::optional<Json> {
      auto item = gen->next();
      if (!item) return std::nullopt;
      return Json(GrpcBytes(*item));
    };
  } else {
    out.value = GrpcBytes(CallGrpc(obj, fn, *req, *ctx));
  }
  return out;
}

template <class T, class R, class Fn, class... A>
MethodSpec<T> GrpcSpec(std::string name, Fn fn) {
  static_assert(sizeof...(A) == 1 || sizeof...(A) == 2,
                "a gRPC handler takes the request message, optionally followed by "
                "serve::GrpcContext&");
  using Req = std::decay_t<std::tuple_element_t<0, std::tuple<A...>>>;
  if constexpr (sizeof...(A) == 2) {
    static_assert(std::is_same_v<std::tuple_element_t<1, std::tuple<A...>>, GrpcContext&>,
                  "the second parameter of a gRPC handler must be serve::GrpcContext&");
  }
  return {name, [name, fn](T& obj, const CallInput& in) {
            return InvokeGrpc<T, Fn, R, Req>(name, obj, fn, in);
          }};
}

}  // namespace detail

/// Registers member function `fn` as the gRPC method `name` (use with SERVE_DEPLOYMENT).
template <class T, class R, class... A>
MethodSpec<T> grpc_method(std::string name, R (T::*fn)(A...)) {
  return detail::GrpcSpec<T, R, decltype(fn), A...>(std::move(name), fn);
}
template <class T, class R, class... A>
MethodSpec<T> grpc_method(std::string name, R (T::*fn)(A...) const) {
  return detail::GrpcSpec<T, R, decltype(fn), A...>(std::move(name), fn);
}
/// Registers member function M as the gRPC method of the same name.
template <auto M>
auto grpc_method() {
  return grpc_method(std::string(method_name<M>()), M);
}

}  // namespace serve

/// SERVE_GRPC_METHOD(&C::Predict) registers the gRPC method "Predict".
#define SERVE_GRPC_METHOD(...) ::serve::grpc_method<__VA_ARGS__>()
