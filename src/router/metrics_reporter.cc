#include "router/metrics_reporter.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>

#include <spdlog/spdlog.h>

#include "common/util.h"
#include "rpc/grpc_util.h"
#include "serve/v1/controller.grpc.pb.h"

namespace serve::router {
namespace {

constexpr double kDefaultRecordIntervalS = 0.5;
constexpr double kDefaultMetricsIntervalS = 10;
constexpr double kDefaultLookBackS = 30;
constexpr double kMinTickS = 0.005;
constexpr double kPushDeadlineS = 5;

double SteadyNow() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void MetricsWindow::Prune(double start) {
  while (!points_.empty() && points_.front().first < start) points_.pop_front();
}

std::optional<double> MetricsWindow::Aggregate(const std::string& function,
                                               size_t mean_divisor) const {
  if (points_.empty()) return std::nullopt;
  if (function == "max" || function == "min") {
    double out = points_.front().second;
    for (const auto& [t, v] : points_) {
      out = function == "max" ? std::max(out, v) : std::min(out, v);
    }
    return out;
  }
  double sum = 0;
  for (const auto& [t, v] : points_) sum += v;
  return sum / static_cast<double>(std::max(points_.size(), mean_divisor));
}

// State a push in flight shares with the reporter (its callback runs on a gRPC thread).
struct MetricsReporter::Shared {
  struct Call {
    grpc::ClientContext ctx;
    v1::HandleMetricsBatch request;
    v1::Empty reply;
  };
  std::unique_ptr<v1::Controller::Stub> stub;
  std::atomic<bool> in_flight{false};
  std::atomic<bool> error_logged{false};
  std::mutex mu;
  std::shared_ptr<Call> active;  // guarded by mu
};

MetricsReporter::MetricsReporter(boost::asio::any_io_executor executor, MetricsOptions options,
                                 Sampler sampler)
    : options_(std::move(options)),
      sampler_(std::move(sampler)),
      timer_(executor),
      shared_(std::make_shared<Shared>()) {
  if (options_.handle_id.empty()) options_.handle_id = RandomId(16);
  if (options_.record_interval_s <= 0) {
    options_.record_interval_s =
        EnvDouble("RAY_SERVE_HANDLE_AUTOSCALING_METRIC_RECORD_INTERVAL_S", kDefaultRecordIntervalS);
    if (options_.record_interval_s <= 0) options_.record_interval_s = kDefaultRecordIntervalS;
  }
  env_push_interval_s_ = EnvDouble("RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S",
                                   EnvDouble("RAY_SERVE_HANDLE_METRIC_PUSH_INTERVAL_S", 0));
  collect_running_ = EnvDouble("RAY_SERVE_COLLECT_AUTOSCALING_METRICS_ON_HANDLE", 1) != 0;
  shared_->stub = v1::Controller::NewStub(rpc::ChannelTo(options_.controller_address));
}

MetricsReporter::~MetricsReporter() {
  std::lock_guard lock(shared_->mu);
  if (shared_->active) shared_->active->ctx.TryCancel();
}

double MetricsReporter::PushInterval(const Deployment& d) const {
  if (options_.push_interval_s > 0) return options_.push_interval_s;
  if (env_push_interval_s_ > 0) return env_push_interval_s_;
  double interval = d.config.metrics_interval_s();
  return interval > 0 ? interval : kDefaultMetricsIntervalS;
}

double MetricsReporter::RecordInterval() const {
  double interval = options_.record_interval_s;
  for (const auto& [key, d] : deployments_) {
    if (d.config.metrics_interval_s() > 0) {
      interval = std::min(interval, d.config.metrics_interval_s());
    }
    interval = std::min(interval, PushInterval(d));  // a push happens on a tick
  }
  return std::max(interval, kMinTickS);
}

void MetricsReporter::OnTargets(const std::string& key, const v1::DeploymentTargets& targets) {
  if (!targets.has_autoscaling()) {
    deployments_.erase(key);
    return;
  }
  double now = SteadyNow();
  auto [it, fresh] = deployments_.try_emplace(key);
  Deployment& d = it->second;
  d.config = targets.autoscaling();
  if (fresh) d.next_push = now + PushInterval(d);
  std::set<std::string> ids;
  for (const auto& r : targets.replicas()) ids.insert(r.replica_id());
  std::erase_if(d.running, [&](const auto& kv) { return !ids.count(kv.first); });
  if (!ids.empty()) {
    d.cold_pushed = false;
  } else if (!d.cold_pushed && sampler_(key).queued > 0) {
    // Requests were queued before this router knew the deployment autoscales.
    OnQueuedAtZero(key);
  }
  Arm();
}

void MetricsReporter::OnQueuedAtZero(const std::string& key) {
  auto it = deployments_.find(key);
  if (it == deployments_.end() || it->second.cold_pushed) return;
  Deployment& d = it->second;
  double now = SteadyNow();
  Record(key, d, now);
  if (d.last.queued == 0) return;
  d.cold_pushed = true;
  if (Push({key})) {
    d.next_push = now + PushInterval(d);
  } else {
    urgent_ = true;  // sent from the first tick after the push in flight
  }
}

void MetricsReporter::Arm() {
  if (armed_ || deployments_.empty()) return;
  armed_ = true;
  timer_.expires_after(
      std::chrono::microseconds(static_cast<int64_t>(RecordInterval() * 1e6)));
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;  // the reporter may be gone
    armed_ = false;
    Tick();
  });
}

void MetricsReporter::Tick() {
  double now = SteadyNow();
  std::vector<std::string> due;
  for (auto& [key, d] : deployments_) {
    Record(key, d, now);
    bool cold = d.last.num_replicas == 0 && d.last.queued > 0;
    if (now >= d.next_push || (urgent_ && cold)) due.push_back(key);
    // A later burst of requests at zero replicas pushes at once again.
    if (!cold) d.cold_pushed = false;
  }
  if (!due.empty() && Push(due)) {
    urgent_ = false;
    for (const auto& key : due) {
      Deployment& d = deployments_[key];
      d.next_push = now + PushInterval(d);
    }
  }
  Arm();
}

void MetricsReporter::Record(const std::string& key, Deployment& d, double now) {
  d.last = sampler_(key);
  double look_back = d.config.look_back_period_s() > 0 ? d.config.look_back_period_s()
                                                       : kDefaultLookBackS;
  double start = now - look_back;
  d.queued.Add(now, d.last.queued);
  d.queued.Prune(start);
  if (!collect_running_) return;
  std::set<std::string> present;
  for (const auto& [id, n] : d.last.running) {
    present.insert(id);
    d.running[id].Add(now, n);
  }
  for (auto it = d.running.begin(); it != d.running.end();) {
    if (!present.count(it->first)) {
      it = d.running.erase(it);  // the replica left the set
      continue;
    }
    it->second.Prune(start);
    ++it;
  }
}

v1::HandleMetricsReport MetricsReporter::MakeReport(const std::string& key,
                                                    const Deployment& d) const {
  const std::string& fn = d.config.aggregation_function();
  v1::HandleMetricsReport r;
  r.set_deployment_key(key);
  r.set_handle_id(options_.handle_id);
  r.set_source(options_.source);
  double queued = d.queued.Aggregate(fn).value_or(d.last.queued);
  // At zero replicas any waiting request must reach the controller (cold start), whatever
  // the window says.
  if (d.last.num_replicas == 0) queued = std::max(queued, static_cast<double>(d.last.queued));
  r.set_queued_requests(queued);
  if (collect_running_) {
    for (const auto& [id, window] : d.running) {
      // Mean over the queued points: a replica seen for part of the window counted 0 before.
      (*r.mutable_running_requests())[id] = window.Aggregate(fn, d.queued.size()).value_or(0);
    }
  }
  r.set_timestamp_s(NowUnixSeconds());
  return r;
}

bool MetricsReporter::Push(const std::vector<std::string>& keys) {
  if (shared_->in_flight.load()) return false;
  auto call = std::make_shared<Shared::Call>();
  for (const auto& key : keys) {
    auto it = deployments_.find(key);
    if (it != deployments_.end()) *call->request.add_reports() = MakeReport(key, it->second);
  }
  if (call->request.reports_size() == 0) return true;
  call->ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(static_cast<int64_t>(kPushDeadlineS * 1000)));
  shared_->in_flight.store(true);
  {
    std::lock_guard lock(shared_->mu);
    shared_->active = call;
  }
  auto shared = shared_;
  shared_->stub->async()->RecordHandleMetrics(
      &call->ctx, &call->request, &call->reply, [shared, call](grpc::Status st) {
        if (!st.ok() && !shared->error_logged.exchange(true)) {
          spdlog::debug("Cannot push autoscaling metrics to the controller: {} ({})",
                        st.error_message(), static_cast<int>(st.error_code()));
        }
        {
          std::lock_guard lock(shared->mu);
          shared->active.reset();
        }
        shared->in_flight.store(false);
      });
  return true;
}

}  // namespace serve::router
