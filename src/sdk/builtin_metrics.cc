#include "sdk/builtin_metrics.h"

#include <serve/context.h>

#include <stdexcept>
#include <vector>

#include "metrics/registry.h"

namespace serve::sdk::builtin {
namespace {

using Tags = std::vector<std::string>;
const Tags kReplicaKeys = {"deployment", "replica", "application"};

// deployment, replica, application of this replica ("" outside one), then `extra`.
Tags With(std::initializer_list<std::string> extra) {
  Tags t = {"", "", ""};
  try {
    const ReplicaContext& rc = get_replica_context();
    t = {rc.deployment, rc.replica_id, rc.app_name};
  } catch (const std::logic_error&) {
  }
  t.insert(t.end(), extra);
  return t;
}

Tags Keys(std::initializer_list<std::string> extra) {
  Tags t = kReplicaKeys;
  t.insert(t.end(), extra);
  return t;
}

const std::vector<double> kBatchSizeBuckets = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
const std::vector<double> kPercentBuckets = {10, 20, 30, 40, 50, 60, 70, 80, 90, 100};

metrics::GaugeFamily& RegisteredModel() {
  static auto& f = *new metrics::GaugeFamily(
      "serve_registered_multiplexed_model_id",
      "The multiplexed model ID registered on the current replica.", Keys({"model_id"}));
  return f;
}

}  // namespace

void MultiplexGetModel() {
  if (!metrics::Enabled()) return;
  static auto& f =
      *new metrics::CounterFamily("serve_multiplexed_get_model_requests_counter",
                                  "The number of calls to get a multiplexed model.", Keys({}));
  f.With(With({})).Increment();
}

void MultiplexLoaded(const std::string& model_id, double load_ms) {
  if (!metrics::Enabled()) return;
  static auto& loads = *new metrics::CounterFamily(
      "serve_multiplexed_models_load_counter",
      "The number of times models loaded on the current replica.", Keys({}));
  static auto& latency = *new metrics::HistogramFamily(
      "serve_multiplexed_model_load_latency_ms", "The time it takes to load a model.", Keys({}),
      metrics::ModelLoadLatencyBucketsMs());
  loads.With(With({})).Increment();
  latency.With(With({})).Observe(load_ms);
  RegisteredModel().With(With({model_id})).Set(1);
}

void MultiplexUnloaded(const std::string& model_id, double unload_ms) {
  if (!metrics::Enabled()) return;
  static auto& unloads = *new metrics::CounterFamily(
      "serve_multiplexed_models_unload_counter",
      "The number of times models unloaded on the current replica.", Keys({}));
  static auto& latency = *new metrics::HistogramFamily(
      "serve_multiplexed_model_unload_latency_ms", "The time it takes to unload a model.", Keys({}),
      metrics::ModelLoadLatencyBucketsMs());
  unloads.With(With({})).Increment();
  latency.With(With({})).Observe(unload_ms);
  RegisteredModel().Remove(With({model_id}));
}

void MultiplexNumModels(std::size_t n) {
  if (!metrics::Enabled()) return;
  static auto& f =
      *new metrics::GaugeFamily("serve_num_multiplexed_models",
                                "The number of models loaded on the current replica.", Keys({}));
  f.With(With({})).Set(static_cast<double>(n));
}

void BatchLaunched(const std::string& function_name, double wait_ms, std::size_t size, int max_size,
                   std::size_t queue_length) {
  if (!metrics::Enabled()) return;
  static auto& wait = *new metrics::HistogramFamily(
      "serve_batch_wait_time_ms", "The time a batch waited for its requests.",
      Keys({"function_name"}), metrics::RequestLatencyBucketsMs());
  static auto& utilization = *new metrics::HistogramFamily(
      "serve_batch_utilization_percent", "The batch's size as a percentage of max_batch_size.",
      Keys({"function_name"}), kPercentBuckets);
  static auto& actual =
      *new metrics::HistogramFamily("serve_actual_batch_size", "The number of requests in a batch.",
                                    Keys({"function_name"}), kBatchSizeBuckets);
  static auto& queue = *new metrics::GaugeFamily("serve_batch_queue_length",
                                                 "The number of requests waiting for a batch.",
                                                 Keys({"function_name"}));
  Tags tags = With({function_name});
  wait.With(tags).Observe(wait_ms);
  utilization.With(tags).Observe(100.0 * static_cast<double>(size) / std::max(1, max_size));
  actual.With(tags).Observe(static_cast<double>(size));
  queue.With(tags).Set(static_cast<double>(queue_length));
}

void BatchExecuted(const std::string& function_name, double execution_ms) {
  if (!metrics::Enabled()) return;
  static auto& exec = *new metrics::HistogramFamily(
      "serve_batch_execution_time_ms", "The time a batch took to run.", Keys({"function_name"}),
      metrics::RequestLatencyBucketsMs());
  static auto& processed = *new metrics::CounterFamily(
      "serve_batches_processed", "The number of batches run.", Keys({"function_name"}));
  Tags tags = With({function_name});
  exec.With(tags).Observe(execution_ms);
  processed.With(tags).Increment();
}

}  // namespace serve::sdk::builtin
