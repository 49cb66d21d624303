#include "metrics/registry.h"

#include <cstdlib>
#include <map>
#include <sstream>
#include <stdexcept>

#include <prometheus/text_serializer.h>

namespace serve::metrics {

bool Enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("SERVE_METRICS_ENABLED");
    return v == nullptr || std::string(v) != "0";
  }();
  return enabled;
}

prometheus::Registry& Default() {
  static auto* registry = new prometheus::Registry();  // never destroyed: used until exit
  return *registry;
}

std::vector<double> ParseBuckets(const std::string& text, const std::string& what) {
  std::vector<double> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    while (used < item.size() && item[used] == ' ') ++used;
    if (used == 0 || used != item.size()) {
      throw std::invalid_argument(what + ": '" + item + "' is not a number");
    }
    if (v <= 0) throw std::invalid_argument(what + ": bucket boundaries must be positive");
    if (!out.empty() && v <= out.back()) {
      throw std::invalid_argument(what + ": bucket boundaries must be strictly increasing");
    }
    out.push_back(v);
  }
  if (out.empty()) throw std::invalid_argument(what + ": no bucket boundaries");
  return out;
}

namespace {
std::vector<double> BucketsFromEnv(const char* var) {
  static const std::vector<double> kDefault = {1,    2,    5,    10,    20,    50,     100,
                                               200,  300,  400,  500,   1000,  2000,   5000,
                                               10000, 60000, 120000, 300000, 600000};
  const char* v = std::getenv(var);
  if (v == nullptr || *v == '\0') return kDefault;
  return ParseBuckets(v, var);
}
}  // namespace

const std::vector<double>& RequestLatencyBucketsMs() {
  static const std::vector<double> b = BucketsFromEnv("RAY_SERVE_REQUEST_LATENCY_BUCKETS_MS");
  return b;
}

const std::vector<double>& ModelLoadLatencyBucketsMs() {
  static const std::vector<double> b = BucketsFromEnv("RAY_SERVE_MODEL_LOAD_LATENCY_BUCKETS_MS");
  return b;
}

std::string ExportedName(const std::string& name, prometheus::MetricType type) {
  std::string out = "ray_" + name;
  if (type == prometheus::MetricType::Counter) out += "_total";
  return out;
}

void CheckName(const std::string& name, const std::string& what) {
  bool ok = !name.empty() && !(name[0] >= '0' && name[0] <= '9');
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_');
  }
  if (!ok) {
    throw std::invalid_argument(what + " '" + name +
                                "' is invalid: use letters, digits and '_', not starting with a "
                                "digit");
  }
}

namespace {
template <typename T>
prometheus::MetricType TypeOf();
template <>
prometheus::MetricType TypeOf<prometheus::Counter>() {
  return prometheus::MetricType::Counter;
}
template <>
prometheus::MetricType TypeOf<prometheus::Gauge>() {
  return prometheus::MetricType::Gauge;
}
template <>
prometheus::MetricType TypeOf<prometheus::Histogram>() {
  return prometheus::MetricType::Histogram;
}

template <typename T>
prometheus::Family<T>& Build(prometheus::Registry& r, const std::string& name,
                             const std::string& help) {
  if constexpr (std::is_same_v<T, prometheus::Counter>) {
    return prometheus::BuildCounter().Name(name).Help(help).Register(r);
  } else if constexpr (std::is_same_v<T, prometheus::Gauge>) {
    return prometheus::BuildGauge().Name(name).Help(help).Register(r);
  } else {
    return prometheus::BuildHistogram().Name(name).Help(help).Register(r);
  }
}
}  // namespace

template <typename T>
FamilyOf<T>::FamilyOf(const std::string& name, const std::string& help,
                      std::vector<std::string> keys, prometheus::Registry& registry)
    : family_(&Build<T>(registry, ExportedName(name, TypeOf<T>()), help)), keys_(std::move(keys)) {}

template <typename T>
prometheus::Labels FamilyOf<T>::LabelsOf(const std::vector<std::string>& values) const {
  if (values.size() != keys_.size()) {
    throw std::invalid_argument("metric tags: expected " + std::to_string(keys_.size()) +
                                " values, got " + std::to_string(values.size()));
  }
  prometheus::Labels labels;
  for (size_t i = 0; i < keys_.size(); ++i) labels.emplace(keys_[i], values[i]);
  return labels;
}

template <typename T>
T& FamilyOf<T>::With(const std::vector<std::string>& values) {
  return family_->Add(LabelsOf(values));
}

template <typename T>
void FamilyOf<T>::Remove(const std::vector<std::string>& values) {
  prometheus::Labels labels = LabelsOf(values);
  if (family_->Has(labels)) family_->Remove(&family_->Add(labels));
}

template class FamilyOf<prometheus::Counter>;
template class FamilyOf<prometheus::Gauge>;
// Histograms need their buckets to create a series: HistogramFamily has its own With/Remove.
template FamilyOf<prometheus::Histogram>::FamilyOf(const std::string&, const std::string&,
                                                   std::vector<std::string>,
                                                   prometheus::Registry&);
template prometheus::Labels FamilyOf<prometheus::Histogram>::LabelsOf(
    const std::vector<std::string>&) const;

HistogramFamily::HistogramFamily(const std::string& name, const std::string& help,
                                 std::vector<std::string> keys, std::vector<double> buckets,
                                 prometheus::Registry& registry)
    : FamilyOf<prometheus::Histogram>(name, help, std::move(keys), registry),
      buckets_(std::move(buckets)) {}

prometheus::Histogram& HistogramFamily::With(const std::vector<std::string>& values) {
  return family_->Add(LabelsOf(values), buckets_);
}

void HistogramFamily::Remove(const std::vector<std::string>& values) {
  prometheus::Labels labels = LabelsOf(values);
  if (family_->Has(labels)) family_->Remove(&family_->Add(labels, buckets_));
}

std::string Serialize(prometheus::Registry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

std::string MergeText(const std::vector<std::string>& texts) {
  struct Family {
    std::string help, type, samples;
  };
  std::vector<std::string> order;
  std::map<std::string, Family> families;
  auto family = [&](const std::string& name) -> Family& {
    auto [it, added] = families.try_emplace(name);
    if (added) order.push_back(name);
    return it->second;
  };
  for (const std::string& text : texts) {
    std::string current;
    size_t pos = 0;
    while (pos < text.size()) {
      size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) nl = text.size();
      std::string line = text.substr(pos, nl - pos);
      pos = nl + 1;
      if (line.empty()) continue;
      bool help = line.rfind("# HELP ", 0) == 0, type = line.rfind("# TYPE ", 0) == 0;
      if (help || type) {
        size_t end = line.find(' ', 7);
        current = line.substr(7, end == std::string::npos ? std::string::npos : end - 7);
        Family& f = family(current);
        std::string& slot = help ? f.help : f.type;
        if (slot.empty()) slot = line;
        continue;
      }
      if (line[0] == '#') continue;
      if (current.empty()) {  // a sample without a header: its own family
        size_t end = line.find_first_of("{ ");
        current = line.substr(0, end);
      }
      family(current).samples.append(line).push_back('\n');
    }
  }
  std::string out;
  for (const std::string& name : order) {
    const Family& f = families[name];
    if (!f.help.empty()) out.append(f.help).push_back('\n');
    if (!f.type.empty()) out.append(f.type).push_back('\n');
    out.append(f.samples);
  }
  return out;
}

}  // namespace serve::metrics
