#include "replica/replica_metrics.h"

namespace serve::replica {
namespace {
const std::vector<std::string> kReplicaTags = {"deployment", "replica", "application"};
const std::vector<std::string> kRouteTags = {"deployment", "replica", "route", "application"};
}  // namespace

ReplicaMetrics::ReplicaMetrics(std::string app, std::string deployment, std::string replica_id)
    : enabled_(metrics::Enabled()),
      app_(std::move(app)),
      deployment_(std::move(deployment)),
      replica_(std::move(replica_id)) {
  if (!enabled_) return;
  static auto& processing =
      *new metrics::GaugeFamily("serve_replica_processing_queries",
                                "The current number of queries being processed.", kReplicaTags);
  processing_ = &processing.With({deployment_, replica_, app_});
}

void ReplicaMetrics::Started() {
  if (!enabled_) return;
  static auto& starts = *new metrics::CounterFamily(
      "serve_deployment_replica_starts",
      "The number of times this replica has been restarted due to failure.", kReplicaTags);
  starts.With({deployment_, replica_, app_}).Increment();
}

void ReplicaMetrics::SetProcessing(int n) {
  if (enabled_) processing_->Set(n);
}

void ReplicaMetrics::RequestFinished(const std::string& route, bool error,
                                     std::chrono::steady_clock::time_point start) {
  if (!enabled_) return;
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  Series s;
  {
    std::lock_guard lock(mu_);
    auto [it, added] = by_route_.try_emplace(route);
    if (added) {
      static auto& requests = *new metrics::CounterFamily(
          "serve_deployment_request_counter",
          "The number of queries that have been processed in this replica.", kRouteTags);
      static auto& errors = *new metrics::CounterFamily(
          "serve_deployment_error_counter",
          "The number of exceptions that have occurred in this replica.", kRouteTags);
      static auto& latency = *new metrics::HistogramFamily(
          "serve_deployment_processing_latency_ms", "The latency for queries to be processed.",
          kRouteTags, metrics::RequestLatencyBucketsMs());
      std::vector<std::string> tags = {deployment_, replica_, route, app_};
      it->second = Series{&requests.With(tags), &errors.With(tags), &latency.With(tags)};
    }
    s = it->second;
  }
  s.requests->Increment();
  if (error) s.errors->Increment();
  s.latency->Observe(ms);
}

}  // namespace serve::replica
