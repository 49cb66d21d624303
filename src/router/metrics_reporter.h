#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "serve/v1/controller.pb.h"

namespace serve::router {

/// Points of one value over time, kept over a look-back window and aggregated with an
/// autoscaling `aggregation_function`: "mean" (the default, also for unknown names), "max" or
/// "min". Times are in any monotonic unit of seconds.
class MetricsWindow {
 public:
  void Add(double t, double value) { points_.emplace_back(t, value); }
  /// Drops the points older than `start`.
  void Prune(double start);
  size_t size() const { return points_.size(); }
  /// nullopt when there is no point. "mean" divides the sum by `mean_divisor` when it is
  /// larger than the number of points (points missing from a shorter series count as 0).
  std::optional<double> Aggregate(const std::string& function, size_t mean_divisor = 0) const;

 private:
  std::deque<std::pair<double, double>> points_;
};

/// Who a router reports as and how often (spec §6.1).
struct MetricsOptions {
  std::string controller_address;  ///< host:port of the Controller gRPC service
  /// "proxy:<node_id>" | "replica:<replica_id>" | "client:<pid>".
  std::string source;
  std::string handle_id;           ///< "": a random id for this router
  /// Recording period; <= 0: $RAY_SERVE_HANDLE_AUTOSCALING_METRIC_RECORD_INTERVAL_S (0.5).
  /// Capped at each deployment's metrics_interval_s.
  double record_interval_s = 0;
  /// Push period; <= 0: $RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S (legacy
  /// $RAY_SERVE_HANDLE_METRIC_PUSH_INTERVAL_S) when set, else each deployment's
  /// metrics_interval_s.
  double push_interval_s = 0;
};

/// A router's current load for one deployment.
struct LoadSample {
  int queued = 0;            ///< requests waiting in the router for a replica
  size_t num_replicas = 0;   ///< replicas in the router's set
  /// Per replica of the set: requests sent to it and not finished.
  std::vector<std::pair<std::string, int>> running;
};

/// Records the load of a router's autoscaling deployments and pushes it to the controller as
/// HandleMetricsBatch (RecordHandleMetrics). Points are taken every record interval and kept
/// for look_back_period_s; each deployment is reported every push interval with the queued
/// and per-replica running counts aggregated over that window; all deployments due are sent
/// in one batch. A push is skipped (and done at a later tick) while the previous one is in
/// flight; failures are ignored (logged once, at debug level). Cold start: while a deployment
/// has no replica, the first request queued pushes at once, and its report carries at least
/// the current queued count. With $RAY_SERVE_COLLECT_AUTOSCALING_METRICS_ON_HANDLE=0 reports
/// carry no running counts (replicas report theirs).
/// Not thread-safe: every call and its timer on `executor` (the router's).
class MetricsReporter {
 public:
  using Sampler = std::function<LoadSample(const std::string& key)>;

  MetricsReporter(boost::asio::any_io_executor executor, MetricsOptions options, Sampler sampler);
  ~MetricsReporter();
  MetricsReporter(const MetricsReporter&) = delete;
  MetricsReporter& operator=(const MetricsReporter&) = delete;

  /// New targets of deployment `key`: starts or stops tracking it per `targets.autoscaling`.
  void OnTargets(const std::string& key, const v1::DeploymentTargets& targets);
  /// A request was queued for `key` while it had no replica.
  void OnQueuedAtZero(const std::string& key);

  const std::string& handle_id() const { return options_.handle_id; }
  const std::string& source() const { return options_.source; }

 private:
  struct Deployment {
    v1::AutoscalingMetricsConfig config;
    MetricsWindow queued;
    std::map<std::string, MetricsWindow> running;  // by replica id
    LoadSample last;
    double next_push = 0;        // steady seconds
    bool cold_pushed = false;    // the immediate push of this period at zero was sent
  };
  struct Shared;

  void Arm();
  void Tick();
  void Record(const std::string& key, Deployment& d, double now);
  v1::HandleMetricsReport MakeReport(const std::string& key, const Deployment& d) const;
  /// Sends a batch of `keys`; false when a push is still in flight.
  bool Push(const std::vector<std::string>& keys);
  double RecordInterval() const;
  double PushInterval(const Deployment& d) const;

  MetricsOptions options_;
  Sampler sampler_;
  bool collect_running_ = true;
  double env_push_interval_s_ = 0;
  std::map<std::string, Deployment> deployments_;
  bool urgent_ = false;  // a cold-start push waits for the one in flight
  boost::asio::steady_timer timer_;
  bool armed_ = false;
  std::shared_ptr<Shared> shared_;  // also held by the push in flight
};

}  // namespace serve::router
