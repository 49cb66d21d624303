#include "replica/replica.h"

#include <dlfcn.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

#include <serve/batching.h>

#include "common/logging.h"
#include "common/util.h"
#include "config/import_path.h"
#include "metrics/export.h"
#include "replica/data_server.h"
#include "replica/elastic_io.h"
#include "replica/handle_runtime.h"
#include "replica/loader.h"
#include "replica/policy_service.h"
#include "router/metrics_reporter.h"
#include "rpc/grpc_util.h"
#include "sdk/host.h"
#include "serve/v1/controller.grpc.pb.h"
#include "serve/v1/replica.grpc.pb.h"

namespace serve::replica {
namespace asio = boost::asio;

namespace {

// The request fields of log lines written while user code serves a request (the SDK's
// per-request context); the application is the replica's.
std::string g_log_application;
RequestLogFields ReplicaRequestLogFields() {
  const sdk::RequestContext* ctx = sdk::CurrentRequestContext();
  if (ctx == nullptr) return {};
  return {ctx->request_id, ctx->route, g_log_application};
}

class ControlService final : public v1::ReplicaControl::Service {
 public:
  /// `apply_logging` applies a new logging_config (JSON text); `user_config_json` is the one
  /// the instance was constructed with.
  ControlService(detail::Instance& instance, DataServer& data,
                 std::function<void(const std::string&)> apply_logging,
                 std::string user_config_json)
      : instance_(instance), data_(data), apply_logging_(std::move(apply_logging)),
        user_config_json_(std::move(user_config_json)) {}
  grpc::Status CheckHealth(grpc::ServerContext*, const v1::Empty*, v1::HealthReply* reply) override {
    try {
      RunUserCode([this] { instance_.CheckHealth(); });
      reply->set_ok(true);
    } catch (...) {
      reply->set_ok(false);
      reply->set_error(CurrentExceptionText());
    }
    return grpc::Status::OK;
  }
  grpc::Status Reconfigure(grpc::ServerContext*, const v1::ReconfigureRequest* req,
                           v1::ReconfigureReply* reply) override {
    try {
      if (req->max_ongoing_requests() > 0) data_.set_max_ongoing_requests(req->max_ongoing_requests());
      if (!req->logging_config_json().empty()) apply_logging_(req->logging_config_json());
      // As in Ray, the user's reconfigure runs only when user_config changed (not when only
      // logging_config or max_ongoing_requests did).
      if (req->has_user_config() && req->user_config_json() != user_config_json_) {
        Json config = Json::parse(req->user_config_json());
        RunUserCode([&] { instance_.Reconfigure(config); });
        user_config_json_ = req->user_config_json();
      }
      reply->set_ok(true);
    } catch (...) {
      reply->set_ok(false);
      reply->set_error(CurrentExceptionText());
    }
    return grpc::Status::OK;
  }

 private:
  // User code of a serialized deployment runs on the replica's strand; otherwise here, on a
  // gRPC thread, concurrently with handlers (the contract in serve/deployment.h).
  void RunUserCode(const std::function<void()>& fn) {
    if (data_.serialized()) {
      data_.RunUserCode(fn);
    } else {
      fn();
    }
  }

  detail::Instance& instance_;  // Not owned; must outlive this.
  DataServer& data_;            // Not owned; must outlive this.
  std::function<void(const std::string&)> apply_logging_;
  std::string user_config_json_;  // the last one applied
};

// Pushes this replica's ongoing-request count to the controller when handles do not collect
// running counts (spec §6.1): a point every
// $RAY_SERVE_REPLICA_AUTOSCALING_METRIC_RECORD_INTERVAL_S (0.5, capped at metrics_interval_s),
// aggregated over look_back_period_s with the deployment's aggregation function and pushed
// every $RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S when set, else
// metrics_interval_s. Runs on its own thread until destroyed; failed pushes are
// ignored (logged once, at debug level).
class ReplicaMetricsPusher {
 public:
  ReplicaMetricsPusher(const std::string& controller_address, std::string replica_id,
                       v1::AutoscalingMetricsConfig config, std::function<int()> ongoing)
      : stub_(v1::Controller::NewStub(rpc::ChannelTo(controller_address))),
        replica_id_(std::move(replica_id)),
        config_(std::move(config)),
        ongoing_(std::move(ongoing)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~ReplicaMetricsPusher() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      if (active_ != nullptr) active_->TryCancel();
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void Run() {
    double metrics_interval = config_.metrics_interval_s() > 0 ? config_.metrics_interval_s() : 10;
    double push_interval = EnvDouble("RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S", 0);
    if (push_interval <= 0) push_interval = metrics_interval;
    double record_interval = EnvDouble("RAY_SERVE_REPLICA_AUTOSCALING_METRIC_RECORD_INTERVAL_S", 0.5);
    if (record_interval <= 0) record_interval = 0.5;
    record_interval = std::max(std::min({record_interval, metrics_interval, push_interval}), 0.005);
    double look_back = config_.look_back_period_s() > 0 ? config_.look_back_period_s() : 30;
    using Clock = std::chrono::steady_clock;
    auto seconds = [](Clock::time_point t) {
      return std::chrono::duration<double>(t.time_since_epoch()).count();
    };
    auto next_push = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(push_interval));
    bool logged = false;
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::duration<double>(record_interval),
                         [this] { return stop_; })) {
      auto now = Clock::now();
      window_.Add(seconds(now), ongoing_());
      window_.Prune(seconds(now) - look_back);
      if (now < next_push) continue;
      next_push = now + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(push_interval));
      v1::ReplicaMetricsReport report;
      report.set_replica_id(replica_id_);
      report.set_running_requests(
          window_.Aggregate(config_.aggregation_function()).value_or(ongoing_()));
      report.set_timestamp_s(NowUnixSeconds());
      auto ctx = rpc::ContextWithDeadline(5);
      active_ = ctx.get();
      lock.unlock();
      v1::Empty empty;
      grpc::Status st = stub_->RecordReplicaMetrics(ctx.get(), report, &empty);
      if (!st.ok() && !logged) {
        logged = true;
        spdlog::debug("Cannot push replica metrics to the controller: {}", st.error_message());
      }
      lock.lock();
      active_ = nullptr;
    }
  }

  std::unique_ptr<v1::Controller::Stub> stub_;
  std::string replica_id_;
  v1::AutoscalingMetricsConfig config_;
  std::function<int()> ongoing_;
  router::MetricsWindow window_;  // only on thread_
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;                        // guarded by mu_
  grpc::ClientContext* active_ = nullptr;    // the push in flight; guarded by mu_
  std::thread thread_;
};

// Reports this replica's multiplexed models (loaded and loading, every serve::Multiplexed
// cache) to the controller when they change, at most every 0.1 s (spec §9.2); a non-empty set
// is sent again every 10 s so that a restarted controller learns it. Failed pushes are retried.
// Runs on its own thread until destroyed.
class MultiplexedModelsPusher {
 public:
  MultiplexedModelsPusher(const std::string& controller_address, std::string replica_id)
      : stub_(v1::Controller::NewStub(rpc::ChannelTo(controller_address))),
        replica_id_(std::move(replica_id)),
        state_(std::make_shared<State>()) {
    // The listener may run after this is gone (the SDK calls a copy): it holds only state_.
    sdk::SetMultiplexedModelsListener([state = state_] {
      {
        std::lock_guard lock(state->mu);
        state->dirty = true;
      }
      state->cv.notify_all();
    });
    thread_ = std::thread([this] { Run(); });
  }
  ~MultiplexedModelsPusher() {
    sdk::SetMultiplexedModelsListener(nullptr);
    {
      std::lock_guard lock(state_->mu);
      state_->stop = true;
    }
    state_->cv.notify_all();
    thread_.join();
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool dirty = false;
    bool stop = false;
  };

  void Run() {
    std::vector<std::string> sent;
    std::unique_lock lock(state_->mu);
    while (!state_->stop) {
      bool changed = state_->cv.wait_for(lock, std::chrono::seconds(10),
                                         [this] { return state_->stop || state_->dirty; });
      if (state_->stop) break;
      state_->dirty = false;
      lock.unlock();
      std::vector<std::string> ids = sdk::MultiplexedModelIds();
      if (ids != sent || (!changed && !ids.empty())) {
        v1::MultiplexedModelIds msg;
        msg.set_replica_id(replica_id_);
        for (const auto& id : ids) msg.add_model_ids(id);
        auto ctx = rpc::ContextWithDeadline(5);
        v1::Empty empty;
        grpc::Status st = stub_->RecordMultiplexedModelIds(ctx.get(), msg, &empty);
        if (st.ok()) {
          sent = std::move(ids);
        } else {
          spdlog::debug("Cannot report multiplexed models to the controller: {}",
                        st.error_message());
        }
      }
      lock.lock();
      if (sent != sdk::MultiplexedModelIds()) state_->dirty = true;  // changed meanwhile, or failed
      state_->cv.wait_for(lock, std::chrono::milliseconds(100), [this] { return state_->stop; });
    }
  }

  std::unique_ptr<v1::Controller::Stub> stub_;
  std::string replica_id_;
  std::shared_ptr<State> state_;
  std::thread thread_;
};

void Report(v1::Controller::Stub& stub, const v1::ReplicaStarted& msg) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    auto ctx = rpc::ContextWithDeadline(5);
    v1::Empty empty;
    if (stub.ReportReplicaStarted(ctx.get(), msg, &empty).ok()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace

int RunReplica(const ReplicaOptions& options) {
  auto stub = v1::Controller::NewStub(rpc::ChannelTo(options.controller_address));
  v1::ReplicaSpec spec;
  {
    v1::ReplicaSpecRequest req;
    req.set_replica_id(options.replica_id);
    grpc::Status st;
    for (int attempt = 0; attempt < 50; ++attempt) {
      auto ctx = rpc::ContextWithDeadline(5);
      st = stub->GetReplicaSpec(ctx.get(), req, &spec);
      if (st.ok() || st.error_code() == grpc::StatusCode::NOT_FOUND) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (!st.ok()) {
      std::fprintf(stderr, "replica %s: cannot fetch its spec: %s\n", options.replica_id.c_str(),
                   st.error_message().c_str());
      return 1;
    }
  }
  // logging_config (resolved by the controller): the log's directory, level, encoding and
  // attributes, and whether requests get an access-log line. --log-file overrides the path.
  const std::string log_name = "replica_" + spec.app_name() + "_" + spec.deployment() + "_" +
                               options.replica_id + ".log";
  auto log_path = [&](const Json& lc) {
    return options.log_file.empty() ? ServeLogsDir(options.session_dir, lc) + "/" + log_name
                                    : options.log_file;
  };
  Json lc = Json::parse(spec.logging_config_json(), nullptr, false);
  if (!lc.is_object()) lc = Json::object();
  bool access_log = lc.value("enable_access_log", true);
  g_log_application = spec.app_name();
  SetRequestLogFieldsSource(&ReplicaRequestLogFields);
  std::string log_file = log_path(lc);
  InitProcessLogging({spec.app_name() + "_" + spec.deployment(), options.replica_id, true},
                     log_file, LogSettingsFromJson(lc));
  spdlog::info("Starting replica {} of {}:{} (pid {}).", options.replica_id, spec.app_name(),
               spec.deployment(), ::getpid());

  v1::ReplicaStarted started;
  started.set_replica_id(options.replica_id);
  started.set_pid(::getpid());
  started.set_log_file_path(log_file);

  sdk::SetReplicaContext({spec.app_name(), spec.deployment(), options.replica_id,
                          options.replica_id, options.node_id,
                          std::vector<int>(spec.gpu_ids().begin(), spec.gpu_ids().end())});
  ReplicaHandleRuntime handles(options.controller_address, spec.app_name(), options.node_id,
                               "replica:" + options.replica_id);
  sdk::SetHandleRuntime(&handles);
  std::unique_ptr<detail::Instance> instance;
  std::string error;
  if (!spec.app_dir().empty()) (void)::chdir(spec.app_dir().c_str());
  if (!LoadLibrary(spec.library_path(), &error)) {
    // error set
  } else if (detail::Factory factory = sdk::FindFactory(spec.factory_key()); !factory) {
    error = "deployment class not found in " + spec.library_path();
  } else {
    try {
      instance = factory(spec.init_args());
      if (!spec.user_config_json().empty()) {
        instance->Reconfigure(Json::parse(spec.user_config_json()));
      }
    } catch (...) {
      error = CurrentExceptionText();
      instance.reset();
    }
  }
  if (!instance) {
    spdlog::error("Replica {} failed to start: {}", options.replica_id, error);
    started.set_ok(false);
    started.set_error(error);
    Report(*stub, started);
    ShutdownLogging();
    return 1;
  }

  // User code runs on `io` (serve/deployment.h states the contract): up to `threads` jobs at
  // once on a pool that grows on demand (max_ongoing_requests, or $SERVE_REPLICA_THREADS), or
  // one at a time for a Concurrency::kSerialized class.
  int max_ongoing = spec.max_ongoing_requests() > 0 ? spec.max_ongoing_requests() : 100;
  detail::SetBatchingMaxOngoingRequests(max_ongoing);  // batchers warn when they exceed it
  int env_threads = static_cast<int>(EnvDouble("SERVE_REPLICA_THREADS", 0));
  bool fixed_threads = env_threads > 0;
  int threads = fixed_threads ? env_threads : max_ongoing;
  asio::io_context io(2);  // > 1: more than one thread may run it
  DataServerOptions data_options{spec.app_name(), spec.deployment(), options.replica_id,
                                 max_ongoing, access_log, nullptr};
  data_options.on_cancel = [&handles](const std::string& id) { handles.CancelChildren(id); };
  data_options.serialized = instance->Serialized();
  data_options.fixed_threads = fixed_threads;
  DataServer data(io, threads, *instance, data_options);
  std::string host = LocalNodeIp();
  unsigned short data_port = data.Listen(host);
  std::unique_ptr<ReplicaMetricsPusher> metrics;
  if (spec.has_autoscaling() &&
      EnvDouble("RAY_SERVE_COLLECT_AUTOSCALING_METRICS_ON_HANDLE", 1) == 0) {
    metrics = std::make_unique<ReplicaMetricsPusher>(
        options.controller_address, options.replica_id, spec.autoscaling(),
        [&data] { return data.ongoing(); });
  }

  MultiplexedModelsPusher multiplexed(options.controller_address, options.replica_id);
  data.metrics().Started();
  metrics::Pusher metrics_pusher("replica:" + options.replica_id,
                                 [] { return sdk::MetricsText(); });
  ControlService control(
      *instance, data,
      [&](const std::string& text) {
        Json next = Json::parse(text, nullptr, false);
        if (!next.is_object()) return;
        ReconfigureProcessLogging(LogSettingsFromJson(next), log_path(next));
        data.set_access_log(next.value("enable_access_log", true));
      },
      spec.user_config_json());
  PolicyService policy;
  int control_port = 0;
  auto server = rpc::StartGrpcServer(host, 0, {&control, &policy}, &control_port);
  if (!server) {
    started.set_ok(false);
    started.set_error("cannot start the replica control server");
    Report(*stub, started);
    return 1;
  }

  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](boost::system::error_code, int) {
    spdlog::info("Replica {} shutting down: draining {} ongoing request(s).", options.replica_id,
                 data.ongoing());
    data.StartDraining();
    // Poll until in-flight requests finish; the agent kills us after the graceful timeout.
    auto timer = std::make_shared<asio::steady_timer>(io);
    auto check = std::make_shared<std::function<void()>>();
    *check = [&, timer, check] {
      if (data.ongoing() == 0) {
        io.stop();
        return;
      }
      timer->expires_after(std::chrono::milliseconds(20));
      timer->async_wait([check](boost::system::error_code) { (*check)(); });
    };
    (*check)();
  });

  started.set_ok(true);
  started.set_data_address(host + ":" + std::to_string(data_port));
  started.set_control_address(host + ":" + std::to_string(control_port));
  Report(*stub, started);
  spdlog::info("Replica {} is ready: data plane {}, control {}.", options.replica_id,
               started.data_address(), started.control_address());

  // The data plane runs on this thread, joined by up to data.user_threads() more while user
  // code blocks.
  ElasticIoThreads io_threads(io, {[&data] { return data.busy(); },
                                   [&data] { return data.finished(); },
                                   [&data] { return data.user_threads(); }});
  io_threads.Run();
  metrics.reset();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  instance.reset();  // user destructor (__del__)
  sdk::SetHandleRuntime(nullptr);
  spdlog::info("Replica {} stopped.", options.replica_id);
  ShutdownLogging();
  return 0;
}

}  // namespace serve::replica
