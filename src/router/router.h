#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "router/metrics_reporter.h"
#include "router/router_metrics.h"
#include "rpc/http_server.h"
#include "serve/v1/controller.pb.h"
#include "serve/v1/dataplane.pb.h"

namespace serve::router {

class ReplicaConnection;

/// Outcome of one routed request.
struct RouteResult {
  enum class Code {
    kOk,            ///< The replica answered (head.ok() may still be false: user error).
    kUnavailable,   ///< The deployment is unavailable (failed, deleted): HTTP 503.
    kBackPressure,  ///< max_queued_requests reached: HTTP 503.
    kReplicaDied,   ///< The replica died after accepting the request: HTTP 500.
    kCancelled,     ///< Cancel() was called (client gone, timeout).
  };
  Code code = Code::kOk;
  std::string error;
  v1::ResponseHead head;
  std::string body;
  /// Set when the replica streams (head.streaming()): the chunks arrive here; cancelling it
  /// cancels the request on the replica.
  std::shared_ptr<rpc::ChunkQueue> stream;
};
using RouteCallback = std::function<void(RouteResult&&)>;

/// Routes requests of many deployments to their replicas with power-of-two-choices over the
/// queue lengths it caches per replica, honouring each replica's max_ongoing_requests and
/// the replica-side rejection protocol; retries with backoff when every candidate is full and
/// when a replica goes away before accepting. Replicas on `local_node_id` are preferred: the
/// two choices are drawn from them while one of them has room, from every replica otherwise.
/// While an available deployment has no replica (not yet known, scaled to zero), requests
/// wait in the router and are sent as soon as UpdateTargets brings one.
///
/// Model multiplexing (spec §9.2): a request with a multiplexed model id goes, for its
/// matching timeout (uniform in [T, 2T], T = $RAY_SERVE_MULTIPLEXED_MODEL_ID_MATCHING_TIMEOUT_S,
/// default 1 s), only to replicas whose RunningReplica.multiplexed_model_ids hold that model
/// (waiting while they are full). When none holds it, one request at a time per model goes to
/// the replicas holding the fewest models (the others wait for it to be reported); after the
/// timeout, the fewest-models replicas, then any replica. Power of two choices applies among
/// the candidates. $SERVE_MULTIPLEXED_ROUTING=0 (for comparisons) ignores model ids.
/// Not thread-safe: all calls on `executor`.
class Router {
 public:
  explicit Router(boost::asio::any_io_executor executor, std::string local_node_id = "");
  ~Router();

  /// Starts pushing autoscaling metrics (spec §6.1) for the deployments whose targets carry
  /// `autoscaling`, and recording the router's Prometheus metrics (RouterMetrics, actor
  /// `options.source`) unless metrics are disabled. Call once, before the first UpdateTargets.
  void EnableMetrics(MetricsOptions options);

  /// Replaces the replica set of `deployment_key` ("app#deployment") with `targets`.
  void UpdateTargets(const std::string& deployment_key, const v1::DeploymentTargets& targets);

  /// Sends `head` + `body` to a replica of `deployment_key`; `done` runs once with the outcome.
  /// Requests wait until a replica is free; at most the deployment's max_queued_requests
  /// (when >= 0) may wait in this router, beyond that they fail with kBackPressure. Returns an
  /// id for Cancel().
  uint64_t Route(const std::string& deployment_key, v1::RequestHead head, std::string body,
                 RouteCallback done);

  /// Gives up on request `id`: a queued request is dropped, one already sent is cancelled on
  /// its replica (kCancel). `done` runs with kCancelled unless it already ran.
  void Cancel(uint64_t id);

  /// Number of replicas known for `deployment_key`.
  size_t NumReplicas(const std::string& deployment_key) const;

 private:
  /// One routed request, from Route() until `done` ran.
  struct Pending {
    uint64_t id = 0;
    std::string key;  // deployment key
    v1::RequestHead head;
    std::string payload;  // encoded envelope, reused across retries
    RouteCallback done;
    bool finished = false;
    std::weak_ptr<ReplicaConnection> sent_to;  // set while a replica has it
    bool started = false;  // the replica accepted it (kAccepted): never routed again
    // Multiplexing: until when only replicas holding the model are candidates, and whether this
    // request is the one bringing its model to a fewest-models replica.
    std::chrono::steady_clock::time_point match_deadline;
    bool fallback_owner = false;
    std::unordered_map<uint64_t, std::weak_ptr<Pending>>* live = nullptr;

    void Finish(RouteResult&& r) {
      if (finished) return;
      finished = true;
      if (live) live->erase(id);
      auto cb = std::move(done);
      cb(std::move(r));
    }
  };
  struct ReplicaEntry {
    v1::RunningReplica info;
    std::shared_ptr<ReplicaConnection> conn;
  };
  struct DeploymentEntry {
    bool available = true;
    bool known = false;
    int max_queued_requests = -1;
    std::vector<ReplicaEntry> replicas;
    std::deque<std::shared_ptr<Pending>> queue;  // waiting for a free replica
    std::unique_ptr<boost::asio::steady_timer> backoff;
    int backoff_attempt = 0;
    /// Models without a holder that one request is being sent to the fewest-models replicas
    /// for (the others wait until it is reported or their timeout ends).
    std::set<std::string> fallback_models;
  };

  void Drain(const std::string& key);
  void ScheduleRetry(const std::string& key);
  void Dispatch(const std::string& key, std::shared_ptr<Pending> p, ReplicaEntry& replica);
  ReplicaEntry* Pick(DeploymentEntry& d);
  /// Pick for `p`: by its multiplexed model id when it has one, else Pick(d) (spec §9.2;
  /// defined in multiplex_routing.cc).
  ReplicaEntry* PickFor(DeploymentEntry& d, Pending& p);
  /// Power of two choices among `n` replicas: d.replicas[idx[k]], or d.replicas[k] when `idx`
  /// is null. nullptr when both picks are full.
  ReplicaEntry* PickAmong(DeploymentEntry& d, size_t n, const size_t* idx);

  boost::asio::any_io_executor executor_;
  std::string local_node_id_;
  std::unordered_map<std::string, DeploymentEntry> deployments_;
  std::unordered_map<std::string, std::shared_ptr<ReplicaConnection>> connections_;  // by address
  // Connections of replicas that left every replica set but still have requests in flight;
  // closed once those finish (dropping them would drop their callers).
  std::vector<std::shared_ptr<ReplicaConnection>> retiring_;
  void PurgeRetiring();
  /// The load of `key` as the metrics reporter records it.
  LoadSample SampleLoad(const std::string& key) const;
  std::mt19937 rng_;
  std::chrono::steady_clock::duration match_timeout_;  // T of the multiplexing rules
  bool model_aware_ = true;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::weak_ptr<Pending>> live_;  // by id, until finished
  std::unique_ptr<MetricsReporter> metrics_;  // last: destroyed first (it samples the rest)
  std::unique_ptr<RouterMetrics> serve_metrics_;
};

/// Long-polls the controller for `keys` on its own thread and hands each update to
/// `on_update`, which is posted onto `executor`. Stops when destroyed.
class LongPollClient {
 public:
  using OnUpdate = std::function<void(const v1::Update&)>;
  LongPollClient(std::string controller_address, boost::asio::any_io_executor executor,
                 OnUpdate on_update);
  ~LongPollClient();
  /// Adds keys to watch (takes effect at the next poll).
  void Watch(const std::string& key);

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace serve::router
