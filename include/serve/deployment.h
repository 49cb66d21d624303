#pragma once

#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include <serve/grpc_context.h>
#include <serve/handle.h>
#include <serve/http.h>
#include <serve/json.h>
#include <serve/stream.h>
#include <serve/task.h>
#include <serve/typed_handle.h>
#include <serve/options.h>
#include <serve/version.h>

namespace serve {

/// Arguments of an application builder: `serve run mod:app key=value ...` (later: config `args`).
class SERVE_EXPORT Args {
 public:
  Args() = default;
  explicit Args(std::map<std::string, std::string> values) : values_(std::move(values)) {}
  /// Value of `key`, or `fallback` when absent.
  std::string get(const std::string& key, const std::string& fallback = "") const;
  bool contains(const std::string& key) const { return values_.count(key) > 0; }
  const std::map<std::string, std::string>& values() const { return values_; }

 private:
  std::map<std::string, std::string> values_;
};

/// How a replica runs the handlers of a deployment class.
///
/// Threading contract. A replica runs user code on its executor: a pool of threads that also
/// does the replica's network I/O, one thread when nothing blocks.
/// - Synchronous handlers (returning a value, serve::HttpResponse or serve::Stream) run on a
///   pool thread from start to end; blocking blocks only that thread. The pool grows on demand
///   (lazily, about a thread per millisecond while every thread is stuck in user code) up to
///   max_ongoing_requests threads ($SERVE_REPLICA_THREADS caps it), as with Ray's
///   RAY_SERVE_RUN_SYNC_IN_THREADPOOL=1, so up to max_ongoing_requests blocking calls run at
///   once. A call starts on the thread that read its request, without a hand-off.
/// - Coroutine handlers (serve::Task) run on the pool until they co_await; while suspended they
///   hold no thread, so max_ongoing_requests of them may await downstream calls at once. They
///   resume on the executor (see task.h).
/// - kConcurrent (the default): handlers and coroutine steps of different requests run at the
///   same time on different threads; guard shared members with a mutex or atomics. One request's
///   coroutine never runs on two threads at once. reconfigure() and check_health() run on a
///   control thread, concurrently with handlers.
/// - kSerialized: one strand per replica, like an asyncio event loop: one piece of user code at
///   a time (a synchronous handler, a coroutine's step between two suspensions, reconfigure(),
///   check_health()), in arrival order; coroutines interleave only at their co_awaits. A
///   synchronous handler, or a blocking .result(), holds the strand until it returns. The
///   replica still reads requests, answers probes and delivers cancellations meanwhile.
/// - The constructor and the destructor run alone.
/// A class opts into kSerialized with a static member:
///   class Counter {
///    public:
///     static constexpr serve::Concurrency serve_concurrency = serve::Concurrency::kSerialized;
///     ...
///   };
enum class Concurrency {
  kConcurrent,
  kSerialized,
};

namespace detail {

/// The concurrency a deployment class asks for (T::serve_concurrency, else kConcurrent).
template <class T>
constexpr Concurrency ConcurrencyOf() {
  if constexpr (requires { T::serve_concurrency; }) {
    static_assert(std::is_convertible_v<decltype(T::serve_concurrency), Concurrency>,
                  "serve_concurrency must be a serve::Concurrency");
    return T::serve_concurrency;
  } else {
    return Concurrency::kConcurrent;
  }
}

/// What a handler receives: an HTTP request (ingress over HTTP), a gRPC call (serve/grpc.h) or
/// positional arguments. For a coroutine handler (CallOutput::pending) `*http` and `*grpc`
/// must stay valid until the pending call finished; `args` are decoded at once.
struct CallInput {
  const HttpRequest* http = nullptr;
  const Json* args = nullptr;  ///< JSON array of positional arguments.
  const GrpcInput* grpc = nullptr;
};

struct PendingCall;

/// What a handler produced.
struct CallOutput {
  std::optional<HttpResponse> http;  ///< Set when the handler returned serve::HttpResponse.
  Json value;                        ///< Otherwise the returned value (null for void).
  /// Set for streaming handlers (serve::Stream<T>): each call runs the generator to its next
  /// value; nullopt when it finished.
  std::function<std::optional<Json>()> stream;
  /// Set for coroutine handlers (serve::Task<T>), instead of the fields above: the call, not
  /// started yet. The host starts it (task.Start) and takes its CallOutput when it finished.
  std::shared_ptr<PendingCall> pending;
};

/// A coroutine handler's call: `task` runs the user's Task and converts its value.
struct PendingCall {
  Task<CallOutput> task;
};

/// A live user object inside a replica, type-erased.
class SERVE_EXPORT Instance {
 public:
  virtual ~Instance();
  /// Runs `method` ("__call__" for operator()). Throws whatever user code throws, or
  /// std::invalid_argument for an unknown method or bad arguments.
  virtual CallOutput Call(const std::string& method, const CallInput& input) = 0;
  /// Calls `reconfigure(user_config)`; throws std::logic_error if the class has none.
  virtual void Reconfigure(const Json& user_config) = 0;
  /// Calls `check_health()` when the class has one; throws when unhealthy.
  virtual void CheckHealth() = 0;
  virtual bool HasReconfigure() const = 0;
  /// True when the class asks for Concurrency::kSerialized.
  virtual bool Serialized() const { return false; }
};

/// Builds an Instance from msgpack-encoded constructor arguments.
using Factory = std::unique_ptr<Instance> (*)(const std::string& encoded_args);

/// Registers `factory` under `key` (a stable, mangled type name). Returns true.
SERVE_EXPORT bool RegisterFactory(const char* key, Factory factory);
SERVE_EXPORT std::string Demangle(const char* mangled);
[[noreturn]] SERVE_EXPORT void ThrowBadArity(const std::string& method, size_t want, size_t got);
[[noreturn]] SERVE_EXPORT void ThrowNotHttp(const std::string& method);
/// A gRPC call reached a method not registered with serve::grpc_method, or the reverse.
[[noreturn]] SERVE_EXPORT void ThrowGrpcMismatch(const std::string& method, bool grpc_call);

/// A deployment node of the application graph.
struct AppNode {
  DeploymentOptions options;  ///< Options set in code (name always set).
  std::string factory_key;
  Json init_args;             ///< JSON array of constructor arguments.
  std::vector<std::shared_ptr<const AppNode>> children;  ///< bound deployments among the args
};

template <class T>
CallOutput Wrap(T&& value) {
  using V = std::decay_t<T>;
  CallOutput out;
  if constexpr (std::is_same_v<V, HttpResponse>) {
    out.http = std::forward<T>(value);
  } else if constexpr (IsStream<V>::value) {
    auto gen = std::make_shared<V>(std::forward<T>(value));
    out.stream = [gen]() -> std::optional<Json> {
      auto item = gen->next();
      if (!item) return std::nullopt;
      return Json(std::move(*item));
    };
  } else {
    out.value = Json(std::forward<T>(value));
  }
  return out;
}

/// Runs coroutine handler `fn` with `args`, which live in this frame (by value, or as
/// std::reference_wrapper to host storage) until the handler finished.
template <class R, class Obj, class Fn, class... P>
Task<CallOutput> RunTask(Obj* obj, Fn fn, P... args) {
  if constexpr (std::is_void_v<typename R::value_type>) {
    co_await std::invoke(fn, *obj, std::move(args)...);
    co_return CallOutput{};
  } else {
    co_return Wrap(co_await std::invoke(fn, *obj, std::move(args)...));
  }
}

template <class Obj, class Fn, class R, class... A>
CallOutput Invoke(const std::string& name, Obj& obj, const Fn& fn, const CallInput& in) {
  auto call = [&](auto&&... args) -> CallOutput {
    if constexpr (IsTask<R>::value) {
      // Coroutine handler: the host starts it, without blocking a thread while it awaits.
      CallOutput out;
      out.pending = std::make_shared<PendingCall>(
          PendingCall{RunTask<R>(&obj, fn, std::forward<decltype(args)>(args)...)});
      return out;
    } else if constexpr (std::is_void_v<R>) {
      std::invoke(fn, obj, std::forward<decltype(args)>(args)...);
      return CallOutput{};
    } else {
      return Wrap(std::invoke(fn, obj, std::forward<decltype(args)>(args)...));
    }
  };
  if (in.grpc != nullptr) ThrowGrpcMismatch(name, true);
  if (in.http != nullptr) {
    if constexpr (sizeof...(A) == 0) {
      return call();
    } else if constexpr (sizeof...(A) == 1 &&
                         (std::is_same_v<std::decay_t<A>, HttpRequest> && ...)) {
      if constexpr (IsTask<R>::value) return call(std::cref(*in.http));  // kept by the host
      else return call(*in.http);
    } else {
      ThrowNotHttp(name);
    }
  }
  const Json& args = *in.args;
  if (!args.is_array() || args.size() != sizeof...(A)) {
    ThrowBadArity(name, sizeof...(A), args.is_array() ? args.size() : 0);
  }
  return [&]<size_t... I>(std::index_sequence<I...>) {
    return call(FromJson<std::decay_t<A>>(args[I])...);
  }(std::index_sequence_for<A...>{});
}

}  // namespace detail

/// A named method of deployment class T, callable through handles.
template <class T>
struct MethodSpec {
  std::string name;
  std::function<detail::CallOutput(T&, const detail::CallInput&)> invoke;
};

/// Registers member function `fn` under `name` (use with SERVE_DEPLOYMENT). Prefer
/// SERVE_METHOD(&T::fn), which takes the name from the member pointer.
template <class T, class R, class... A>
MethodSpec<T> method(std::string name, R (T::*fn)(A...)) {
  return {name, [name, fn](T& obj, const detail::CallInput& in) {
            return detail::Invoke<T, decltype(fn), R, A...>(name, obj, fn, in);
          }};
}
template <class T, class R, class... A>
MethodSpec<T> method(std::string name, R (T::*fn)(A...) const) {
  return {name, [name, fn](T& obj, const detail::CallInput& in) {
            return detail::Invoke<T, decltype(fn), R, A...>(name, obj, fn, in);
          }};
}

/// Registers member function M under its own name (serve::method_name<M>(): "translate" for
/// &Translator::translate, "__call__" for operator()), the name Handle<T>::call<M> calls:
///   SERVE_DEPLOYMENT(Translator, serve::method<&Translator::translate>());
/// SERVE_METHOD(&Translator::translate) is the same. An overloaded method needs a cast to pick
/// one: serve::method<static_cast<int (C::*)(int)>(&C::f)>().
template <auto M>
auto method() {
  return method(std::string(method_name<M>()), M);
}

/// Deployment metadata of class T. SERVE_DEPLOYMENT specialises it to name the class and list
/// its methods; without it the deployment is named after the class and exposes operator().
template <class T>
struct DeploymentTraits {
  static std::string Name() { return detail::Demangle(typeid(T).name()); }
  static std::vector<MethodSpec<T>> Methods() { return {}; }
};

namespace detail {

template <class T, class = void>
struct CallOperator {
  static void Add(std::vector<MethodSpec<T>>&) {}
};
template <class T>
struct CallOperator<T, std::void_t<decltype(&T::operator())>> {
  static void Add(std::vector<MethodSpec<T>>& methods) {
    for (const auto& m : methods) {
      if (m.name == "__call__") return;
    }
    methods.push_back(method("__call__", &T::operator()));
  }
};

template <class T>
class TypedInstance final : public Instance {
 public:
  explicit TypedInstance(std::unique_ptr<T> obj) : obj_(std::move(obj)) {
    methods_ = DeploymentTraits<T>::Methods();
    CallOperator<T>::Add(methods_);
  }
  CallOutput Call(const std::string& name, const CallInput& input) override {
    for (auto& m : methods_) {
      if (m.name == name) return m.invoke(*obj_, input);
    }
    throw std::invalid_argument("Tried to call a method '" + name + "' that does not exist.");
  }
  void Reconfigure(const Json& user_config) override {
    if constexpr (requires(T& t, const Json& j) { t.reconfigure(j); }) {
      obj_->reconfigure(user_config);
    } else {
      throw std::logic_error(
          "user_config is set but the deployment class has no reconfigure(const serve::Json&)");
    }
  }
  void CheckHealth() override {
    if constexpr (requires(T& t) { t.check_health(); }) obj_->check_health();
  }
  bool HasReconfigure() const override {
    return requires(T& t, const Json& j) { t.reconfigure(j); };
  }
  bool Serialized() const override { return ConcurrencyOf<T>() == Concurrency::kSerialized; }

 private:
  std::unique_ptr<T> obj_;
  std::vector<MethodSpec<T>> methods_;
};

/// Factory for class T constructed from arguments of types A...; registered at load time of the
/// library that binds it, so a replica that dlopens the library can find it by key. Bound
/// deployments (Application arguments) arrive as DeploymentHandle.
template <class T, class... A>
struct FactoryFor {
  static std::unique_ptr<Instance> Make(const std::string& encoded) {
    Json args = DecodeMsgpack(encoded);
    if (!args.is_array() || args.size() != sizeof...(A)) {
      ThrowBadArity("__init__", sizeof...(A), args.is_array() ? args.size() : 0);
    }
    return [&]<size_t... I>(std::index_sequence<I...>) {
      return std::make_unique<TypedInstance<T>>(
          std::make_unique<T>(FromJson<A>(args[I])...));
    }(std::index_sequence_for<A...>{});
  }
  static const char* Key() { return typeid(FactoryFor).name(); }
  static inline const bool registered = RegisterFactory(Key(), &Make);
};

template <auto F>
struct FunctionDeployment;
template <class R, class... A, R (*F)(A...)>
struct FunctionDeployment<F> {
  R operator()(A... args) { return F(std::forward<A>(args)...); }
};
SERVE_EXPORT std::string FunctionName(const char* mangled_wrapper);

}  // namespace detail

/// A bound deployment graph: what `serve run` deploys. Cheap to copy.
class SERVE_EXPORT Application {
 public:
  Application() = default;
  explicit Application(std::shared_ptr<const detail::AppNode> ingress)
      : ingress_(std::move(ingress)) {}
  const detail::AppNode* ingress() const { return ingress_.get(); }
  const std::shared_ptr<const detail::AppNode>& shared_ingress() const { return ingress_; }
  /// The graph as JSON: {"ingress": name, "deployments": [{name, factory, init_args, options}]},
  /// every bound deployment once. Throws std::invalid_argument when two different bound
  /// deployments share a name. (Json(app), by contrast, is the reference to its ingress that a
  /// bind() argument carries.)
  Json graph_json() const;
  /// Deprecated spelling of graph_json().
  Json ToJson() const { return graph_json(); }

 private:
  std::shared_ptr<const detail::AppNode> ingress_;
};

SERVE_EXPORT void to_json(Json& j, const Application& app);

namespace detail {
/// What a constructor receives for a bind() argument of type A.
template <class A>
struct CtorArgT {
  using type = A;
};
template <>
struct CtorArgT<Application> {
  using type = DeploymentHandle;
};
/// A string literal bound as an argument reaches the constructor as a std::string.
template <>
struct CtorArgT<const char*> {
  using type = std::string;
};
template <>
struct CtorArgT<char*> {
  using type = std::string;
};
template <class A>
using CtorArg = typename CtorArgT<A>::type;

template <class A>
void AddArg(AppNode& node, A&& arg) {
  if constexpr (std::is_same_v<std::decay_t<A>, Application>) {
    if (arg.ingress() == nullptr) throw std::invalid_argument("cannot bind an empty application");
    node.children.push_back(arg.shared_ingress());
  }
  node.init_args.push_back(Json(std::forward<A>(arg)));
}
}  // namespace detail

/// Builder for a deployment of class T (`@serve.deployment` + `.options()` + `.bind()`).
template <class T>
class Deployment {
 public:
  Deployment() { options_.name = DeploymentTraits<T>::Name(); }
  explicit Deployment(DeploymentOptions options) : Deployment() { options_.MergeFrom(options); }

  Deployment name(std::string v) const { auto d = *this; d.options_.name = std::move(v); return d; }
  /// A fixed number of replicas; clears num_replicas_auto() and autoscaling_config().
  Deployment num_replicas(int v) const {
    DeploymentOptions o;
    o.num_replicas = v;
    return options(o);
  }
  /// `num_replicas="auto"`: autoscaling with max_ongoing_requests 5 (unless set) and
  /// {target_ongoing_requests 2, min_replicas 1, max_replicas 100}, updated with the fields of
  /// autoscaling_config() if given. Clears num_replicas(int).
  Deployment num_replicas_auto() const {
    DeploymentOptions o;
    o.num_replicas_auto = true;
    return options(o);
  }
  /// Turns autoscaling on (the config replaces an earlier one whole); clears num_replicas(int).
  Deployment autoscaling_config(AutoscalingConfig v) const {
    DeploymentOptions o;
    o.autoscaling_config = std::move(v);
    return options(o);
  }
  Deployment max_ongoing_requests(int v) const {
    auto d = *this; d.options_.max_ongoing_requests = v; return d;
  }
  Deployment max_queued_requests(int v) const {
    auto d = *this; d.options_.max_queued_requests = v; return d;
  }
  Deployment user_config(Json v) const { auto d = *this; d.options_.user_config = std::move(v); return d; }
  Deployment health_check_period_s(Duration v) const {
    auto d = *this; d.options_.health_check_period_s = v; return d;
  }
  Deployment health_check_timeout_s(Duration v) const {
    auto d = *this; d.options_.health_check_timeout_s = v; return d;
  }
  Deployment graceful_shutdown_wait_loop_s(Duration v) const {
    auto d = *this; d.options_.graceful_shutdown_wait_loop_s = v; return d;
  }
  Deployment graceful_shutdown_timeout_s(Duration v) const {
    auto d = *this; d.options_.graceful_shutdown_timeout_s = v; return d;
  }
  Deployment ray_actor_options(ActorOptions v) const {
    auto d = *this; d.options_.ray_actor_options = std::move(v); return d;
  }
  Deployment max_replicas_per_node(int v) const {
    auto d = *this; d.options_.max_replicas_per_node = v; return d;
  }
  Deployment logging_config(LoggingConfig v) const {
    auto d = *this; d.options_.logging_config = std::move(v); return d;
  }
  /// Returns a copy with the fields set in `overrides` replaced (`.options(...)`).
  Deployment options(const DeploymentOptions& overrides) const {
    auto d = *this; d.options_.MergeFrom(overrides); return d;
  }
  const DeploymentOptions& options() const { return options_; }

  /// Binds constructor arguments; T must be constructible from them. Arguments are encoded
  /// now and decoded in each replica.
  template <class... A>
  Application bind(A&&... args) const {
    using F = detail::FactoryFor<T, detail::CtorArg<std::decay_t<A>>...>;
    (void)F::registered;
    auto node = std::make_shared<detail::AppNode>();
    node->options = options_;
    node->factory_key = F::Key();
    node->init_args = Json::array();
    (detail::AddArg(*node, std::forward<A>(args)), ...);
    return Application(std::move(node));
  }

 private:
  DeploymentOptions options_;
};

/// `serve::deployment<MyClass>()`: a deployment of a class.
template <class T>
Deployment<T> deployment(DeploymentOptions options = {}) {
  return Deployment<T>(std::move(options));
}
/// `serve::deployment<&my_function>()`: a function deployment, named after the function.
template <auto F>
Deployment<detail::FunctionDeployment<F>> deployment(DeploymentOptions options = {}) {
  const bool named = options.name.has_value();
  Deployment<detail::FunctionDeployment<F>> d(std::move(options));
  if (!named) d = d.name(detail::FunctionName(typeid(detail::FunctionDeployment<F>).name()));
  return d;
}

using AppBuilder = Application (*)(const Args&);
namespace detail {
/// Registers an application (`takes_args` = builder function) under `name`. Returns true.
SERVE_EXPORT bool RegisterApp(const char* name, std::function<Application(const Args&)> builder,
                              bool takes_args);
}  // namespace detail

}  // namespace serve

/// Names class T as a deployment and lists its methods callable through handles:
///   SERVE_DEPLOYMENT(Translator, SERVE_METHOD(&Translator::translate));
/// operator() is exposed as "__call__" automatically. Use at global namespace scope. (The older
/// spelling serve::method("translate", &Translator::translate) still works.)
#define SERVE_DEPLOYMENT(T, ...)                                                      \
  template <>                                                                         \
  struct serve::DeploymentTraits<T> {                                                 \
    static std::string Name() { return #T; }                                          \
    static std::vector<serve::MethodSpec<T>> Methods() { return {__VA_ARGS__}; }      \
  }

/// A method callable through handles, named after the member it points to:
/// SERVE_METHOD(&Translator::translate) registers "translate" (see serve::method<M>()).
#define SERVE_METHOD(...) ::serve::method<__VA_ARGS__>()

#define SERVE_CONCAT_INNER_(a, b) a##b
#define SERVE_CONCAT_(a, b) SERVE_CONCAT_INNER_(a, b)

/// Registers builder function `fn` (serve::Application fn(const serve::Args&)) as import path
/// `<module>:fn`.
#define SERVE_APP_BUILDER(fn)                                                    \
  static const bool SERVE_CONCAT_(serve_app_registered_, __LINE__) =             \
      ::serve::detail::RegisterApp(#fn, [](const ::serve::Args& a) { return fn(a); }, true)

/// Registers a ready application expression under `name` (import path `<module>:name`):
///   SERVE_APP(app, serve::deployment<Hello>().bind());
#define SERVE_APP(name, ...)                                                     \
  static const bool SERVE_CONCAT_(serve_app_registered_, __LINE__) =             \
      ::serve::detail::RegisterApp(                                              \
          #name, [](const ::serve::Args&) -> ::serve::Application { return __VA_ARGS__; }, false)
