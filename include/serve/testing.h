#pragma once

// Local testing mode (Ray Serve's `serve.run(app, _local_testing_mode=True)`): runs an
// application inside the calling process, without controller, agent, proxy or replica
// processes, and calls it through ordinary DeploymentHandles. The way to unit-test deployments
// (docs/testing.md). Link libserve_testing.so: target serve::testing (in-tree, or from
// find_package(serve)).
//
//   auto app = serve::testing::run_local(serve::deployment<Model>().bind(2));
//   EXPECT_EQ(app.ingress().remote<int>(21).result(5.0), 42);
//
// What is the same as in a cluster: constructors get their bound arguments and handles to the
// bound deployments; arguments, results and stream items go through the msgpack encoding of
// the data plane; handlers run with the replica's execution code (synchronous, serve::Task
// coroutines that hold no thread while suspended, serve::Stream generators), with the threading
// contract of serve::Concurrency (max_ongoing_requests handlers at once, one at a time for
// kSerialized); user_config reaches reconfigure() before the first call; get_replica_context(),
// is_request_cancelled(), get_multiplexed_model_id() and the user logger see the deployment and
// the request; cancellation cascades to the calls a request made; failures surface as the same
// serve::DeploymentError (remote type name and message), RequestCancelledError and
// DeploymentUnavailableError.
//
// Limits: one instance per deployment (num_replicas and autoscaling are ignored); no request
// queue limits (max_queued_requests, BackPressureError); no health-check loop (call
// check_health()); no HTTP proxy: http() calls the ingress the way the proxy does, without
// route matching. One LocalApp per process at a time; it takes the place of any other handle
// runtime of the process (a client connection) while it lives.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <serve/deployment.h>
#include <serve/handle.h>
#include <serve/http.h>
#include <serve/json.h>
#include <serve/version.h>

namespace serve::testing {

struct LocalOptions {
  /// The application's name: get_replica_context().app_name, and the app of get_app_handle().
  std::string name = "default";
  /// How long ~LocalApp waits for calls under way before it cancels them.
  double shutdown_timeout_s = 5;
};

/// An application running in this process. Move-only; thread-safe.
///
/// Destroying it stops the application: new calls fail with DeploymentUnavailableError, calls
/// under way get `shutdown_timeout_s` to finish and are then cancelled, the worker threads are
/// joined (a synchronous handler that never returns keeps it waiting), and the instances are
/// destroyed, callers before the deployments they call.
class SERVE_EXPORT LocalApp {
 public:
  LocalApp(LocalApp&&) noexcept;
  LocalApp& operator=(LocalApp&&) noexcept;
  ~LocalApp();

  /// A handle to the ingress deployment (the one passed to run_local()).
  DeploymentHandle ingress() const;
  /// A handle to deployment `deployment` of the application. Throws std::invalid_argument when
  /// the application has none of that name.
  DeploymentHandle handle(const std::string& deployment) const;
  /// Names of the application's deployments, the ingress first.
  std::vector<std::string> deployments() const;
  const std::string& name() const;

  /// Sends `request` to the ingress as the HTTP proxy does: the handler takes no argument or
  /// one serve::HttpRequest; a string becomes text/plain, an HttpResponse is kept, other values
  /// become JSON; a stream's items are concatenated (strings as is, others as JSON text); a
  /// handler that throws gives a 500 response naming the error. An empty route_prefix becomes
  /// "/". The response fails only when cancelled or when the application stopped.
  DeploymentResponse<HttpResponse> http(HttpRequest request) const;

  /// Calls reconfigure(user_config) of `deployment`, as a new user_config in a redeploy would
  /// (on the strand of a kSerialized class). Rethrows what reconfigure throws;
  /// std::invalid_argument for an unknown deployment, std::logic_error when it has no
  /// reconfigure().
  void reconfigure(const std::string& deployment, const Json& user_config) const;
  /// Calls check_health() of `deployment` when its class has one; rethrows what it throws.
  void check_health(const std::string& deployment) const;

 private:
  friend SERVE_EXPORT LocalApp run_local(const Application& app, const LocalOptions& options);
  struct Impl;
  explicit LocalApp(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Builds every deployment of `app` in this process, callees before their callers (each
/// constructor may call the deployments it was bound to), calls reconfigure() where a
/// user_config is set, and installs the in-process runtime that carries every handle call.
/// Throws std::invalid_argument for an empty application or two different deployments of one
/// name, std::logic_error while another LocalApp lives, and rethrows what a constructor or
/// reconfigure() throws (after destroying the instances built so far).
SERVE_EXPORT LocalApp run_local(const Application& app, const LocalOptions& options = {});

}  // namespace serve::testing
