#pragma once

// The handle runtime of local testing mode (serve/testing.h): runs the deployments of one
// application inside this process and carries every handle call to them. Not part of
// include/serve.

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <serve/context.h>
#include <serve/deployment.h>

#include "sdk/host.h"

namespace serve::sdk {

/// Threads that run posted jobs, created on demand: a job starts at once on an idle thread, or
/// on a new one. The thread count is bounded by the jobs that run at once (each deployment
/// admits at most its limit; see LocalRuntime).
class WorkerPool {
 public:
  WorkerPool() = default;
  ~WorkerPool() { Stop(); }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  /// Queues `job`; false (and `job` is dropped) once stopped.
  bool Post(std::function<void()> job);
  /// Starts no more jobs, waits for the running ones and joins the threads; queued jobs are
  /// dropped. Call from outside the pool.
  void Stop();

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;  // guarded by mu_
  int idle_ = 0;                            // threads waiting for a job; guarded by mu_
  bool stop_ = false;                       // guarded by mu_
  std::vector<std::thread> threads_;        // guarded by mu_
};

/// One deployment of a local application: its only instance and its executor slots.
struct LocalDeployment {
  ReplicaContext context;  ///< what get_replica_context() returns inside it
  std::unique_ptr<detail::Instance> instance;
  /// User jobs (a call up to its end or first suspension, one resumption of a coroutine, a
  /// reconfigure()) that may run at once: max_ongoing_requests, or 1 for kSerialized. The rest
  /// wait in FIFO order.
  int limit = 100;
  std::mutex mu;
  int running = 0;                               // guarded by mu
  std::deque<std::function<void()>> queued;      // guarded by mu
};

/// Carries the handle calls of this process to the deployments of one in-process application,
/// and runs them with the replica's execution code (sdk::RunCall) on a WorkerPool, under the
/// threading contract of serve::Concurrency. Each call is its request's sdk::Resumer: its
/// coroutine resumes as a job of its deployment. Owned through a std::shared_ptr (calls keep
/// it); thread-safe.
class LocalRuntime final : public HandleRuntime,
                           public std::enable_shared_from_this<LocalRuntime> {
 public:
  explicit LocalRuntime(std::string app_name) : app_name_(std::move(app_name)) {}
  ~LocalRuntime() override;

  const std::string& app_name() const { return app_name_; }
  /// Builds deployment `node` (its factory with its msgpack-encoded init_args, then
  /// reconfigure(user_config) when set) on this thread, with its replica context installed,
  /// and makes it callable. Throws what the constructor or reconfigure throws.
  void Add(const detail::AppNode& node);
  /// The deployment get_app_handle() reaches.
  void SetIngress(std::string name);
  /// The deployment named `name`, or nullptr.
  LocalDeployment* Find(const std::string& name);
  /// Names in the order they were added (callees first).
  std::vector<std::string> Names();

  void Call(const detail::CallTarget& target, std::string encoded_args,
            std::shared_ptr<detail::ResponseState> state) override;
  void CallStream(const detail::CallTarget& target, std::string encoded_args,
                  std::shared_ptr<detail::StreamState> stream) override;
  /// Calls the ingress with `request` as the HTTP proxy does; `state` completes with the
  /// msgpack-encoded HttpResponse (a 500 one when the handler threw).
  void CallHttp(HttpRequest request, std::shared_ptr<detail::ResponseState> state);

  /// Runs `fn` as user code of `d` with its replica context installed: as a job of its
  /// executor for a kSerialized class, else on this thread. Rethrows what `fn` throws.
  void RunUserCode(LocalDeployment& d, const std::function<void()>& fn);

  /// Stops: new calls fail (DeploymentUnavailableError); calls under way get `timeout_s`, then
  /// are cancelled and get `timeout_s` more; the pool is joined; the instances are destroyed
  /// in reverse order of Add. Call once, from outside the pool.
  void Shutdown(double timeout_s);

 private:
  struct LocalCall;
  /// A call to the deployment `target` names, with the request context of the caller's
  /// request; nullptr with `failure` when it cannot be made.
  std::shared_ptr<LocalCall> Prepare(const detail::CallTarget& target,
                                     detail::CallResult* failure);
  /// Admits `call` (false when stopping: it is failed) and schedules its start.
  void Launch(const std::shared_ptr<LocalCall>& call);
  void Schedule(LocalDeployment& d, std::function<void()> job);
  void RunJob(LocalDeployment& d, std::function<void()> job);
  void Start(const std::shared_ptr<LocalCall>& call);
  /// Delivers the outcome of `call` (running its generator for a stream) and forgets it.
  void Finish(const std::shared_ptr<LocalCall>& call, detail::CallOutput&& out,
              std::exception_ptr error);

  const std::string app_name_;
  WorkerPool pool_;
  std::mutex mu_;  // guards the members below
  std::condition_variable drained_;
  std::string ingress_;
  std::map<std::string, std::unique_ptr<LocalDeployment>> deployments_;
  std::vector<std::string> order_;  // as added
  bool stopping_ = false;
  std::map<const LocalCall*, std::weak_ptr<LocalCall>> live_;  // calls under way
};

}  // namespace serve::sdk
