// serve/metrics.h: custom metrics in libserve.so's registry (metrics::Default() of this image),
// which the replica pushes with its own (sdk::MetricsText()).

#include <serve/context.h>
#include <serve/metrics.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>

#include "metrics/registry.h"
#include "sdk/host.h"

namespace serve::metrics {
namespace {

const std::vector<std::string> kReserved = {"deployment", "replica", "application", "route"};

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out.empty() ? "none" : out;
}

}  // namespace

struct Metric::State {
  Kind kind;
  std::string name;
  std::vector<std::string> tag_keys;
  std::vector<double> boundaries;
  std::mutex mu;  // guards defaults
  Tags defaults;
  prometheus::Family<prometheus::Counter>* counter = nullptr;
  prometheus::Family<prometheus::Gauge>* gauge = nullptr;
  prometheus::Family<prometheus::Histogram>* histogram = nullptr;

  // The labels of one call: defaults, then `tags`, then the replica's automatic tags.
  prometheus::Labels Labels(const Tags& tags) {
    prometheus::Labels labels;
    {
      std::lock_guard lock(mu);
      labels.insert(defaults.begin(), defaults.end());
    }
    for (const auto& [k, v] : tags) {
      if (std::find(tag_keys.begin(), tag_keys.end(), k) == tag_keys.end()) {
        throw std::invalid_argument("metric '" + name + "': unknown tag key '" + k +
                                    "' (declared tag keys: " + Join(tag_keys) + ")");
      }
      labels[k] = v;
    }
    for (const auto& k : tag_keys) {
      if (!labels.count(k)) {
        throw std::invalid_argument("metric '" + name + "': missing value for tag key '" + k +
                                    "' (give it in the call or with set_default_tags)");
      }
    }
    try {
      const ReplicaContext& rc = get_replica_context();
      labels["deployment"] = rc.deployment;
      labels["replica"] = rc.replica_id;
      labels["application"] = rc.app_name;
    } catch (const std::logic_error&) {
      // Outside a replica: no automatic tags.
    }
    if (const sdk::RequestContext* req = sdk::CurrentRequestContext(); req && !req->route.empty()) {
      labels["route"] = req->route;
    }
    return labels;
  }
};

Metric::Metric(Kind kind, const std::string& name, const std::string& description,
               const std::vector<std::string>& tag_keys, const std::vector<double>& boundaries)
    : state_(std::make_shared<State>()) {
  CheckName(name, "metric name");
  for (const auto& k : tag_keys) {
    CheckName(k, "metric '" + name + "': tag key");
    if (std::find(kReserved.begin(), kReserved.end(), k) != kReserved.end()) {
      throw std::invalid_argument("metric '" + name + "': tag key '" + k +
                                  "' is reserved (serve adds it automatically)");
    }
  }
  state_->kind = kind;
  state_->name = name;
  state_->tag_keys = tag_keys;
  state_->boundaries = boundaries;
  std::string exported =
      ExportedName(name, kind == Kind::kCounter ? prometheus::MetricType::Counter
                         : kind == Kind::kGauge ? prometheus::MetricType::Gauge
                                                : prometheus::MetricType::Histogram);
  std::string help = description.empty() ? name : description;
  try {
    switch (kind) {
      case Kind::kCounter:
        state_->counter = &prometheus::BuildCounter().Name(exported).Help(help).Register(Default());
        break;
      case Kind::kGauge:
        state_->gauge = &prometheus::BuildGauge().Name(exported).Help(help).Register(Default());
        break;
      case Kind::kHistogram:
        state_->histogram =
            &prometheus::BuildHistogram().Name(exported).Help(help).Register(Default());
        break;
    }
  } catch (const std::exception& e) {
    throw std::invalid_argument("metric '" + name + "': cannot register it (" + e.what() +
                                "); is the name used by a metric of another type?");
  }
}

Metric::~Metric() = default;

void Metric::set_default_tags(const Tags& tags) {
  for (const auto& [k, v] : tags) {
    if (std::find(state_->tag_keys.begin(), state_->tag_keys.end(), k) == state_->tag_keys.end()) {
      throw std::invalid_argument("metric '" + state_->name + "': unknown tag key '" + k +
                                  "' in default tags (declared tag keys: " +
                                  Join(state_->tag_keys) + ")");
    }
  }
  std::lock_guard lock(state_->mu);
  state_->defaults = tags;
}

const std::string& Metric::name() const { return state_->name; }
const std::vector<std::string>& Metric::tag_keys() const { return state_->tag_keys; }

Counter::Counter(const std::string& name, const std::string& description,
                 const std::vector<std::string>& tag_keys)
    : Metric(Kind::kCounter, name, description, tag_keys, {}) {}

void Counter::inc(double value, const Tags& tags) {
  if (!(value > 0)) {
    throw std::invalid_argument("metric '" + state_->name + "': inc() needs a value > 0");
  }
  auto labels = state_->Labels(tags);
  if (Enabled()) state_->counter->Add(labels).Increment(value);
}

Gauge::Gauge(const std::string& name, const std::string& description,
             const std::vector<std::string>& tag_keys)
    : Metric(Kind::kGauge, name, description, tag_keys, {}) {}

void Gauge::set(double value, const Tags& tags) {
  auto labels = state_->Labels(tags);
  if (Enabled()) state_->gauge->Add(labels).Set(value);
}

namespace {
std::vector<double> CheckedBoundaries(const std::string& name, const std::vector<double>& b) {
  if (b.empty()) throw std::invalid_argument("metric '" + name + "': boundaries are empty");
  for (size_t i = 0; i < b.size(); ++i) {
    if (!(b[i] > 0) || (i > 0 && !(b[i] > b[i - 1]))) {
      throw std::invalid_argument("metric '" + name +
                                  "': boundaries must be positive and strictly increasing");
    }
  }
  return b;
}
}  // namespace

Histogram::Histogram(const std::string& name, const std::string& description,
                     const std::vector<double>& boundaries, const std::vector<std::string>& tag_keys)
    : Metric(Kind::kHistogram, name, description, tag_keys, CheckedBoundaries(name, boundaries)) {}

void Histogram::observe(double value, const Tags& tags) {
  auto labels = state_->Labels(tags);
  if (Enabled()) state_->histogram->Add(labels, state_->boundaries).Observe(value);
}

}  // namespace serve::metrics

namespace serve::sdk {

std::string MetricsText() { return metrics::Serialize(metrics::Default()); }

}  // namespace serve::sdk
