#include "router/router_metrics.h"

#include "common/ids.h"
#include "common/util.h"

namespace serve::router {
namespace {

std::pair<std::string, std::string> AppAndDeployment(const std::string& key) {
  auto id = DeploymentId::FromKey(key);
  if (!id) return {"", key};
  return {id->app, id->name};
}

}  // namespace

RouterMetrics::RouterMetrics(boost::asio::any_io_executor executor, std::string actor_id,
                             std::string handle, bool is_handle, Sampler sampler)
    : actor_id_(std::move(actor_id)),
      handle_(std::move(handle)),
      is_handle_(is_handle),
      sampler_(std::move(sampler)),
      timer_(executor),
      interval_(std::max<int64_t>(
          10, static_cast<int64_t>(EnvDouble("RAY_SERVE_METRICS_EXPORT_INTERVAL_MS", 100)))) {
  Arm();
}

RouterMetrics::~RouterMetrics() {
  *alive_ = false;
  timer_.cancel();
}

void RouterMetrics::Arm() {
  timer_.expires_after(interval_);
  timer_.async_wait([this, alive = alive_](boost::system::error_code ec) {
    if (ec || !*alive) return;
    Sample();
    Arm();
  });
}

void RouterMetrics::OnRequest(const std::string& key, const std::string& route) {
  std::string cache_key = key;
  cache_key.push_back('\0');
  cache_key.append(route);
  auto [it, added] = counters_.try_emplace(std::move(cache_key));
  if (added) {
    static auto& router = *new metrics::CounterFamily(
        "serve_num_router_requests", "The number of requests processed by the router.",
        {"deployment", "route", "application", "handle", "actor_id"});
    static auto& handle =
        *new metrics::CounterFamily("serve_handle_request_counter",
                                    "The number of requests processed by this DeploymentHandle.",
                                    {"handle", "deployment", "route", "application"});
    auto [app, deployment] = AppAndDeployment(key);
    it->second.router = &router.With({deployment, route, app, handle_, actor_id_});
    it->second.handle = is_handle_ ? &handle.With({handle_, deployment, route, app}) : nullptr;
  }
  it->second.router->Increment();
  if (it->second.handle) it->second.handle->Increment();
}

std::vector<std::string> RouterMetrics::DeploymentTags(const std::string& key) const {
  auto [app, deployment] = AppAndDeployment(key);
  return {deployment, app, handle_, actor_id_};
}

void RouterMetrics::OnAssigned(const std::string& key, std::chrono::steady_clock::duration waited) {
  auto [it, added] = fulfillment_.try_emplace(key, nullptr);
  if (added) {
    static auto& f = *new metrics::HistogramFamily(
        "serve_request_router_fulfillment_time_ms",
        "The time from a request's arrival at the router until a replica was chosen for it.",
        {"deployment", "application", "handle", "actor_id"}, metrics::RequestLatencyBucketsMs());
    it->second = &f.With(DeploymentTags(key));
  }
  it->second->Observe(std::chrono::duration<double, std::milli>(waited).count());
}

void RouterMetrics::Sample() {
  sampler_([this](const std::string& key, const RouterLoad& load) {
    auto [it, added] = gauges_.try_emplace(key);
    if (added) {
      static auto& queued = *new metrics::GaugeFamily(
          "serve_deployment_queued_queries",
          "The current number of requests to this deployment that have been submitted to a "
          "replica.",
          {"deployment", "application", "handle", "actor_id"});
      static auto& at_replicas = *new metrics::GaugeFamily(
          "serve_num_ongoing_requests_at_replicas",
          "The current number of requests to this deployment that's been assigned and sent to "
          "execute on a replica.",
          {"deployment", "application", "handle", "actor_id"});
      static auto& scheduling = *new metrics::GaugeFamily(
          "serve_num_scheduling_tasks", "The number of request scheduling tasks in the router.",
          {"deployment", "application", "handle", "actor_id"});
      static auto& backoff = *new metrics::GaugeFamily(
          "serve_num_scheduling_tasks_in_backoff",
          "The number of request scheduling tasks in the router that are undergoing backoff.",
          {"deployment", "application", "handle", "actor_id"});
      std::vector<std::string> tags = DeploymentTags(key);
      it->second = Gauges{&queued.With(tags), &at_replicas.With(tags), &scheduling.With(tags),
                          &backoff.With(tags)};
    }
    it->second.queued->Set(load.queued);
    it->second.at_replicas->Set(load.at_replicas);
    it->second.scheduling->Set(load.queued);
    it->second.in_backoff->Set(load.in_backoff ? load.queued : 0);
  });
}

}  // namespace serve::router
