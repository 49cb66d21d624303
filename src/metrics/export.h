#pragma once

// How metrics leave a process (docs/architecture.md, Metrics): every serve process pushes its
// registry as Prometheus text to its node agent (Agent.PushMetrics) every
// $SERVE_METRICS_PUSH_INTERVAL_S (1 s); the agent keeps the last text per process (NodeStore)
// and serves them merged on the node's metrics endpoint.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "serve/v1/agent.grpc.pb.h"

namespace serve::metrics {

/// Pushes Serialize(Default()) (+ `extra()`, e.g. libserve.so's registry) to the agent at
/// $SERVE_AGENT_ADDRESS (set by the agent for its children) every push interval on its own
/// thread, and once more when destroyed. Does nothing when metrics are disabled or the
/// address is unset. Push failures are ignored (the next push carries the same counters).
class Pusher {
 public:
  explicit Pusher(std::string tag, std::function<std::string()> extra = {});
  ~Pusher();
  Pusher(const Pusher&) = delete;
  Pusher& operator=(const Pusher&) = delete;

 private:
  void PushOnce(v1::Agent::Stub& stub);
  std::string tag_;
  std::function<std::string()> extra_;
  std::string address_;
  double interval_s_ = 1;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

/// The agent's store: the last text pushed by each process. A process that has not pushed for
/// `stale_s` (it died, or hangs) is dropped, so dead replicas' series disappear. Thread-safe.
class NodeStore {
 public:
  using Clock = std::chrono::steady_clock;
  explicit NodeStore(double stale_s) : stale_(std::chrono::duration<double>(stale_s)) {}
  void Put(int pid, const std::string& tag, std::string text, Clock::time_point now = Clock::now());
  /// Every live process's metrics merged (MergeText), plus `own` (the agent's registry).
  std::string Text(const std::string& own = "", Clock::time_point now = Clock::now());
  size_t size();

 private:
  struct Entry {
    std::string tag;
    std::string text;
    Clock::time_point at;
  };
  std::chrono::duration<double> stale_;
  std::mutex mu_;
  std::map<int, Entry> by_pid_;
};

/// Stale time of NodeStore: $SERVE_METRICS_STALE_S, default max(10 s, 5 push intervals).
double StaleSeconds();
/// $SERVE_METRICS_PUSH_INTERVAL_S (default 1 s).
double PushIntervalSeconds();

}  // namespace serve::metrics
