#pragma once

// Custom application metrics (Ray Serve's `ray.serve.metrics`), exported in Prometheus format
// with the built-in ones on the node's metrics endpoint:
//
//   serve::metrics::Counter requests("my_requests", "Requests by model.", {"model"});
//   requests.set_default_tags({{"model", "default"}});
//   requests.inc();                        // ray_my_requests_total{model="default",...} 1
//   requests.inc(1, {{"model", "resnet"}});
//
// Inside a replica every series is also tagged with `deployment`, `replica` and
// `application`, and with `route` while a request is being served; those four tag keys are
// reserved. Names follow Ray: the exported name is "ray_" + name, plus "_total" for counters.
// Invalid use throws std::invalid_argument naming the metric and the tag: a tag key not
// declared in `tag_keys`, a declared key with neither a default nor a per-call value, a
// reserved or malformed key, a malformed name, or a name registered as another type.
// Metrics are cheap to keep and thread-safe; construct them once (e.g. in the deployment's
// constructor). Constructing one with the name of an existing metric of the same type shares
// its series. Nothing is recorded when $SERVE_METRICS_ENABLED is 0.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <serve/version.h>

namespace serve::metrics {

using Tags = std::map<std::string, std::string>;

class SERVE_EXPORT Metric {
 public:
  virtual ~Metric();
  /// Tag values used when a call does not give them. Throws std::invalid_argument for a key
  /// not in tag_keys.
  void set_default_tags(const Tags& tags);
  const std::string& name() const;
  const std::vector<std::string>& tag_keys() const;

  struct State;  ///< Implementation detail.

 protected:
  enum class Kind { kCounter, kGauge, kHistogram };
  Metric(Kind kind, const std::string& name, const std::string& description,
         const std::vector<std::string>& tag_keys, const std::vector<double>& boundaries);
  std::shared_ptr<State> state_;
};

/// Monotonically increasing count.
class SERVE_EXPORT Counter : public Metric {
 public:
  explicit Counter(const std::string& name, const std::string& description = "",
                   const std::vector<std::string>& tag_keys = {});
  /// Adds `value` (> 0; throws std::invalid_argument otherwise).
  void inc(double value = 1.0, const Tags& tags = {});
};

/// A value that goes up and down.
class SERVE_EXPORT Gauge : public Metric {
 public:
  explicit Gauge(const std::string& name, const std::string& description = "",
                 const std::vector<std::string>& tag_keys = {});
  void set(double value, const Tags& tags = {});
};

/// Distribution over `boundaries` (strictly increasing, positive; the last bucket is +Inf).
class SERVE_EXPORT Histogram : public Metric {
 public:
  Histogram(const std::string& name, const std::string& description,
            const std::vector<double>& boundaries, const std::vector<std::string>& tag_keys = {});
  void observe(double value, const Tags& tags = {});
};

}  // namespace serve::metrics
