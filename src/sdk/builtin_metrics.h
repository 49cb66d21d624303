#pragma once

// Built-in metrics recorded by the SDK itself (spec §10: batching, multiplexing), in
// libserve.so's registry, tagged with the replica's deployment, replica and application.
// No-ops when metrics are disabled. Thread-safe.

#include <cstddef>
#include <string>

namespace serve::sdk::builtin {

void MultiplexGetModel();
void MultiplexLoaded(const std::string& model_id, double load_ms);
void MultiplexUnloaded(const std::string& model_id, double unload_ms);
void MultiplexNumModels(std::size_t n);

/// A batch of `size` (total weight) out of `max_size` left the queue after waiting `wait_ms`;
/// `queue_length` items are still queued.
void BatchLaunched(const std::string& function_name, double wait_ms, std::size_t size,
                   int max_size, std::size_t queue_length);
void BatchExecuted(const std::string& function_name, double execution_ms);

}  // namespace serve::sdk::builtin
