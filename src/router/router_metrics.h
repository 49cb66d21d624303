#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "metrics/registry.h"

namespace serve::router {

/// Where a deployment's requests are in one router, for the gauges.
struct RouterLoad {
  int queued = 0;       ///< waiting in this router for a replica
  int at_replicas = 0;  ///< sent to replicas and not finished
  bool in_backoff = false;
};

/// A router's metrics (spec §10, router and handle): requests per deployment and route, and
/// gauges of queued requests, requests at replicas and scheduling tasks, sampled every
/// $RAY_SERVE_METRICS_EXPORT_INTERVAL_MS (100 ms). Routers of a replica's handles also count
/// serve_handle_request_counter. Not thread-safe: calls and timer on the router's executor.
class RouterMetrics {
 public:
  using Sampler = std::function<void(
      const std::function<void(const std::string& key, const RouterLoad&)>& visit)>;

  /// `actor_id`: the proxy's node or the replica id; `handle`: this router's handle id.
  RouterMetrics(boost::asio::any_io_executor executor, std::string actor_id, std::string handle,
                bool is_handle, Sampler sampler);
  ~RouterMetrics();
  RouterMetrics(const RouterMetrics&) = delete;
  RouterMetrics& operator=(const RouterMetrics&) = delete;

  /// A request for deployment `key` ("app#deployment") from route prefix `route`.
  void OnRequest(const std::string& key, const std::string& route);

 private:
  struct Gauges {
    prometheus::Gauge* queued;
    prometheus::Gauge* at_replicas;
    prometheus::Gauge* scheduling;
    prometheus::Gauge* in_backoff;
  };
  struct Counters {
    prometheus::Counter* router;
    prometheus::Counter* handle;
  };
  void Arm();
  void Sample();

  std::string actor_id_, handle_;
  bool is_handle_;
  Sampler sampler_;
  boost::asio::steady_timer timer_;
  std::chrono::milliseconds interval_;
  std::unordered_map<std::string, Counters> counters_;  // by key + '\0' + route
  std::unordered_map<std::string, Gauges> gauges_;      // by key
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace serve::router
