#include "proxy/proxy_metrics.h"

namespace serve::proxy {
namespace {

// The families of one protocol ("http" or "grpc"), with Ray's names.
struct Families {
  explicit Families(const std::string& p, const std::string& P)
      : requests("serve_num_" + p + "_requests", "The number of " + P + " requests processed.",
                 {"route", "method", "application", "status_code"}),
        errors("serve_num_" + p + "_error_requests", "The number of non-OK " + P + " responses.",
               {"route", "error_code", "method", "application"}),
        deployment_errors("serve_num_deployment_" + p + "_error_requests",
                          "The number of non-OK " + P +
                              " responses returned by each deployment.",
                          {"deployment", "error_code", "method", "route", "application"}),
        latency("serve_" + p + "_request_latency_ms",
                "The end-to-end latency of " + P +
                    " requests (measured from the Serve " + P + " proxy).",
                {"method", "route", "application", "status_code"},
                metrics::RequestLatencyBucketsMs()),
        ongoing("serve_num_ongoing_" + p + "_requests",
                "The number of ongoing requests in the " + P + " Proxy.",
                {"node_id", "node_ip_address"}) {}
  metrics::CounterFamily requests;
  metrics::CounterFamily errors;
  metrics::CounterFamily deployment_errors;
  metrics::HistogramFamily latency;
  metrics::GaugeFamily ongoing;
};

Families& FamiliesFor(ProxyMetrics::Protocol protocol) {
  if (protocol == ProxyMetrics::Protocol::kGrpc) {
    static Families grpc("grpc", "gRPC");
    return grpc;
  }
  static Families http("http", "HTTP");
  return http;
}

// Methods are client input: unknown ones share one tag value, so series stay bounded.
const std::string& MethodTag(const std::string& method) {
  static const std::string kMethods[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                         "CONNECT", "OPTIONS", "TRACE", "PATCH"};
  static const std::string kOther = "OTHER";
  for (const std::string& m : kMethods) {
    if (m == method) return m;
  }
  return kOther;
}

}  // namespace

ProxyMetrics::ProxyMetrics(const std::string& node_id, const std::string& node_ip,
                           Protocol protocol)
    : enabled_(metrics::Enabled()), protocol_(protocol) {
  if (!enabled_) return;
  // Families exist from the start, so a scrape shows them before the first request.
  ongoing_ = &FamiliesFor(protocol_).ongoing.With({node_id, node_ip});
}

void ProxyMetrics::RequestStarted() {
  if (enabled_) ongoing_->Increment();
}

void ProxyMetrics::RequestFinished(const std::string& raw_method, const std::string& route,
                                   const std::string& application, const std::string& deployment,
                                   int status, std::chrono::steady_clock::time_point start) {
  if (!enabled_) return;
  Record(MethodTag(raw_method), route, application, deployment, std::to_string(status),
         status >= 400, start);
}

void ProxyMetrics::Record(const std::string& method, const std::string& route,
                          const std::string& application, const std::string& deployment,
                          const std::string& code, bool error,
                          std::chrono::steady_clock::time_point start) {
  if (!enabled_) return;
  ongoing_->Decrement();
  Families& f = FamiliesFor(protocol_);
  std::string key;
  key.reserve(route.size() + method.size() + application.size() + deployment.size() + 8);
  key.append(route).push_back('\0');
  key.append(method).push_back('\0');
  key.append(application).push_back('\0');
  key.append(deployment).push_back('\0');
  key.append(code);
  auto [it, added] = series_.try_emplace(std::move(key));
  Series& s = it->second;
  if (added) {
    s.requests = &f.requests.With({route, method, application, code});
    s.latency = &f.latency.With({method, route, application, code});
    if (error) {
      s.errors = &f.errors.With({route, code, method, application});
      s.deployment_errors = &f.deployment_errors.With({deployment, code, method, route, application});
    }
  }
  s.requests->Increment();
  s.latency->Observe(
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  if (s.errors) s.errors->Increment();
  if (s.deployment_errors) s.deployment_errors->Increment();
}

}  // namespace serve::proxy
