#pragma once

// Host-side view of the SDK: what the replica (and the build step) use to find and run the
// user's deployments after dlopen-ing an application library. Not part of include/serve.

#include <atomic>
#include <coroutine>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <serve/context.h>
#include <serve/deployment.h>

namespace serve::sdk {

struct AppEntry {
  std::function<Application(const Args&)> builder;
  bool takes_args = false;  ///< True for SERVE_APP_BUILDER, false for SERVE_APP.
};

/// The application registered under `name`, or nullptr.
SERVE_EXPORT const AppEntry* FindApp(const std::string& name);
/// Names of every registered application (for error messages).
SERVE_EXPORT std::vector<std::string> AppNames();
/// The factory registered under `key`, or nullptr.
SERVE_EXPORT detail::Factory FindFactory(const std::string& key);

/// Installs the identity returned by serve::get_replica_context() in this process.
SERVE_EXPORT void SetReplicaContext(ReplicaContext context);

/// Resumes coroutines suspended in user code on the host's executor (the replica's). A host
/// gives each request one (RequestContext::resumer); serve's awaitables keep it
/// (shared_from_this) while they wait and resume through it, from whatever thread completes
/// them. The host must own it through a std::shared_ptr.
class SERVE_EXPORT Resumer : public std::enable_shared_from_this<Resumer> {
 public:
  virtual ~Resumer();
  /// Resumes `h` soon on the executor, with this request's context installed; never inline.
  virtual void Resume(std::coroutine_handle<> h) = 0;
};

/// Per-request context read by the user logger; thread-local, set around each piece of user
/// code (a call, each resumption of its coroutine).
struct RequestContext {
  std::string request_id;
  std::string route;
  const std::atomic<bool>* cancelled = nullptr;  ///< set by the host when the caller gives up
  Resumer* resumer = nullptr;  ///< where suspended coroutines resume; null: inline
  std::string multiplexed_model_id;  ///< serve::get_multiplexed_model_id(); "" when none
};
class SERVE_EXPORT ScopedRequestContext {
 public:
  explicit ScopedRequestContext(const RequestContext* context);
  ~ScopedRequestContext();
  ScopedRequestContext(const ScopedRequestContext&) = delete;
  ScopedRequestContext& operator=(const ScopedRequestContext&) = delete;

 private:
  const RequestContext* previous_;
};

/// Carries handle calls of this process (installed by the replica or the client library).
/// Called on the caller's thread with its RequestContext installed (the parent request);
/// must not block. Implementations install a canceller on the state (SetCanceller; a false
/// return means the call was cancelled already: drop it) and complete it, from any thread;
/// completing resumes the waiting coroutine on the executor it suspended on.
class HandleRuntime {
 public:
  virtual ~HandleRuntime() = default;
  virtual void Call(const detail::CallTarget& target, std::string encoded_args,
                    std::shared_ptr<detail::ResponseState> state) = 0;
  /// A streaming call: items go to `stream`, which is finished exactly once.
  virtual void CallStream(const detail::CallTarget& target, std::string encoded_args,
                          std::shared_ptr<detail::StreamState> stream) = 0;
};
/// Installs the runtime (not owned; must outlive every handle call). nullptr uninstalls.
SERVE_EXPORT void SetHandleRuntime(HandleRuntime* runtime);

/// The request context of the calling thread, or nullptr.
SERVE_EXPORT const RequestContext* CurrentRequestContext();

/// Installs `listener`, called whenever the multiplexed model ids loaded or loading in this
/// process change (serve::Multiplexed caches); on any thread, under no lock of the caches;
/// must not block (take note, read MultiplexedModelIds() elsewhere). nullptr uninstalls.
SERVE_EXPORT void SetMultiplexedModelsListener(std::function<void()> listener);
/// The loaded and loading model ids of every serve::Multiplexed cache in this process, sorted
/// and unique.
SERVE_EXPORT std::vector<std::string> MultiplexedModelIds();

/// The metrics recorded in libserve.so (custom metrics, batching, multiplexing) in Prometheus
/// text format; the replica pushes them with its own.
SERVE_EXPORT std::string MetricsText();

/// Builds the application `name` with `args`. Throws std::invalid_argument for an unknown name,
/// for args given to a non-builder app, and whatever the builder throws.
SERVE_EXPORT Json BuildApplication(const std::string& name, const Args& args);

}  // namespace serve::sdk
