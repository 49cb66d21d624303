#pragma once

// The controller's view of autoscaling metrics (spec §6.1, §6.2): the newest report per
// handle and per replica, per deployment, and the total load the policy scales on.

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace serve::autoscaler {

/// One router's report for one deployment (spec §6.1 HandleMetricReport).
struct HandleMetrics {
  std::string handle_id;  ///< unique per router instance
  /// The process hosting the router: "proxy:<node_id>", "replica:<replica_id>" or
  /// "client:<pid>".
  std::string source;
  double queued = 0;  ///< aggregated queued requests (not yet sent to a replica)
  /// replica id -> aggregated in-flight requests sent by this handle.
  std::map<std::string, double> running_by_replica;
  double timestamp_s = 0;  ///< when the sender aggregated (unix seconds; newest wins)
};

/// One replica's report of its own aggregated in-flight requests.
struct ReplicaMetrics {
  std::string replica_id;
  double running = 0;
  double timestamp_s = 0;  ///< when the replica aggregated (unix seconds; newest wins)
};

/// The newest report per handle and per replica, per deployment key ("app#deployment").
/// Not thread-safe (the controller calls it under its lock). `received_s` values are the
/// controller's monotonic clock.
class MetricsStore {
 public:
  /// Keeps `m` unless this handle already has a report with a timestamp_s >= m.timestamp_s.
  void RecordHandle(const std::string& deployment_key, HandleMetrics m, double received_s);
  /// Keeps `m` unless this replica already has a report with a timestamp_s >= m.timestamp_s.
  void RecordReplica(const std::string& deployment_key, ReplicaMetrics m, double received_s);
  /// A stopped replica: drops its own reports, and those of handles whose source is
  /// "replica:<replica_id>".
  void DropReplica(const std::string& replica_id);
  /// A dead proxy/replica/client process: drops the reports of the handles it hosted.
  void DropSource(const std::string& source);
  void DropDeployment(const std::string& deployment_key);
  /// Drops handle reports not refreshed for max(2 * metrics_interval_s, 10) s, where
  /// `metrics_interval_s` gives that interval for a deployment key.
  void DropStale(
      double now_s,
      const std::function<double(const std::string& deployment_key)>& metrics_interval_s);
  /// Total load (spec §6.2) over `running_replicas` (replica ids): the replicas' own values
  /// when their sum is positive, plus every handle's queued, plus (without replica-side data)
  /// each handle's running on those replicas.
  double TotalRequests(const std::string& deployment_key,
                       const std::vector<std::string>& running_replicas) const;
  /// Handles with a report kept for `deployment_key`.
  size_t NumHandles(const std::string& deployment_key) const;

 private:
  struct HandleEntry {
    HandleMetrics metrics;
    double received_s = 0;
  };
  struct ReplicaEntry {
    ReplicaMetrics metrics;
    double received_s = 0;
  };
  struct Deployment {
    std::map<std::string, HandleEntry> handles;    // by handle_id
    std::map<std::string, ReplicaEntry> replicas;  // by replica_id
  };

  /// Erases deployments left with no reports.
  void Prune();

  std::map<std::string, Deployment> deployments_;
};

}  // namespace serve::autoscaler
