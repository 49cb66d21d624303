#pragma once

// serve::Handle<T>: a DeploymentHandle that knows the class of its deployment, so calls name the
// method by its member pointer and the result type is deduced from the method's signature:
//
//   class Ingress {
//    public:
//     explicit Ingress(serve::Handle<Translator> t) : translator_(std::move(t)) {}
//     serve::Task<std::string> operator()(serve::HttpRequest r) {
//       co_return co_await translator_.call<&Translator::translate>(r.query("text"));
//     }
//    private:
//     serve::Handle<Translator> translator_;
//   };
//
// For a method returning R the call gives DeploymentResponse<R>; Task<R> gives
// DeploymentResponse<R>; Stream<T> gives ResponseStream<T>; void gives DeploymentResponse<void>.
// Arguments are checked at compile time against the method's parameters (a DeploymentResponse<U>
// argument, chained, counts as a U). The method must be registered under its own name, which
// SERVE_METHOD(&T::m) and serve::method<&T::m>() do. Threading, cancellation and errors are those
// of DeploymentHandle (handle.h).

#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <serve/handle.h>
#include <serve/json.h>
#include <serve/stream.h>
#include <serve/task.h>

namespace serve {

namespace detail {

template <auto M>
constexpr std::string_view PrettyName() {
  return __PRETTY_FUNCTION__;
}

/// The unqualified name of the member that pointer M points to, read from the compiler's
/// spelling of the template argument (GCC: "[with auto M = &ns::Cls::name; ...]", Clang:
/// "[M = &ns::Cls::name]"); empty when it cannot be read.
template <auto M>
constexpr std::string_view MemberName() {
  std::string_view s = PrettyName<M>();
  size_t start = s.find("M = ");
  if (start == std::string_view::npos) return {};
  start += 4;
  size_t end = s.find(';', start);
  if (end == std::string_view::npos) end = s.rfind(']');
  if (end == std::string_view::npos || end <= start) return {};
  std::string_view expr = s.substr(start, end - start);
  if (expr.ends_with(">")) {  // explicit template arguments: drop them
    int depth = 0;
    size_t i = expr.size();
    while (i > 0) {
      char c = expr[--i];
      if (c == '>') ++depth;
      if (c == '<' && --depth == 0) break;
    }
    expr = expr.substr(0, i);
  }
  size_t colons = expr.rfind("::");
  if (colons == std::string_view::npos) return {};
  return expr.substr(colons + 2);
}

/// Signature of a member function pointer type.
template <class F>
struct MemberFn;
template <class C, class R, class... A>
struct MemberFn<R (C::*)(A...)> {
  using Class = C;
  using Result = R;
  template <class... Given>
  static constexpr bool kCallableWith = std::is_invocable_v<R (C::*)(A...), C&, Given...>;
};
template <class C, class R, class... A>
struct MemberFn<R (C::*)(A...) const> : MemberFn<R (C::*)(A...)> {};
template <class C, class R, class... A>
struct MemberFn<R (C::*)(A...) noexcept> : MemberFn<R (C::*)(A...)> {};
template <class C, class R, class... A>
struct MemberFn<R (C::*)(A...) const noexcept> : MemberFn<R (C::*)(A...)> {};

/// What a handle call of a method returning R gives.
template <class R>
struct HandleResult {
  using type = DeploymentResponse<std::remove_cvref_t<R>>;
};
template <>
struct HandleResult<void> {
  using type = DeploymentResponse<void>;
};
template <class U>
struct HandleResult<Task<U>> : HandleResult<U> {};
template <class U>
struct HandleResult<Stream<U>> {
  using type = ResponseStream<U>;
};

/// The value a handle argument stands for: a chained DeploymentResponse<U> stands for a U.
template <class A>
struct CallArg {
  using type = A;
};
template <class U>
struct CallArg<DeploymentResponse<U>> {
  using type = U;
};

}  // namespace detail

/// The name under which member function M is registered and called: its own name, or
/// "__call__" for operator().
template <auto M>
constexpr std::string_view method_name() {
  static_assert(std::is_member_function_pointer_v<decltype(M)>,
                "serve::method_name<M>: M must be a pointer to a member function (&Class::name)");
  constexpr std::string_view name = detail::MemberName<M>();
  static_assert(!name.empty(),
                "serve: cannot read the method name from this member pointer with this compiler; "
                "register it with serve::method(\"name\", &Class::name) instead");
  if constexpr (name == "operator()") {
    return "__call__";
  } else {
    return name;
  }
}

/// The result type of a handle call of member function M (see the file comment).
template <auto M>
using HandleResultOf =
    typename detail::HandleResult<typename detail::MemberFn<decltype(M)>::Result>::type;

/// A handle to a deployment of class T; cheap to copy. Converts from the DeploymentHandle a
/// constructor receives for a bound deployment, so a constructor may take Handle<T> directly.
template <class T>
class Handle {
 public:
  Handle() = default;
  Handle(DeploymentHandle handle) : handle_(std::move(handle)) {}  // NOLINT: implicit by design

  /// Calls method M (`handle.M.remote(args...)` in Ray Serve); returns at once with a
  /// DeploymentResponse, or a ResponseStream for a Stream method.
  template <auto M, class... A>
  HandleResultOf<M> call(A&&... args) const {
    using Fn = detail::MemberFn<decltype(M)>;
    static_assert(std::is_base_of_v<typename Fn::Class, T>,
                  "serve::Handle<T>::call<M>: M is not a method of T");
    static_assert(Fn::template kCallableWith<typename detail::CallArg<std::decay_t<A>>::type...>,
                  "serve::Handle<T>::call<M>: the arguments do not match the method's parameters");
    DeploymentHandle h = handle_.method(std::string(method_name<M>()));
    using Out = HandleResultOf<M>;
    if constexpr (detail::IsDeploymentResponse<Out>::value) {
      return h.template remote<typename Out::value_type>(std::forward<A>(args)...);
    } else {
      return h.template remote_stream<typename Out::value_type>(std::forward<A>(args)...);
    }
  }

  /// Calls operator() (`handle.remote(args...)`).
  template <class... A>
  auto remote(A&&... args) const {
    return call<&T::operator()>(std::forward<A>(args)...);
  }

  /// A copy with handle options (multiplexed model id, shield); a method name set here is
  /// replaced by the one each call names.
  Handle options(const HandleOptions& o) const { return Handle(handle_.options(o)); }

  /// The untyped handle (remote<R>("...") by name).
  const DeploymentHandle& untyped() const { return handle_; }
  const std::string& deployment_name() const { return handle_.deployment_name(); }
  const std::string& app_name() const { return handle_.app_name(); }
  bool valid() const { return handle_.valid(); }

 private:
  DeploymentHandle handle_;
};

template <class T>
void to_json(Json& j, const Handle<T>& h) {
  to_json(j, h.untyped());
}
template <class T>
void from_json(const Json& j, Handle<T>& h) {
  DeploymentHandle untyped;
  from_json(j, untyped);
  h = Handle<T>(std::move(untyped));
}

}  // namespace serve
