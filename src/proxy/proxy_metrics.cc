#include "proxy/proxy_metrics.h"

namespace serve::proxy {
namespace {

metrics::CounterFamily& Requests() {
  static metrics::CounterFamily f("serve_num_http_requests", "The number of HTTP requests processed.",
                                  {"route", "method", "application", "status_code"});
  return f;
}
metrics::CounterFamily& Errors() {
  static metrics::CounterFamily f("serve_num_http_error_requests",
                                  "The number of non-200 HTTP responses.",
                                  {"route", "error_code", "method", "application"});
  return f;
}
metrics::CounterFamily& DeploymentErrors() {
  static metrics::CounterFamily f("serve_num_deployment_http_error_requests",
                                  "The number of non-200 HTTP responses returned by each deployment.",
                                  {"deployment", "error_code", "method", "route", "application"});
  return f;
}
metrics::HistogramFamily& Latency() {
  static metrics::HistogramFamily f(
      "serve_http_request_latency_ms",
      "The end-to-end latency of HTTP requests (measured from the Serve HTTP proxy).",
      {"method", "route", "application", "status_code"}, metrics::RequestLatencyBucketsMs());
  return f;
}

// Methods are client input: unknown ones share one tag value, so series stay bounded.
const std::string& MethodTag(const std::string& method) {
  static const std::string kMethods[] = {"GET", "HEAD", "POST", "PUT", "DELETE",
                                         "CONNECT", "OPTIONS", "TRACE", "PATCH"};
  static const std::string kOther = "OTHER";
  for (const std::string& m : kMethods) {
    if (m == method) return m;
  }
  return kOther;
}

}  // namespace

ProxyMetrics::ProxyMetrics(const std::string& node_id, const std::string& node_ip)
    : enabled_(metrics::Enabled()) {
  if (!enabled_) return;
  static metrics::GaugeFamily ongoing("serve_num_ongoing_http_requests",
                                      "The number of ongoing requests in the HTTP Proxy.",
                                      {"node_id", "node_ip_address"});
  ongoing_ = &ongoing.With({node_id, node_ip});
  // Families exist from the start, so a scrape shows them before the first request.
  Requests();
  Errors();
  DeploymentErrors();
  Latency();
}

void ProxyMetrics::RequestStarted() {
  if (enabled_) ongoing_->Increment();
}

void ProxyMetrics::RequestFinished(const std::string& raw_method, const std::string& route,
                                   const std::string& application, const std::string& deployment,
                                   int status, std::chrono::steady_clock::time_point start) {
  if (!enabled_) return;
  ongoing_->Decrement();
  const std::string& method = MethodTag(raw_method);
  std::string code = std::to_string(status);
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
    s.requests = &Requests().With({route, method, application, code});
    s.latency = &Latency().With({method, route, application, code});
    if (status >= 400) {
      s.errors = &Errors().With({route, code, method, application});
      s.deployment_errors = &DeploymentErrors().With({deployment, code, method, route, application});
    }
  }
  s.requests->Increment();
  s.latency->Observe(
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  if (s.errors) s.errors->Increment();
  if (s.deployment_errors) s.deployment_errors->Increment();
}

}  // namespace serve::proxy
