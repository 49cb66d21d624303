#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <unordered_map>

#include "metrics/registry.h"

namespace serve::replica {

/// A replica's metrics (spec §10, replica): requests, errors and processing latency per route,
/// requests being processed, and one start. Tagged deployment, replica, application.
/// Thread-safe. Records nothing when metrics are disabled.
class ReplicaMetrics {
 public:
  ReplicaMetrics(std::string app, std::string deployment, std::string replica_id);

  /// Counts this replica's start (serve_deployment_replica_starts).
  void Started();
  void SetProcessing(int n);
  void RequestFinished(const std::string& route, bool error,
                       std::chrono::steady_clock::time_point start);

 private:
  struct Series {
    prometheus::Counter* requests;
    prometheus::Counter* errors;
    prometheus::Histogram* latency;
  };
  bool enabled_;
  std::string app_, deployment_, replica_;
  prometheus::Gauge* processing_ = nullptr;
  std::mutex mu_;
  std::unordered_map<std::string, Series> by_route_;
};

}  // namespace serve::replica
