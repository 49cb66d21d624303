#pragma once

#include <memory>
#include <string>

#include "metrics/export.h"

namespace serve::node {

/// The node's Prometheus endpoint: GET /metrics (and /) answers `store`'s merged text, on its
/// own I/O thread.
class MetricsEndpoint {
 public:
  /// Binds host:port (0: any free port). Throws std::runtime_error naming the address and the
  /// reason when it cannot.
  MetricsEndpoint(metrics::NodeStore& store, const std::string& host, int port);
  ~MetricsEndpoint();
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  /// "host:port" as bound.
  const std::string& address() const { return address_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string address_;
};

/// Adds (`add`) or removes `target` ("host:port") in <session>/prom_metrics_service_discovery.json,
/// Prometheus' file-based service discovery format as Ray writes it:
/// [{"labels": {"job": "ray"}, "targets": [...]}]. Safe against concurrent writers (flock).
void UpdateServiceDiscovery(const std::string& session_dir, const std::string& target, bool add);

}  // namespace serve::node
