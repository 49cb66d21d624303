#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "router/router.h"
#include "sdk/host.h"

namespace serve::replica {

/// Carries the DeploymentHandle calls of a replica: its own I/O thread runs a Router fed by a
/// long-poll client that watches each deployment the first time it is called. Coroutines
/// awaiting a response are resumed on that thread.
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

  /// Cancels the calls made while serving request `request_id` (cancellation cascades).
  void CancelChildren(const std::string& request_id);

 private:
  /// Fills the request head and the deployment key of a call; false (with `failure`) when the
  /// target cannot be resolved.
  bool Prepare(const detail::CallTarget& target, v1::RequestHead* head, std::string* key,
               detail::CallResult* failure);
  /// Routes on the I/O thread, tracking the call as a child of its request unless shielded.
  void Dispatch(std::string key, bool shield, v1::RequestHead head, std::string args,
                router::RouteCallback done);
  /// Ingress deployment of `app`, asked from the controller once (blocking) and cached.
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
  std::multimap<std::string, uint64_t> children_;  // parent request id -> router id; io_ only
  std::thread thread_;
};

}  // namespace serve::replica
