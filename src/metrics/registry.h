#pragma once

// Process-side metrics (spec §10): families registered in this image's prometheus-cpp registry
// under Ray's exported names ("ray_" + name, "_total" on counters), with fixed tag keys.
// Every process pushes its registry to its node agent (export.h), which serves them merged.

#include <memory>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace serve::metrics {

/// False when $SERVE_METRICS_ENABLED is "0": instrumentation records nothing and nothing is
/// pushed (for on/off benchmarks). Read once.
bool Enabled();

/// This image's registry (each executable and libserve.so has its own; the replica pushes both).
prometheus::Registry& Default();

/// Ray's DEFAULT_LATENCY_BUCKET_MS, or $RAY_SERVE_REQUEST_LATENCY_BUCKETS_MS when set.
const std::vector<double>& RequestLatencyBucketsMs();
/// Same defaults, or $RAY_SERVE_MODEL_LOAD_LATENCY_BUCKETS_MS when set.
const std::vector<double>& ModelLoadLatencyBucketsMs();
/// Parses "1,2,5.5": strictly increasing positive numbers. Throws std::invalid_argument naming
/// `what` and the reason.
std::vector<double> ParseBuckets(const std::string& text, const std::string& what);

/// Exported name of a metric named `name` in Ray's metrics API: "ray_" + name (+ "_total").
std::string ExportedName(const std::string& name, prometheus::MetricType type);

/// Checks a metric or tag name against Prometheus' rules; throws std::invalid_argument naming
/// `what`.
void CheckName(const std::string& name, const std::string& what);

/// A family with fixed tag keys; With(values) gives the series for values in key order.
/// Thread-safe (prometheus-cpp locks per family).
template <typename T>
class FamilyOf {
 public:
  FamilyOf(const std::string& name, const std::string& help, std::vector<std::string> keys,
           prometheus::Registry& registry = Default());
  T& With(const std::vector<std::string>& values);
  void Remove(const std::vector<std::string>& values);
  const std::vector<std::string>& keys() const { return keys_; }

 protected:
  prometheus::Labels LabelsOf(const std::vector<std::string>& values) const;
  prometheus::Family<T>* family_;
  std::vector<std::string> keys_;
};

using CounterFamily = FamilyOf<prometheus::Counter>;
using GaugeFamily = FamilyOf<prometheus::Gauge>;

class HistogramFamily : public FamilyOf<prometheus::Histogram> {
 public:
  HistogramFamily(const std::string& name, const std::string& help, std::vector<std::string> keys,
                  std::vector<double> buckets, prometheus::Registry& registry = Default());
  prometheus::Histogram& With(const std::vector<std::string>& values);
  void Remove(const std::vector<std::string>& values);

 private:
  std::vector<double> buckets_;
};

extern template class FamilyOf<prometheus::Counter>;
extern template class FamilyOf<prometheus::Gauge>;

/// `registry` in Prometheus text format.
std::string Serialize(prometheus::Registry& registry);

/// Concatenates Prometheus texts of several processes into one: every family's HELP and TYPE
/// once (the first seen), followed by the samples of all texts, families in order of first
/// appearance.
std::string MergeText(const std::vector<std::string>& texts);

}  // namespace serve::metrics
