#pragma once

#include <chrono>
#include <string>
#include <unordered_map>

#include "metrics/registry.h"

namespace serve::proxy {

/// The proxy's metrics of one protocol (spec §10; docs/metrics.md): requests, errors, latency
/// per route prefix, method, application and status; ongoing requests per node; `*_http_*` or
/// `*_grpc_*`. Not thread-safe: on the proxy's I/O thread. Records nothing when metrics are
/// disabled.
class ProxyMetrics {
 public:
  enum class Protocol { kHttp, kGrpc };
  ProxyMetrics(const std::string& node_id, const std::string& node_ip,
               Protocol protocol = Protocol::kHttp);

  void RequestStarted();
  /// `route` is the matched route prefix ("" when none matched), `deployment` its ingress.
  void RequestFinished(const std::string& method, const std::string& route,
                       const std::string& application, const std::string& deployment, int status,
                       std::chrono::steady_clock::time_point start);
  /// One finished request with its tag values as they are (`method` must be bounded);
  /// `error` counts it in the error counters.
  void Record(const std::string& method, const std::string& route,
              const std::string& application, const std::string& deployment,
              const std::string& code, bool error, std::chrono::steady_clock::time_point start);

 private:
  struct Series {
    prometheus::Counter* requests = nullptr;
    prometheus::Histogram* latency = nullptr;
    prometheus::Counter* errors = nullptr;             // status >= 400 only
    prometheus::Counter* deployment_errors = nullptr;  // status >= 400 only
  };
  bool enabled_;
  Protocol protocol_;
  prometheus::Gauge* ongoing_ = nullptr;
  std::unordered_map<std::string, Series> series_;  // by route, method, app, status
};

}  // namespace serve::proxy
