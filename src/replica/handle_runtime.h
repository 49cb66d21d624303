#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include "router/router.h"
#include "sdk/host.h"

namespace serve::replica {

/// Carries the DeploymentHandle calls of a replica (or a client program): its own I/O thread
/// ("serve-handles") runs a Router fed by a long-poll client that watches each deployment the
/// first time it is called. It completes the callers' states there; waiting coroutines resume
/// on the executor they suspended on (the replica's), not on this thread.
///
/// Calls to a deployment whose targets never arrived are held here, not in the router: the
/// controller publishes targets for every deployment it knows at each loop step, so when none
/// arrived 0.5 s after the first held call the runtime asks the controller (GetDetails, off the
/// I/O thread). An application it does not list, or a settled application (not DEPLOYING)
/// without that deployment, fails the held calls with DeploymentUnavailableError; otherwise
/// (deploying, controller unreachable) it asks again every 2 s. Deployments with targets, even
/// with zero replicas (scale-to-zero), are routed and wait in the router.
class ReplicaHandleRuntime final : public sdk::HandleRuntime {
 public:
  /// `node_id`: the caller's node, whose replicas the router prefers ("" = no preference).
  /// `metrics_source`: the source of the router's autoscaling metrics, "replica:<replica_id>"
  /// inside a replica; "" = "client:<pid>" (a program outside the cluster).
  ReplicaHandleRuntime(std::string controller_address, std::string app_name,
                       std::string node_id = "", std::string metrics_source = "");
  ~ReplicaHandleRuntime() override;

  void Call(const detail::CallTarget& target, std::string encoded_args,
            std::shared_ptr<detail::ResponseState> state) override;

  void CallStream(const detail::CallTarget& target, std::string encoded_args,
                  std::shared_ptr<detail::StreamState> stream) override;

  /// Cancels the calls (and streams under way) made while serving request `request_id`
  /// (cancellation cascades), except shielded ones.
  void CancelChildren(const std::string& request_id);

 private:
  struct Outgoing;
  using OutgoingPtr = std::shared_ptr<Outgoing>;

  /// Fills the request head of a call from the caller's request context; false (with
  /// `failure`) when the target cannot be named.
  bool Prepare(const detail::CallTarget& target, Outgoing& o, detail::CallResult* failure);
  /// Resolves an application's ingress when needed (off the caller's thread), then routes.
  void Start(OutgoingPtr o);
  // The rest runs on io_'s thread only.
  void Route(const OutgoingPtr& o);
  void Send(const OutgoingPtr& o);
  void OnRouted(const OutgoingPtr& o, router::RouteResult&& r);
  void Cancel(const OutgoingPtr& o);
  /// Completes the caller (unary call, or the end of a stream) and forgets the call.
  void Complete(const OutgoingPtr& o, const detail::CallResult& result);
  void Untrack(Outgoing& o);
  void OnTargets(const std::string& key);
  void ScheduleExistenceCheck(const std::string& key, std::chrono::milliseconds delay);
  /// Blocking (on blocking_): "" when `app`/`deployment` exists or cannot be decided yet, else
  /// the error message.
  std::string MissingMessage(const std::string& app, const std::string& deployment);
  /// Ingress deployment of `app` from the controller (blocking; on blocking_), cached; "" when
  /// the application does not exist or the controller cannot be reached.
  std::string ResolveIngress(const std::string& app);

  std::string app_name_;
  std::string controller_address_;
  std::mutex ingress_mu_;
  std::map<std::string, std::string> ingress_;  // app -> ingress deployment
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  router::Router router_;                        // only on io_'s thread
  std::unique_ptr<router::LongPollClient> poll_;
  std::set<std::string> watched_;                // only on io_'s thread
  std::set<std::string> known_;                  // keys whose targets arrived; io_ only
  struct Held {
    std::vector<OutgoingPtr> calls;
    std::unique_ptr<boost::asio::steady_timer> check;
    bool checking = false;  // a GetDetails question is out
  };
  std::unordered_map<std::string, Held> held_;  // by key, until targets arrive; io_ only
  std::multimap<std::string, OutgoingPtr> children_;  // parent request id -> call; io_ only
  std::thread thread_;
  boost::asio::thread_pool blocking_{1};  // controller questions; last: joined first
};

}  // namespace serve::replica
