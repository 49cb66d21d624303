#include "controller/controller.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <filesystem>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/logging.h"
#include "common/util.h"
#include "config/deployment_config.h"
#include "config/schema.h"
#include "controller/rest_api.h"
#include "controller/runtime_env.h"
#include "controller/status.h"
#include "controller/storage/file_kv_store.h"
#include "controller/storage/kv_store.h"
#include "controller/storage/redis_kv_store.h"
#include "rpc/grpc_util.h"
#include "rpc/http_server.h"
#include "serve/v1/agent.grpc.pb.h"
#include "serve/v1/controller.grpc.pb.h"
#include "serve/v1/replica.grpc.pb.h"

namespace serve::controller {
namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kHealthFailureThreshold = 3;
constexpr int kMaxConstructorRetries = 20;
constexpr int kMaxPerReplicaRetries = 3;
constexpr char kRouteTableKey[] = "ROUTE_TABLE";

constexpr char kCheckpointKey[] = "serve-controller-checkpoint";
constexpr int kExitConfig = 78;  // the head agent does not restart a controller exiting with it

enum class ReplicaState { kStarting, kRecovering, kRunning, kStopping };
const char* ToString(ReplicaState s, bool updating = false) {
  if (updating && s == ReplicaState::kRunning) return "UPDATING";
  switch (s) {
    case ReplicaState::kStarting: return "STARTING";
    case ReplicaState::kRecovering: return "RECOVERING";
    case ReplicaState::kRunning: return "RUNNING";
    case ReplicaState::kStopping: return "STOPPING";
  }
  return "UNKNOWN";
}

struct Replica {
  std::string id;
  std::string dep_key;
  ReplicaState state = ReplicaState::kStarting;
  int pid = 0;
  std::string node_id;
  std::string data_address;
  std::string control_address;
  std::string log_file;
  double start_time_s = 0;
  int version = 0;         // code version it was started with (restart when it changes)
  int config_version = 0;  // reconfigurable options it has applied
  bool updating = false;   // a Reconfigure call is in flight
  int health_failures = 0;
  bool health_in_flight = false;
  Clock::time_point last_health = Clock::now();
};

struct Deployment {
  std::string app;
  std::string name;
  config::DeploymentConfig cfg;
  std::string factory_key;
  std::string init_args;  // msgpack
  std::string library_path;
  std::string app_dir;
  std::string working_dir;                    // replica cwd (runtime_env working_dir)
  std::map<std::string, std::string> env;     // runtime_env env_vars
  std::string fingerprint;         // what forces a restart when it changes
  std::string config_fingerprint;  // what needs a reconfigure() call on running replicas
  int version = 0;
  int config_version = 0;
  bool ingress = false;
  bool deleting = false;
  DeploymentStatusInfo status;
  std::string message;
  int startup_failures = 0;
  bool version_started = false;  // a replica of the current version reached RUNNING
  bool terminally_failed = false;
  std::map<std::string, Replica> replicas;
};

struct App {
  std::string name;
  std::optional<std::string> route_prefix;
  std::string import_path;
  std::string args_json;
  std::string app_dir;
  std::string source = "imperative";   // imperative | declarative
  Json submitted;                      // deployed_app_config (declarative only)
  Json runtime_env = Json::object();
  PreparedRuntimeEnv prepared_env;
  std::vector<config::DeploymentOverride> overrides;
  std::string code_key;                // import_path + runtime_env + args
  std::string graph;                   // last built graph (msgpack)
  std::string library_stamp;           // size+mtime of the library when built
  std::string build_id;
  int build_pid = 0;
  bool building = false;
  bool build_failed = false;
  std::string build_error;
  bool deleting = false;
  double last_deployed_time_s = 0;
  std::string ingress;
  std::vector<std::string> deployments;
};

struct Proxy {
  int pid = 0;
  std::string status = "STARTING";
  int http_port = 0;
  std::string log_file;
};

struct Waiter {
  grpc::ServerUnaryReactor* reactor;
  v1::ListenReply* reply;
  std::map<std::string, int64_t> keys;
  Clock::time_point deadline;
};

struct Snapshot {
  int64_t id = 0;
  std::string serialized;
  v1::Update update;
};

std::string DepKey(const std::string& app, const std::string& dep) { return app + "#" + dep; }
std::string TargetsKey(const std::string& dep_key) { return "DEPLOYMENT_TARGETS:" + dep_key; }

class ControllerImpl final : public v1::Controller::CallbackService, public ControllerApi {
 public:
  ControllerImpl(const ControllerOptions& options, std::unique_ptr<KvStore> kv)
      : options_(options),
        agent_(v1::Agent::NewStub(rpc::ChannelTo(options.agent_address))),
        kv_(std::move(kv)),
        rng_(std::random_device{}()) {}

  // ---------------------------------------------------------------- checkpoint / recovery

  /// Loads the last checkpoint and reconciles it with the processes the node agent reports
  /// alive: live replicas are adopted (RECOVERING until a health check passes), replicas and
  /// builds that are gone are dropped or restarted, unknown replica processes are stopped.
  /// Returns whether a proxy is still running. A corrupt checkpoint is set aside (logged) and
  /// the controller starts empty.
  bool Recover() {
    auto blob = kv_->Get(kCheckpointKey);
    if (!blob.ok()) {
      if (blob.status().code() != absl::StatusCode::kNotFound) {
        spdlog::error("Cannot read the checkpoint: {}; starting with an empty state.",
                      std::string(blob.status().message()));
      }
      return false;
    }
    Json snap = Json::from_msgpack(*blob, true, false);
    std::map<int, std::string> alive;  // pid -> tag
    {
      auto ctx = rpc::ContextWithDeadline(10);
      v1::Empty req;
      v1::ListProcessesReply reply;
      grpc::Status st = agent_->ListProcesses(ctx.get(), req, &reply);
      if (!st.ok()) spdlog::error("Cannot list the node's processes: {}", st.error_message());
      for (auto& p : reply.processes()) alive[p.pid()] = p.tag();
    }
    std::lock_guard lock(mu_);
    try {
      if (snap.is_discarded() || !snap.is_object()) throw std::runtime_error("not msgpack");
      RestoreLocked(snap, alive);
    } catch (const std::exception& e) {
      spdlog::error("The checkpoint is corrupt ({}); keeping it as '{}-corrupt' and starting "
                    "with an empty state.", e.what(), kCheckpointKey);
      (void)kv_->Put(std::string(kCheckpointKey) + "-corrupt", *blob);
      (void)kv_->Delete(kCheckpointKey);
      apps_.clear();
      deployments_.clear();
      replica_index_.clear();
      proxies_.clear();
    }
    // Replica processes nobody knows about (started just before a crash) are stopped.
    for (auto& [pid, tag] : alive) {
      if (tag.rfind("replica:", 0) == 0 && !replica_index_.count(tag.substr(8))) {
        spdlog::warn("Stopping unknown replica process {} ({}).", pid, tag);
        StopPidLater(pid, 0);
      }
    }
    bool proxy_alive = false;
    for (auto& [node, p] : proxies_) {
      proxy_alive |= alive.count(p.pid) && alive[p.pid] == "proxy";
      if (p.http_port > 0) last_proxy_port_ = p.http_port;
    }
    if (!proxy_alive) proxies_.clear();
    last_checkpoint_ = *blob;
    spdlog::info("Recovered {} application(s), {} deployment(s), {} replica(s) from the checkpoint.",
                 apps_.size(), deployments_.size(), replica_index_.size());
    return proxy_alive;
  }


  // ---------------------------------------------------------------- RPC handlers

  grpc::ServerUnaryReactor* DeployApplication(grpc::CallbackServerContext* ctx,
                                              const v1::DeployApplicationRequest* req,
                                              v1::DeployApplicationReply*) override {
    auto* reactor = ctx->DefaultReactor();
    // The imperative form goes through the same schema validation as config files.
    Json app = {{"name", req->name().empty() ? "default" : req->name()},
                {"import_path", req->import_path()},
                {"args", Json::parse(req->args_json().empty() ? "{}" : req->args_json(), nullptr,
                                     false)}};
    app["route_prefix"] = req->has_route_prefix() ? Json(req->route_prefix()) : Json(nullptr);
    if (app["args"].is_discarded()) app["args"] = Json::object();
    auto cfg = config::ParseServeDeployConfig(Json{{"applications", Json::array({app})}});
    absl::Status st = cfg.status();
    if (st.ok()) {
      std::lock_guard lock(mu_);
      st = DeployLocked(*cfg, "imperative", req->app_dir());
    }
    cv_.notify_all();
    if (!st.ok()) {
      reactor->Finish({st.code() == absl::StatusCode::kAlreadyExists
                           ? grpc::StatusCode::ALREADY_EXISTS
                           : grpc::StatusCode::INVALID_ARGUMENT,
                       std::string(st.message())});
    } else {
      reactor->Finish(grpc::Status::OK);
    }
    return reactor;
  }

  // ---------------------------------------------------------------- ControllerApi (REST)

  Json Details(const std::string& api_type) override {
    std::lock_guard lock(mu_);
    return DetailsLocked(api_type);
  }

  absl::Status ApplyConfig(const config::ServeDeployConfig& cfg) override {
    absl::Status st;
    {
      std::lock_guard lock(mu_);
      st = DeployLocked(cfg, "declarative", "");
    }
    cv_.notify_all();
    return st;
  }

  void DeleteAllApplications() override {
    {
      std::lock_guard lock(mu_);
      spdlog::info("Deleting all applications.");
      for (auto& [name, app] : apps_) DeleteAppLocked(app);
    }
    cv_.notify_all();
  }

  grpc::ServerUnaryReactor* DeleteApplication(grpc::CallbackServerContext* ctx,
                                              const v1::DeleteApplicationRequest* req,
                                              v1::Empty*) override {
    auto* reactor = ctx->DefaultReactor();
    {
      std::lock_guard lock(mu_);
      auto it = apps_.find(req->name());
      if (it == apps_.end()) {
        reactor->Finish({grpc::StatusCode::NOT_FOUND,
                         "Application \"" + req->name() + "\" does not exist."});
        return reactor;
      }
      spdlog::info("Deleting application '{}'.", req->name());
      DeleteAppLocked(it->second);
    }
    cv_.notify_all();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* GetDetails(grpc::CallbackServerContext* ctx,
                                       const v1::GetDetailsRequest*,
                                       v1::GetDetailsReply* reply) override {
    std::lock_guard lock(mu_);
    reply->set_json(DetailsLocked("").dump());
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Shutdown(grpc::CallbackServerContext* ctx, const v1::ShutdownRequest*,
                                     v1::Empty*) override {
    {
      std::lock_guard lock(mu_);
      if (!shutting_down_) spdlog::info("Shutdown requested: deleting all applications.");
      shutting_down_ = true;
      for (auto& [name, app] : apps_) DeleteAppLocked(app);
    }
    cv_.notify_all();
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* ListenForChange(grpc::CallbackServerContext* ctx,
                                            const v1::ListenRequest* req,
                                            v1::ListenReply* reply) override {
    auto* reactor = ctx->DefaultReactor();
    std::lock_guard lock(mu_);
    Waiter w{reactor, reply, {req->keys().begin(), req->keys().end()}, {}};
    if (!RecoveringLocked() && FillUpdatesLocked(w)) {
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
    std::uniform_real_distribution<double> timeout(
        EnvDouble("LISTEN_FOR_CHANGE_REQUEST_TIMEOUT_S_LOWER_BOUND", 30),
        EnvDouble("LISTEN_FOR_CHANGE_REQUEST_TIMEOUT_S_UPPER_BOUND", 60));
    w.deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout(rng_) * 1000));
    waiters_.push_back(std::move(w));
    return reactor;
  }

  grpc::ServerUnaryReactor* GetReplicaSpec(grpc::CallbackServerContext* ctx,
                                           const v1::ReplicaSpecRequest* req,
                                           v1::ReplicaSpec* spec) override {
    auto* reactor = ctx->DefaultReactor();
    std::lock_guard lock(mu_);
    Deployment* dep = nullptr;
    if (auto it = replica_index_.find(req->replica_id()); it != replica_index_.end()) {
      auto d = deployments_.find(it->second);
      if (d != deployments_.end()) dep = &d->second;
    }
    if (dep == nullptr) {
      reactor->Finish({grpc::StatusCode::NOT_FOUND, "unknown replica " + req->replica_id()});
      return reactor;
    }
    spec->set_app_name(dep->app);
    spec->set_deployment(dep->name);
    spec->set_library_path(dep->library_path);
    spec->set_factory_key(dep->factory_key);
    spec->set_init_args(dep->init_args);
    if (dep->cfg.user_config) spec->set_user_config_json(dep->cfg.user_config->dump());
    spec->set_max_ongoing_requests(dep->cfg.max_ongoing_requests);
    spec->set_app_dir(dep->app_dir);
    spec->set_is_ingress(dep->ingress);
    if (dep->cfg.logging_config) spec->set_logging_config_json(dep->cfg.logging_config->dump());
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* ReportReplicaStarted(grpc::CallbackServerContext* ctx,
                                                 const v1::ReplicaStarted* msg,
                                                 v1::Empty*) override {
    {
      std::lock_guard lock(mu_);
      Replica* r = FindReplicaLocked(msg->replica_id());
      if (r != nullptr && r->state == ReplicaState::kStarting) {
        Deployment& dep = deployments_.at(r->dep_key);
        r->pid = msg->pid();
        r->log_file = msg->log_file_path();
        if (msg->ok()) {
          r->state = ReplicaState::kRunning;
          r->data_address = msg->data_address();
          r->control_address = msg->control_address();
          r->last_health = Clock::now();
          if (r->version == dep.version) dep.version_started = true;
          spdlog::info("Replica {} of {}:{} is RUNNING at {}.", r->id, dep.app, dep.name,
                       r->data_address);
        } else {
          dep.replicas.erase(r->id);
          replica_index_.erase(msg->replica_id());
          OnStartupFailureLocked(dep, msg->error());
        }
      }
    }
    cv_.notify_all();
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* ReportBuildResult(grpc::CallbackServerContext* ctx,
                                              const v1::BuildResult* msg, v1::Empty*) override {
    {
      std::lock_guard lock(mu_);
      for (auto& [name, app] : apps_) {
        if (app.building && app.build_id == msg->build_id()) {
          app.building = false;
          if (msg->ok()) {
            ApplyGraphLocked(app, msg->graph_msgpack());
          } else {
            app.build_failed = true;
            app.build_error = msg->error();
            spdlog::error("Application '{}' failed to build: {}", name, msg->error());
          }
        }
      }
    }
    cv_.notify_all();
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* ReportProcessExit(grpc::CallbackServerContext* ctx,
                                              const v1::ProcessExit* msg, v1::Empty*) override {
    {
      std::lock_guard lock(mu_);
      OnProcessExitLocked(*msg);
    }
    cv_.notify_all();
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* ReportProxyReady(grpc::CallbackServerContext* ctx,
                                             const v1::ProxyReady* msg, v1::Empty*) override {
    {
      std::lock_guard lock(mu_);
      Proxy& p = proxies_[msg->node_id()];
      p.status = "HEALTHY";
      p.http_port = msg->http_port();
      last_proxy_port_ = p.http_port;  // a restarted proxy binds the same port
      p.pid = msg->pid();
      p.log_file = msg->log_file_path();
      spdlog::info("Proxy on node {} is HEALTHY, HTTP port {}.", msg->node_id(), p.http_port);
    }
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  // ---------------------------------------------------------------- control loop

  /// Runs until `stop` is set. Each step reconciles under the lock and performs the remote
  /// calls it decided on afterwards, outside the lock.
  void RunLoop(const std::atomic<bool>& stop) {
    auto interval = std::chrono::milliseconds(static_cast<int64_t>(
        EnvDouble("SERVE_CONTROL_LOOP_INTERVAL_S", options_.control_loop_interval_s) * 1000));
    while (!stop) {
      std::vector<std::function<void()>> actions;
      {
        std::unique_lock lock(mu_);
        StepLocked(actions);
      }
      for (auto& a : actions) a();
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, interval);
    }
    std::lock_guard lock(mu_);
    for (auto& w : waiters_) {
      w.reply->set_timed_out(true);
      w.reactor->Finish(grpc::Status::OK);
    }
    waiters_.clear();
  }

  void StartProxy() {
    if (options_.proxy_location == "Disabled") return;
    int port;
    {
      std::lock_guard lock(mu_);
      port = last_proxy_port_ > 0 ? last_proxy_port_ : options_.http_port;
    }
    v1::StartProcessRequest req;
    req.set_tag("proxy");
    req.set_log_prefix("ProxyActor");
    req.set_binary("serve-proxy");
    for (const std::string& a :
         {std::string("--controller-address"), address_, std::string("--node-id"),
          options_.node_id, std::string("--http-host"), options_.http_host,
          std::string("--http-port"), std::to_string(port),
          std::string("--session-dir"), options_.session_dir}) {
      req.add_args(a);
    }
    double timeout = options_.request_timeout_s > 0
                         ? options_.request_timeout_s
                         : EnvDouble("RAY_SERVE_REQUEST_PROCESSING_TIMEOUT_S",
                                     EnvDouble("SERVE_REQUEST_PROCESSING_TIMEOUT_S", 0));
    for (const std::string& a :
         {std::string("--keep-alive-timeout-s"), std::to_string(options_.keep_alive_timeout_s),
          std::string("--request-timeout-s"), std::to_string(timeout > 0 ? timeout : -1)}) {
      req.add_args(a);
    }
    v1::StartProcessReply reply;
    auto ctx = rpc::ContextWithDeadline(10);
    grpc::Status st = agent_->StartProcess(ctx.get(), req, &reply);
    std::lock_guard lock(mu_);
    Proxy& p = proxies_[options_.node_id];
    p.status = "STARTING";
    if (st.ok()) {
      p.pid = reply.pid();
    } else {
      spdlog::error("Cannot start the proxy: {}", st.error_message());
    }
  }

  void set_address(std::string a) { address_ = std::move(a); }
  bool finished() {
    std::lock_guard lock(mu_);
    return finished_;
  }

 private:
  // ---------------------------------------------------------------- helpers (mu_ held)

  Replica* FindReplicaLocked(const std::string& id) {
    auto it = replica_index_.find(id);
    if (it == replica_index_.end()) return nullptr;
    auto d = deployments_.find(it->second);
    if (d == deployments_.end()) return nullptr;
    auto r = d->second.replicas.find(id);
    return r == d->second.replicas.end() ? nullptr : &r->second;
  }

  void StartBuildLocked(App& app) {
    v1::StartProcessRequest req;
    req.set_tag("build:" + app.name);
    req.set_log_prefix("build_serve_application");
    req.set_binary("serve-replica");
    for (const std::string& a :
         {std::string("--build"), std::string("--controller-address"), address_,
          std::string("--build-id"), app.build_id, std::string("--import-path"), app.import_path,
          std::string("--app-dir"), app.app_dir, std::string("--args-json"), app.args_json}) {
      req.add_args(a);
    }
    for (auto& [k, v] : app.prepared_env.env_vars) {
      auto* kv = req.add_env();
      kv->set_key(k);
      kv->set_value(v);
    }
    if (!app.prepared_env.working_dir.empty()) req.set_working_dir(app.prepared_env.working_dir);
    std::string app_name = app.name, build_id = app.build_id;
    pending_actions_.push_back([this, req, app_name, build_id] {
      v1::StartProcessReply reply;
      auto ctx = rpc::ContextWithDeadline(10);
      grpc::Status st = agent_->StartProcess(ctx.get(), req, &reply);
      std::lock_guard lock(mu_);
      auto it = apps_.find(app_name);
      if (it == apps_.end() || it->second.build_id != build_id || !it->second.building) return;
      if (st.ok()) {
        it->second.build_pid = reply.pid();
      } else {
        it->second.building = false;
        it->second.build_failed = true;
        it->second.build_error = "cannot start the build process: " + st.error_message();
      }
    });
    cv_.notify_all();
  }

  static std::string LibraryStamp(const std::string& path) {
    std::error_code ec;
    auto size = std::filesystem::file_size(path, ec);
    auto mtime = std::filesystem::last_write_time(path, ec).time_since_epoch().count();
    return std::to_string(size) + "@" + std::to_string(mtime);
  }

  /// Deploys the applications of `cfg`. Declarative deploys delete the declarative apps that
  /// are not listed. Unchanged code reuses the last build; changed code (import path,
  /// runtime_env, args, or the library on disk) is rebuilt in a build process.
  absl::Status DeployLocked(const config::ServeDeployConfig& cfg, const std::string& source,
                            const std::string& app_dir) {
    if (shutting_down_) return absl::UnavailableError("serve is shutting down");
    std::set<std::string> names;
    for (const auto& a : cfg.applications) names.insert(a.name);
    // Route prefixes must stay unique across live applications.
    for (const auto& a : cfg.applications) {
      if (!a.route_prefix) continue;
      for (auto& [other_name, other] : apps_) {
        bool replaced = names.count(other_name) > 0 ||
                        (source == "declarative" && other.source == "declarative");
        if (!replaced && !other.deleting && other.route_prefix == a.route_prefix) {
          return absl::AlreadyExistsError("Prefix " + *a.route_prefix +
                                          " is being used by application \"" + other_name +
                                          "\". Failed to deploy application \"" + a.name + "\".");
        }
      }
    }
    std::map<std::string, PreparedRuntimeEnv> envs;
    for (const auto& a : cfg.applications) {
      auto env = PrepareRuntimeEnv(a.runtime_env, options_.session_dir);
      if (!env.ok()) {
        return absl::InvalidArgumentError("application '" + a.name + "': " +
                                          std::string(env.status().message()));
      }
      envs[a.name] = *env;
    }
    for (const auto& a : cfg.applications) {
      App& app = apps_[a.name];
      std::string code_key = Json{{"import_path", a.import_path}, {"runtime_env", a.runtime_env},
                                  {"args", a.args}}.dump();
      bool reuse = !app.graph.empty() && !app.deleting && app.code_key == code_key &&
                   !app.build_failed &&
                   (app_dir.empty() || app_dir == app.app_dir);
      if (reuse) {
        Json graph = Json::from_msgpack(app.graph, true, false);
        reuse = !graph.is_discarded() &&
                LibraryStamp(graph.value("library_path", "")) == app.library_stamp;
      }
      app.name = a.name;
      app.route_prefix = a.route_prefix;
      app.import_path = a.import_path;
      app.args_json = a.args.dump();
      app.runtime_env = a.runtime_env;
      app.prepared_env = envs[a.name];
      if (!app_dir.empty()) app.app_dir = app_dir;
      if (app.app_dir.empty()) app.app_dir = options_.app_dir;
      if (!app.prepared_env.working_dir.empty()) app.app_dir = app.prepared_env.working_dir;
      app.source = source;
      app.submitted = source == "declarative" ? a.submitted : Json(nullptr);
      app.overrides = a.deployments;
      app.code_key = code_key;
      app.deleting = false;
      app.last_deployed_time_s = NowUnixSeconds();
      if (reuse) {
        spdlog::info("Updating application '{}' in place.", a.name);
        app.build_failed = false;
        ApplyGraphLocked(app, app.graph);
        continue;
      }
      app.building = true;
      app.build_failed = false;
      app.build_error.clear();
      app.build_id = RandomId(12);
      spdlog::info("Deploying application '{}' from '{}'.", a.name, a.import_path);
      StartBuildLocked(app);
    }
    if (source == "declarative") {
      for (auto& [name, app] : apps_) {
        if (app.source == "declarative" && !names.count(name) && !app.deleting) {
          spdlog::info("Application '{}' is not in the new config; deleting it.", name);
          DeleteAppLocked(app);
        }
      }
    }
    return absl::OkStatus();
  }

  void ApplyGraphLocked(App& app, const std::string& graph_msgpack) {
    Json graph = Json::from_msgpack(graph_msgpack, true, false);
    auto fail = [&](const std::string& why) {
      app.build_failed = true;
      app.build_error = why;
      spdlog::error("Application '{}' failed to deploy: {}", app.name, why);
    };
    if (graph.is_discarded() || !graph.contains("deployments")) {
      fail("the build process returned a malformed application graph");
      return;
    }
    app.graph = graph_msgpack;
    std::string library = graph.value("library_path", "");
    app.library_stamp = LibraryStamp(library);
    std::set<std::string> in_code;
    for (const Json& node : graph["deployments"]) in_code.insert(node["options"].value("name", ""));
    for (const auto& o : app.overrides) {
      if (!in_code.count(o.name)) {
        std::string known;
        for (auto& n : in_code) known += (known.empty() ? "" : ", ") + n;
        fail("Got config override for nonexistent deployment '" + o.name +
             "' in application '" + app.name + "' (deployments: " + known + ").");
        return;
      }
    }
    std::vector<std::string> names;
    std::map<std::string, Deployment> incoming;
    for (const Json& node : graph["deployments"]) {
      Json options = node.value("options", Json::object());
      for (const auto& o : app.overrides) {
        if (o.name == options.value("name", "")) options = config::MergeDeploymentOptions(options, o.fields);
      }
      auto cfg = config::ResolveDeploymentConfig(options);
      if (!cfg.ok()) {
        fail(std::string(cfg.status().message()));
        return;
      }
      Deployment d;
      d.app = app.name;
      d.name = cfg->name;
      d.cfg = *cfg;
      d.factory_key = node.value("factory", "");
      std::vector<std::uint8_t> args = Json::to_msgpack(node.value("init_args", Json::array()));
      d.init_args.assign(args.begin(), args.end());
      d.library_path = library;
      d.app_dir = app.app_dir;
      d.working_dir = app.prepared_env.working_dir;
      d.env = app.prepared_env.env_vars;
      d.ingress = d.name == graph.value("ingress", "");
      Json heavy = {{"factory", d.factory_key}, {"library", library},
                    {"stamp", app.library_stamp}, {"actor", d.cfg.ray_actor_options},
                    {"max_per_node", d.cfg.max_replicas_per_node ? *d.cfg.max_replicas_per_node : 0},
                    {"env", d.env}, {"working_dir", d.working_dir}};
      d.fingerprint = heavy.dump() + d.init_args;
      Json light = {{"user_config", d.cfg.user_config ? *d.cfg.user_config : Json(nullptr)},
                    {"max_ongoing_requests", d.cfg.max_ongoing_requests}};
      d.config_fingerprint = light.dump();
      names.push_back(d.name);
      incoming.emplace(d.name, std::move(d));
    }
    // Deployments of this app that are gone from the graph are deleted.
    for (const std::string& old : app.deployments) {
      if (!incoming.count(old)) {
        auto it = deployments_.find(DepKey(app.name, old));
        if (it != deployments_.end()) MarkDeletingLocked(it->second);
      }
    }
    for (auto& [name, d] : incoming) {
      std::string key = DepKey(app.name, name);
      auto it = deployments_.find(key);
      if (it == deployments_.end() || it->second.deleting) {
        if (it != deployments_.end()) {
          d.replicas = std::move(it->second.replicas);  // old ones keep stopping
          d.version = it->second.version + 1;
          d.config_version = it->second.config_version + 1;
        } else {
          d.version = 1;
          d.config_version = 1;
        }
        d.status = {DeploymentStatus::kUpdating, StatusTrigger::kConfigUpdateStarted};
        deployments_[key] = std::move(d);
        continue;
      }
      Deployment& cur = it->second;
      d.replicas = std::move(cur.replicas);
      d.status = cur.status;
      d.message = cur.message;
      d.version_started = cur.version_started;
      d.version = cur.version;
      d.config_version = cur.config_version;
      Json old_cfg = config::ToJson(cur.cfg), new_cfg = config::ToJson(d.cfg);
      old_cfg.erase("num_replicas");
      new_cfg.erase("num_replicas");
      if (cur.fingerprint != d.fingerprint) {
        // Code or resources changed: new version, replicas are rolled over.
        ++d.version;
        ++d.config_version;
        d.version_started = false;
        d.status = Transition(cur.status, DeploymentEvent::kConfigUpdate);
        spdlog::info("Deployment {}:{} changed code or resources; rolling out version {}.",
                     app.name, name, d.version);
      } else if (old_cfg != new_cfg) {
        if (cur.config_fingerprint != d.config_fingerprint) ++d.config_version;
        d.status = Transition(cur.status, DeploymentEvent::kConfigUpdate);
        spdlog::info("Deployment {}:{} options updated in place.", app.name, name);
      } else if (cur.cfg.num_replicas != d.cfg.num_replicas) {
        d.status = Transition(cur.status, d.cfg.num_replicas > cur.cfg.num_replicas
                                              ? DeploymentEvent::kManuallyIncrease
                                              : DeploymentEvent::kManuallyDecrease);
      }
      if (d.version != cur.version || d.config_version != cur.config_version ||
          cur.cfg.num_replicas != d.cfg.num_replicas) {
        d.terminally_failed = false;
        d.startup_failures = 0;
      } else {
        d.terminally_failed = cur.terminally_failed;
        d.startup_failures = cur.startup_failures;
      }
      cur = std::move(d);
    }
    app.deployments = names;
    app.ingress = graph.value("ingress", "");
    spdlog::info("Application '{}': deployments [{}], ingress '{}'.", app.name,
                 fmt::join(names, ", "), app.ingress);
  }

  void MarkDeletingLocked(Deployment& d) {
    if (d.deleting) return;
    d.deleting = true;
    d.status = Transition(d.status, DeploymentEvent::kDelete);
  }

  void DeleteAppLocked(App& app) {
    app.deleting = true;
    app.building = false;
    for (const std::string& d : app.deployments) {
      auto it = deployments_.find(DepKey(app.name, d));
      if (it != deployments_.end()) MarkDeletingLocked(it->second);
    }
  }

  void OnStartupFailureLocked(Deployment& dep, const std::string& error) {
    ++dep.startup_failures;
    int threshold = std::min(kMaxConstructorRetries, std::max(1, dep.cfg.num_replicas) *
                                                         kMaxPerReplicaRetries);
    spdlog::error("A replica of {}:{} failed to start: {}", dep.app, dep.name, error);
    if (dep.version_started) {
      dep.message = "A replica failed to start with exception. Retrying.\n" + error;
      return;
    }
    if (dep.startup_failures >= threshold) {
      dep.terminally_failed = true;
      dep.status = Transition(dep.status, DeploymentEvent::kReplicaStartupFailed);
      dep.message = "The deployment failed to start " + std::to_string(dep.startup_failures) +
                    " times in a row. This may be due to a problem with its constructor or "
                    "initial health check failing. See controller logs for details. Error:\n" +
                    error;
    } else {
      dep.message = "A replica failed to start with exception. Retrying " +
                    std::to_string(threshold - dep.startup_failures) + " more time(s).\n" + error;
    }
  }

  void OnProcessExitLocked(const v1::ProcessExit& msg) {
    if (msg.tag() == "proxy") {
      auto it = proxies_.find(msg.node_id());
      if (it != proxies_.end() && it->second.pid == msg.pid()) {
        proxies_.erase(it);
        if (!shutting_down_) {
          spdlog::warn("Proxy on node {} exited (code {}); restarting it.", msg.node_id(),
                       msg.exit_code());
          pending_actions_.push_back([this] { StartProxy(); });
        }
      }
      return;
    }
    if (msg.tag().rfind("build:", 0) == 0) {
      auto it = apps_.find(msg.tag().substr(6));
      if (it != apps_.end() && it->second.building && it->second.build_pid == msg.pid()) {
        it->second.building = false;
        it->second.build_failed = true;
        it->second.build_error = "The application builder process exited with code " +
                                 std::to_string(msg.exit_code()) + " before reporting a result.";
      }
      return;
    }
    if (msg.tag().rfind("replica:", 0) != 0) return;
    std::string id = msg.tag().substr(8);
    Replica* r = FindReplicaLocked(id);
    if (r == nullptr) return;
    Deployment& dep = deployments_.at(r->dep_key);
    std::string how = msg.exit_code() < 0 ? "was killed by signal " + std::to_string(-msg.exit_code())
                                          : "exited with code " + std::to_string(msg.exit_code());
    if (r->state == ReplicaState::kStarting) {
      std::string text = "replica process " + how + " before it was ready";
      dep.replicas.erase(id);
      replica_index_.erase(id);
      OnStartupFailureLocked(dep, text);
    } else if (r->state == ReplicaState::kRunning) {
      spdlog::warn("Replica {} of {}:{} {} unexpectedly; starting a replacement.", id, dep.app,
                   dep.name, how);
      dep.status = Transition(dep.status, DeploymentEvent::kHealthCheckFailed);
      dep.message = "Replica " + id + " " + how + " unexpectedly.";
      dep.replicas.erase(id);
      replica_index_.erase(id);
    } else {
      dep.replicas.erase(id);
      replica_index_.erase(id);
    }
  }

  Json SnapshotLocked() const {
    Json apps = Json::array();
    for (auto& [name, a] : apps_) {
      Json overrides = Json::array();
      for (auto& o : a.overrides) overrides.push_back({{"name", o.name}, {"fields", o.fields}});
      apps.push_back({{"name", a.name},
                      {"route_prefix", a.route_prefix ? Json(*a.route_prefix) : Json(nullptr)},
                      {"import_path", a.import_path}, {"args_json", a.args_json},
                      {"app_dir", a.app_dir}, {"source", a.source}, {"submitted", a.submitted},
                      {"runtime_env", a.runtime_env},
                      {"env_vars", a.prepared_env.env_vars},
                      {"working_dir", a.prepared_env.working_dir}, {"overrides", overrides},
                      {"code_key", a.code_key},
                      {"graph", Json::binary({a.graph.begin(), a.graph.end()})},
                      {"library_stamp", a.library_stamp}, {"build_id", a.build_id},
                      {"building", a.building}, {"build_failed", a.build_failed},
                      {"build_error", a.build_error}, {"deleting", a.deleting},
                      {"last_deployed_time_s", a.last_deployed_time_s}, {"ingress", a.ingress},
                      {"deployments", a.deployments}});
    }
    Json deps = Json::array();
    for (auto& [key, d] : deployments_) {
      Json replicas = Json::array();
      for (auto& [id, r] : d.replicas) {
        if (r.pid == 0) continue;  // not started yet: the replacement logic recreates it
        replicas.push_back({{"id", r.id}, {"state", static_cast<int>(r.state)}, {"pid", r.pid},
                            {"node_id", r.node_id}, {"data_address", r.data_address},
                            {"control_address", r.control_address}, {"log_file", r.log_file},
                            {"start_time_s", r.start_time_s}, {"version", r.version},
                            {"config_version", r.config_version}});
      }
      deps.push_back({{"app", d.app}, {"name", d.name}, {"options", config::ToJson(d.cfg)},
                      {"factory_key", d.factory_key},
                      {"init_args", Json::binary({d.init_args.begin(), d.init_args.end()})},
                      {"library_path", d.library_path}, {"app_dir", d.app_dir},
                      {"working_dir", d.working_dir}, {"env", d.env},
                      {"fingerprint", d.fingerprint},
                      {"config_fingerprint", d.config_fingerprint}, {"version", d.version},
                      {"config_version", d.config_version}, {"ingress", d.ingress},
                      {"deleting", d.deleting}, {"status", static_cast<int>(d.status.status)},
                      {"trigger", static_cast<int>(d.status.trigger)}, {"message", d.message},
                      {"startup_failures", d.startup_failures},
                      {"version_started", d.version_started},
                      {"terminally_failed", d.terminally_failed}, {"replicas", replicas}});
    }
    Json proxies = Json::object();
    for (auto& [node, p] : proxies_) {
      proxies[node] = {{"pid", p.pid}, {"http_port", p.http_port}, {"log_file", p.log_file}};
    }
    // shutting_down is not saved: a controller started later serves again.
    return {{"version", 1}, {"apps", apps}, {"deployments", deps}, {"proxies", proxies}};
  }

  static std::string Bytes(const Json& j) {
    const auto& b = j.get_binary();
    return std::string(b.begin(), b.end());
  }

  void RestoreLocked(const Json& snap, const std::map<int, std::string>& alive) {
    for (const Json& j : snap.at("apps")) {
      App a;
      a.name = j.at("name");
      if (!j.at("route_prefix").is_null()) a.route_prefix = j.at("route_prefix").get<std::string>();
      a.import_path = j.at("import_path");
      a.args_json = j.at("args_json");
      a.app_dir = j.at("app_dir");
      a.source = j.at("source");
      a.submitted = j.at("submitted");
      a.runtime_env = j.at("runtime_env");
      a.prepared_env.env_vars = j.at("env_vars").get<std::map<std::string, std::string>>();
      a.prepared_env.working_dir = j.at("working_dir");
      for (const Json& o : j.at("overrides")) {
        a.overrides.push_back({o.at("name").get<std::string>(), o.at("fields")});
      }
      a.code_key = j.at("code_key");
      a.graph = Bytes(j.at("graph"));
      a.library_stamp = j.at("library_stamp");
      a.build_id = j.at("build_id");
      a.building = j.at("building");
      a.build_failed = j.at("build_failed");
      a.build_error = j.at("build_error");
      a.deleting = j.at("deleting");
      a.last_deployed_time_s = j.at("last_deployed_time_s");
      a.ingress = j.at("ingress");
      a.deployments = j.at("deployments").get<std::vector<std::string>>();
      if (a.building) {
        // A build that died with the old controller is started again.
        bool running = false;
        for (auto& [pid, tag] : alive) running |= tag == "build:" + a.name;
        if (!running) StartBuildLocked(a);
      }
      apps_[a.name] = std::move(a);
    }
    for (const Json& j : snap.at("deployments")) {
      Deployment d;
      d.app = j.at("app");
      d.name = j.at("name");
      auto cfg = config::ResolveDeploymentConfig(j.at("options"));
      if (!cfg.ok()) throw std::runtime_error(std::string(cfg.status().message()));
      d.cfg = *cfg;
      d.factory_key = j.at("factory_key");
      d.init_args = Bytes(j.at("init_args"));
      d.library_path = j.at("library_path");
      d.app_dir = j.at("app_dir");
      d.working_dir = j.at("working_dir");
      d.env = j.at("env").get<std::map<std::string, std::string>>();
      d.fingerprint = j.at("fingerprint");
      d.config_fingerprint = j.at("config_fingerprint");
      d.version = j.at("version");
      d.config_version = j.at("config_version");
      d.ingress = j.at("ingress");
      d.deleting = j.at("deleting");
      d.status = {static_cast<DeploymentStatus>(j.at("status").get<int>()),
                   static_cast<StatusTrigger>(j.at("trigger").get<int>())};
      d.message = j.at("message");
      d.startup_failures = j.at("startup_failures");
      d.version_started = j.at("version_started");
      d.terminally_failed = j.at("terminally_failed");
      std::string key = DepKey(d.app, d.name);
      for (const Json& rj : j.at("replicas")) {
        Replica r;
        r.id = rj.at("id");
        r.dep_key = key;
        r.pid = rj.at("pid");
        auto it = alive.find(r.pid);
        if (it == alive.end() || it->second != "replica:" + r.id) {
          // Died while no controller was watching: replaced like any dead replica.
          if (!d.deleting) {
            d.status = Transition(d.status, DeploymentEvent::kHealthCheckFailed);
            d.message = "Replica " + r.id + " died while the controller was down.";
          }
          continue;
        }
        auto state = static_cast<ReplicaState>(rj.at("state").get<int>());
        r.node_id = rj.at("node_id");
        r.data_address = rj.at("data_address");
        r.control_address = rj.at("control_address");
        r.log_file = rj.at("log_file");
        r.start_time_s = rj.at("start_time_s");
        r.version = rj.at("version");
        r.config_version = rj.at("config_version");
        if (state == ReplicaState::kStopping) {
          StopPidLater(r.pid, 0);
          r.state = ReplicaState::kStopping;
        } else if (r.control_address.empty()) {
          // Not ready in the checkpoint: it may have reported to the old controller already,
          // so it cannot be adopted; it is stopped and the scale-up replaces it.
          StopPidLater(r.pid, 0);
          r.state = ReplicaState::kStopping;
        } else {
          r.state = ReplicaState::kRecovering;
          r.last_health = Clock::time_point{};  // checked at once
        }
        replica_index_[r.id] = key;
        d.replicas.emplace(r.id, std::move(r));
      }
      deployments_[key] = std::move(d);
    }
    for (auto& [node, p] : snap.at("proxies").items()) {
      Proxy proxy;
      proxy.pid = p.at("pid");
      proxy.http_port = p.at("http_port");
      proxy.log_file = p.at("log_file");
      proxy.status = "HEALTHY";
      proxies_[node] = proxy;
    }
  }

  /// Writes the checkpoint when the state changed since the last successful write. Runs on
  /// the loop thread outside the lock; a failed write (e.g. Redis down) is retried next step.
  void CheckpointIfChanged(std::string blob) {
    if (blob == last_checkpoint_) return;
    absl::Status st = kv_->Put(kCheckpointKey, blob);
    if (st.ok()) {
      if (checkpoint_failing_) spdlog::info("Checkpointing works again.");
      checkpoint_failing_ = false;
      last_checkpoint_ = std::move(blob);
    } else if (!checkpoint_failing_) {
      checkpoint_failing_ = true;
      spdlog::error("Cannot write the checkpoint: {}; serving continues, retrying.",
                    std::string(st.message()));
    }
  }

  void StepLocked(std::vector<std::function<void()>>& actions) {
    actions.swap(pending_actions_);
    auto now = Clock::now();
    std::vector<std::string> gone;
    for (auto& [key, dep] : deployments_) {
      ReconcileDeploymentLocked(dep, now, actions);
      if (dep.deleting && dep.replicas.empty()) gone.push_back(key);
    }
    for (auto& key : gone) {
      spdlog::info("Deployment {} deleted.", key);
      deployments_.erase(key);
    }
    // Applications finish deleting once their deployments are gone.
    for (auto it = apps_.begin(); it != apps_.end();) {
      App& app = it->second;
      bool remaining = false;
      for (auto& d : app.deployments) remaining |= deployments_.count(DepKey(app.name, d)) > 0;
      if (app.deleting && !remaining) {
        spdlog::info("Application '{}' deleted.", app.name);
        it = apps_.erase(it);
      } else {
        ++it;
      }
    }
    PublishLocked();
    ExpireWaitersLocked(now);
    // Checkpoint before acting (spec: target state is saved before replicas start or stop).
    std::vector<std::uint8_t> packed = Json::to_msgpack(SnapshotLocked());
    actions.insert(actions.begin(), [this, blob = std::string(packed.begin(), packed.end())] {
      CheckpointIfChanged(blob);
    });
    if (shutting_down_ && apps_.empty() && deployments_.empty() && !finished_) {
      finished_ = true;
      spdlog::info("All applications deleted; stopping the proxies and the node.");
      std::vector<int> proxy_pids;
      for (auto& [node, p] : proxies_) proxy_pids.push_back(p.pid);
      actions.push_back([this, proxy_pids] {
        for (int pid : proxy_pids) {
          v1::StopProcessRequest req;
          req.set_pid(pid);
          req.set_grace_s(2);
          v1::Empty empty;
          auto ctx = rpc::ContextWithDeadline(5);
          agent_->StopProcess(ctx.get(), req, &empty);
        }
        v1::Empty req, empty;
        auto ctx = rpc::ContextWithDeadline(5);
        agent_->Shutdown(ctx.get(), req, &empty);
      });
    }
  }

  void ReconcileDeploymentLocked(Deployment& dep, Clock::time_point now,
                                 std::vector<std::function<void()>>& actions) {
    int target = dep.deleting ? 0 : dep.cfg.num_replicas;
    std::vector<Replica*> active, outdated;
    int new_running = 0;
    for (auto& [id, r] : dep.replicas) {
      if (r.state == ReplicaState::kStopping) continue;
      active.push_back(&r);
      if (r.version != dep.version) {
        outdated.push_back(&r);
      } else if (r.state == ReplicaState::kRunning) {
        ++new_running;
      }
    }
    // Rolling update (spec §4.3): at most rollout_size old replicas stop at a time; the scale-up
    // below starts their replacements.
    if (!outdated.empty() && target > 0) {
      int rollout = std::max(static_cast<int>(0.2 * target), 1);
      int pending = target - new_running - static_cast<int>(outdated.size());
      int max_to_stop = std::max(rollout - pending, 0);
      std::stable_sort(outdated.begin(), outdated.end(), [](Replica* a, Replica* b) {
        return a->state == ReplicaState::kStarting && b->state != ReplicaState::kStarting;
      });
      for (int i = 0; i < max_to_stop && i < static_cast<int>(outdated.size()); ++i) {
        StopReplicaLocked(dep, *outdated[i], actions);
      }
      active.erase(std::remove_if(active.begin(), active.end(),
                                  [](Replica* r) { return r->state == ReplicaState::kStopping; }),
                   active.end());
    }
    int delta = target - static_cast<int>(active.size());
    if (delta > 0 && !dep.terminally_failed) {
      for (int i = 0; i < delta; ++i) StartReplicaLocked(dep, actions);
    } else if (delta < 0) {
      // Stop outdated replicas first, then ones not serving yet.
      std::stable_sort(active.begin(), active.end(), [&](Replica* a, Replica* b) {
        auto rank = [&](Replica* r) {
          return r->version != dep.version ? 0 : (r->state == ReplicaState::kStarting ? 1 : 2);
        };
        return rank(a) < rank(b);
      });
      for (int i = 0; i < -delta; ++i) StopReplicaLocked(dep, *active[i], actions);
    }
    for (auto& [id, r] : dep.replicas) {
      if (r.state == ReplicaState::kRecovering && !r.health_in_flight) {
        // Adopted after a controller restart: serving again once a health check passes.
        r.health_in_flight = true;
        r.last_health = now;
        actions.push_back(MakeHealthCheck(r.dep_key, r.id, r.control_address,
                                          dep.cfg.health_check_timeout_s));
        continue;
      }
      if (r.state != ReplicaState::kRunning) continue;
      // In-place update of reconfigurable options (user_config, max_ongoing_requests).
      if (!dep.deleting && r.version == dep.version && r.config_version != dep.config_version &&
          !r.updating) {
        r.updating = true;
        actions.push_back(MakeReconfigure(dep, r));
      }
      // Health checks.
      if (r.health_in_flight) continue;
      std::uniform_real_distribution<double> jitter(0.9, 1.1);
      if (now - r.last_health < std::chrono::duration<double>(dep.cfg.health_check_period_s *
                                                              jitter(rng_))) {
        continue;
      }
      r.health_in_flight = true;
      r.last_health = now;
      actions.push_back(MakeHealthCheck(r.dep_key, r.id, r.control_address,
                                        dep.cfg.health_check_timeout_s));
    }
    if (dep.deleting) return;
    int running = 0, transitional = 0;
    for (auto& [id, r] : dep.replicas) {
      if (r.state == ReplicaState::kRunning && r.version == dep.version &&
          r.config_version == dep.config_version && !r.updating) {
        ++running;
      } else {
        ++transitional;
      }
    }
    if (transitional == 0 && running == target && !dep.terminally_failed) {
      DeploymentStatusInfo next = Transition(dep.status, DeploymentEvent::kHealthy);
      if (!(next == dep.status)) {
        dep.status = next;
        dep.message.clear();
        dep.startup_failures = 0;
        spdlog::info("Deployment {}:{} is {}.", dep.app, dep.name, ToString(next.status));
      }
    }
  }

  std::function<void()> MakeReconfigure(const Deployment& dep, const Replica& r) {
    v1::ReconfigureRequest req;
    if (dep.cfg.user_config) {
      req.set_has_user_config(true);
      req.set_user_config_json(dep.cfg.user_config->dump());
    }
    req.set_max_ongoing_requests(dep.cfg.max_ongoing_requests);
    std::string dep_key = r.dep_key, id = r.id, address = r.control_address;
    int config_version = dep.config_version;
    return [this, req, dep_key, id, address, config_version] {
      struct Call {
        std::unique_ptr<grpc::ClientContext> ctx;
        v1::ReconfigureRequest req;
        v1::ReconfigureReply reply;
        std::unique_ptr<v1::ReplicaControl::Stub> stub;
      };
      auto call = std::make_shared<Call>();
      call->ctx = rpc::ContextWithDeadline(60);
      call->req = req;
      call->stub = v1::ReplicaControl::NewStub(rpc::ChannelTo(address));
      call->stub->async()->Reconfigure(
          call->ctx.get(), &call->req, &call->reply,
          [this, call, dep_key, id, config_version](grpc::Status st) {
            std::lock_guard lock(mu_);
            auto d = deployments_.find(dep_key);
            if (d == deployments_.end()) return;
            auto it = d->second.replicas.find(id);
            if (it == d->second.replicas.end()) return;
            it->second.updating = false;
            if (st.ok() && call->reply.ok()) {
              it->second.config_version = config_version;
              spdlog::info("Replica {} reconfigured.", id);
              return;
            }
            std::string error = st.ok() ? call->reply.error() : st.error_message();
            spdlog::error("Reconfiguring replica {} failed: {}; replacing it.", id, error);
            d->second.message = "reconfigure() failed on replica " + id + ": " + error;
            std::vector<std::function<void()>> actions;
            StopReplicaLocked(d->second, it->second, actions);
            for (auto& a : actions) pending_actions_.push_back(std::move(a));
          });
    };
  }

  std::function<void()> MakeHealthCheck(std::string dep_key, std::string id, std::string address,
                                        double timeout_s) {
    return [this, dep_key, id, address, timeout_s] {
      auto stub = v1::ReplicaControl::NewStub(rpc::ChannelTo(address));
      struct Call {
        std::unique_ptr<grpc::ClientContext> ctx;
        v1::Empty req;
        v1::HealthReply reply;
        std::unique_ptr<v1::ReplicaControl::Stub> stub;
      };
      auto call = std::make_shared<Call>();
      call->ctx = rpc::ContextWithDeadline(timeout_s);
      call->stub = std::move(stub);
      call->stub->async()->CheckHealth(
          call->ctx.get(), &call->req, &call->reply, [this, call, dep_key, id](grpc::Status st) {
            std::lock_guard lock(mu_);
            OnHealthResultLocked(dep_key, id, st.ok() && call->reply.ok(),
                                 st.ok() ? call->reply.error() : st.error_message());
          });
    };
  }

  void OnHealthResultLocked(const std::string& dep_key, const std::string& id, bool ok,
                            const std::string& error) {
    auto d = deployments_.find(dep_key);
    if (d == deployments_.end()) return;
    auto it = d->second.replicas.find(id);
    if (it == d->second.replicas.end()) return;
    Replica& r = it->second;
    r.health_in_flight = false;
    if (r.state == ReplicaState::kRecovering) {
      if (ok) {
        r.state = ReplicaState::kRunning;
        spdlog::info("Replica {} recovered (adopted, pid {}).", id, r.pid);
      } else {
        spdlog::warn("Replica {} did not answer after the controller restart ({}); replacing it.",
                     id, error);
        StopPidLater(r.pid, 0);
        d->second.replicas.erase(it);
        replica_index_.erase(id);
      }
      return;
    }
    if (ok) {
      r.health_failures = 0;
      return;
    }
    ++r.health_failures;
    spdlog::warn("Health check for replica {} failed ({} in a row): {}", id, r.health_failures,
                 error);
    if (r.health_failures >= kHealthFailureThreshold && r.state == ReplicaState::kRunning) {
      Deployment& dep = d->second;
      dep.status = Transition(dep.status, DeploymentEvent::kHealthCheckFailed);
      dep.message = "Replica " + id + " failed health checks " +
                    std::to_string(r.health_failures) + " times in a row: " + error;
      std::vector<std::function<void()>> actions;
      StopReplicaLocked(dep, r, actions);
      for (auto& a : actions) pending_actions_.push_back(std::move(a));
    }
  }

  void StartReplicaLocked(Deployment& dep, std::vector<std::function<void()>>& actions) {
    Replica r;
    r.id = RandomId(8);
    r.dep_key = DepKey(dep.app, dep.name);
    r.node_id = options_.node_id;
    r.version = dep.version;
    r.config_version = dep.config_version;
    r.start_time_s = NowUnixSeconds();
    replica_index_[r.id] = r.dep_key;
    v1::StartProcessRequest req;
    req.set_tag("replica:" + r.id);
    req.set_log_prefix("ServeReplica:" + dep.app + ":" + dep.name);
    req.set_binary("serve-replica");
    for (const std::string& a :
         {std::string("--controller-address"), address_, std::string("--replica-id"), r.id,
          std::string("--session-dir"), options_.session_dir, std::string("--node-id"),
          r.node_id}) {
      req.add_args(a);
    }
    for (auto& [k, v] : dep.env) {
      auto* kv = req.add_env();
      kv->set_key(k);
      kv->set_value(v);
    }
    if (!dep.working_dir.empty()) req.set_working_dir(dep.working_dir);
    std::string id = r.id, dep_key = r.dep_key;
    dep.replicas.emplace(r.id, std::move(r));
    actions.push_back([this, req, id, dep_key] {
      v1::StartProcessReply reply;
      auto ctx = rpc::ContextWithDeadline(10);
      grpc::Status st = agent_->StartProcess(ctx.get(), req, &reply);
      std::lock_guard lock(mu_);
      Replica* rep = FindReplicaLocked(id);
      if (rep == nullptr) return;
      if (st.ok()) {
        if (rep->pid == 0) rep->pid = reply.pid();
        if (rep->state == ReplicaState::kStopping) StopPidLater(reply.pid(), 0);
      } else {
        Deployment& d = deployments_.at(dep_key);
        d.replicas.erase(id);
        replica_index_.erase(id);
        OnStartupFailureLocked(d, "cannot start the replica process: " + st.error_message());
      }
    });
  }

  void StopReplicaLocked(Deployment& dep, Replica& r, std::vector<std::function<void()>>& actions) {
    bool graceful = r.state == ReplicaState::kRunning;
    r.state = ReplicaState::kStopping;
    if (r.pid == 0) return;  // not started yet; stopped once the agent answers
    int pid = r.pid;
    double grace = graceful ? dep.cfg.graceful_shutdown_timeout_s : 0;
    actions.push_back([this, pid, grace] { StopPid(pid, grace); });
  }

  void StopPid(int pid, double grace_s) {
    v1::StopProcessRequest req;
    req.set_pid(pid);
    req.set_grace_s(grace_s);
    v1::Empty empty;
    auto ctx = rpc::ContextWithDeadline(5);
    agent_->StopProcess(ctx.get(), req, &empty);
  }
  void StopPidLater(int pid, double grace_s) {
    pending_actions_.push_back([this, pid, grace_s] { StopPid(pid, grace_s); });
  }

  // ---------------------------------------------------------------- long poll

  std::map<std::string, v1::Update> CurrentObjectsLocked() {
    std::map<std::string, v1::Update> objects;
    v1::Update routes;
    routes.set_key(kRouteTableKey);
    auto* table = routes.mutable_route_table();
    for (auto& [name, app] : apps_) {
      if (app.deleting || !app.route_prefix || app.ingress.empty()) continue;
      auto* e = table->add_routes();
      e->set_route_prefix(*app.route_prefix);
      e->set_app_name(name);
      e->set_deployment(app.ingress);
    }
    objects[kRouteTableKey] = std::move(routes);
    for (auto& [key, dep] : deployments_) {
      v1::Update u;
      u.set_key(TargetsKey(key));
      auto* t = u.mutable_targets();
      t->set_is_available(!dep.terminally_failed);
      t->set_max_queued_requests(dep.cfg.max_queued_requests);
      for (auto& [id, r] : dep.replicas) {
        if (r.state != ReplicaState::kRunning) continue;
        auto* rr = t->add_replicas();
        rr->set_replica_id(r.id);
        rr->set_app_name(dep.app);
        rr->set_deployment(dep.name);
        rr->set_node_id(r.node_id);
        rr->set_node_ip(LocalNodeIp());
        rr->set_data_address(r.data_address);
        rr->set_max_ongoing_requests(dep.cfg.max_ongoing_requests);
        rr->set_pid(r.pid);
      }
      objects[u.key()] = std::move(u);
    }
    return objects;
  }

  void PublishLocked() {
    auto objects = CurrentObjectsLocked();
    // Keys that disappeared publish an empty object once.
    for (auto& [key, snap] : snapshots_) {
      if (!objects.count(key) && key != kRouteTableKey) {
        v1::Update u;
        u.set_key(key);
        u.mutable_targets()->set_is_available(false);
        objects[key] = std::move(u);
      }
    }
    std::vector<std::string> changed;
    for (auto& [key, obj] : objects) {
      std::string s = obj.SerializeAsString();
      auto it = snapshots_.find(key);
      if (it != snapshots_.end() && it->second.serialized == s) continue;
      Snapshot& snap = snapshots_[key];
      if (snap.id == 0) snap.id = std::uniform_int_distribution<int64_t>(1, 1000000)(rng_);
      else ++snap.id;
      snap.serialized = std::move(s);
      snap.update = obj;
      snap.update.set_snapshot_id(snap.id);
      changed.push_back(key);
    }
    if (changed.empty() && !recovery_announced_) return;
    // While adopted replicas are being verified, listeners keep their last snapshot (as Ray's
    // listen_for_change blocks until recovery is done).
    if (RecoveringLocked()) return;
    recovery_announced_ = false;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (FillUpdatesLocked(*it)) {
        it->reactor->Finish(grpc::Status::OK);
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }

  bool RecoveringLocked() const {
    for (auto& [key, d] : deployments_) {
      for (auto& [id, r] : d.replicas) {
        if (r.state == ReplicaState::kRecovering) return true;
      }
    }
    return false;
  }

  /// Adds every watched key whose snapshot differs from the caller's; true if any.
  bool FillUpdatesLocked(Waiter& w) {
    bool any = false;
    for (auto& [key, seen] : w.keys) {
      auto it = snapshots_.find(key);
      if (it == snapshots_.end() || it->second.id == seen) continue;
      *w.reply->add_updates() = it->second.update;
      any = true;
    }
    return any;
  }

  void ExpireWaitersLocked(Clock::time_point now) {
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (now >= it->deadline) {
        it->reply->set_timed_out(true);
        it->reactor->Finish(grpc::Status::OK);
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // ---------------------------------------------------------------- details

  Json DetailsLocked(const std::string& api_type) {
    std::string node_ip = LocalNodeIp();
    Json details = {
        {"controller_info",
         {{"node_id", options_.node_id}, {"node_ip", node_ip}, {"node_instance_id", ""},
          {"actor_id", ""}, {"actor_name", "SERVE_CONTROLLER_ACTOR"}, {"worker_id", ""},
          {"log_file_path", log_file_}}},
        {"proxy_location", options_.proxy_location},
        {"http_options",
         {{"host", options_.http_host}, {"port", options_.http_port},
          {"root_path", options_.root_path},
          {"request_timeout_s",
           options_.request_timeout_s < 0 ? Json(nullptr) : Json(options_.request_timeout_s)},
          {"keep_alive_timeout_s", options_.keep_alive_timeout_s}}},
        {"grpc_options", {{"port", options_.grpc_port}, {"grpc_servicer_functions", Json::array()}}},
        {"proxies", Json::object()},
        {"deploy_mode", "MULTI_APP"},
        {"applications", Json::object()},
        {"target_capacity", nullptr}};
    for (auto& [node, p] : proxies_) {
      details["proxies"][node] = {{"node_id", node}, {"node_ip", node_ip}, {"node_instance_id", ""},
                                  {"actor_id", ""}, {"actor_name", "SERVE_PROXY_ACTOR-" + node},
                                  {"worker_id", ""}, {"log_file_path", p.log_file},
                                  {"status", p.status}, {"pid", p.pid},
                                  {"http_port", p.http_port}};
      if (p.http_port > 0 && node == options_.node_id) details["http_options"]["port"] = p.http_port;
    }
    for (auto& [name, app] : apps_) {
      if (!api_type.empty() && app.source != api_type) continue;
      Json a = {{"name", name},
                {"route_prefix", app.route_prefix ? Json(*app.route_prefix) : Json(nullptr)},
                {"docs_path", nullptr},
                {"message", ""},
                {"last_deployed_time_s", app.last_deployed_time_s},
                {"deployed_app_config", app.submitted},
                {"source", app.source},
                {"ingress_deployment", app.ingress},
                {"deployments", Json::object()},
                {"external_scaler_enabled", false}};
      std::vector<std::pair<std::string, DeploymentStatusInfo>> statuses;
      for (auto& dname : app.deployments) {
        auto it = deployments_.find(DepKey(name, dname));
        if (it == deployments_.end()) continue;
        Deployment& dep = it->second;
        statuses.emplace_back(dname, dep.status);
        Json replicas = Json::array();
        for (auto& [id, r] : dep.replicas) {
          replicas.push_back(
              {{"node_id", r.node_id}, {"node_ip", node_ip}, {"node_instance_id", ""},
               {"actor_id", ""},
               {"actor_name", "SERVE_REPLICA::" + dep.app + "#" + dep.name + "#" + r.id},
               {"worker_id", ""}, {"log_file_path", r.log_file}, {"replica_id", r.id},
               {"state", ToString(r.state, r.updating)}, {"pid", r.pid},
               {"start_time_s", r.start_time_s}});
        }
        Json cfg = config::ToJson(dep.cfg);
        a["deployments"][dname] = {
            {"name", dname},
            {"status", ToString(dep.status.status)},
            {"status_trigger", ToString(dep.status.trigger)},
            {"message", dep.message},
            {"deployment_config", cfg},
            {"target_num_replicas", dep.deleting ? 0 : dep.cfg.num_replicas},
            {"required_resources", {{"CPU", dep.cfg.ray_actor_options.value("num_cpus", 1.0)}}},
            {"replicas", replicas}};
      }
      std::string message;
      AppStatus status;
      if (app.deleting) {
        status = AppStatus::kDeleting;
      } else if (app.build_failed) {
        status = AppStatus::kDeployFailed;
        message = app.build_error;
      } else if (app.building) {
        status = AppStatus::kDeploying;
      } else {
        status = DeriveAppStatus(statuses, &message);
      }
      a["status"] = ToString(status);
      a["message"] = message;
      details["applications"][name] = std::move(a);
    }
    return details;
  }

 public:
  void set_log_file(std::string f) { log_file_ = std::move(f); }
  std::string SessionName() override {
    return std::filesystem::path(options_.session_dir).filename().string();
  }

 private:
  const ControllerOptions& options_;
  std::unique_ptr<v1::Agent::Stub> agent_;
  std::unique_ptr<KvStore> kv_;
  std::string last_checkpoint_;      // loop thread only
  bool checkpoint_failing_ = false;  // loop thread only
  bool recovery_announced_ = true;   // first publish after start answers waiting listeners
  int last_proxy_port_ = 0;
  std::string address_;
  std::string log_file_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::mt19937_64 rng_;
  std::map<std::string, App> apps_;
  std::map<std::string, Deployment> deployments_;
  std::map<std::string, std::string> replica_index_;  // replica id -> deployment key
  std::map<std::string, Proxy> proxies_;
  std::map<std::string, Snapshot> snapshots_;
  std::list<Waiter> waiters_;
  std::vector<std::function<void()>> pending_actions_;
  bool shutting_down_ = false;
  bool finished_ = false;
};

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

}  // namespace

ControllerOptions LoadClusterOptions(ControllerOptions o) {
  auto text = ReadFile(o.session_dir + "/cluster.json");
  if (!text) return o;
  Json j = Json::parse(*text, nullptr, false);
  if (!j.is_object()) return o;
  o.http_host = j.value("http_host", o.http_host);
  o.http_port = j.value("http_port", o.http_port);
  o.root_path = j.value("root_path", o.root_path);
  o.request_timeout_s = j.value("request_timeout_s", o.request_timeout_s);
  o.keep_alive_timeout_s = j.value("keep_alive_timeout_s", o.keep_alive_timeout_s);
  o.grpc_port = j.value("grpc_port", o.grpc_port);
  o.proxy_location = j.value("proxy_location", o.proxy_location);
  o.dashboard_host = j.value("dashboard_host", o.dashboard_host);
  o.dashboard_port = j.value("dashboard_port", o.dashboard_port);
  o.app_dir = j.value("app_dir", o.app_dir);
  o.redis_address = j.value("redis_address", o.redis_address);
  o.redis_password = j.value("redis_password", o.redis_password);
  o.cluster_name = j.value("cluster_name", o.cluster_name);
  if (o.redis_address.empty()) o.redis_address = EnvString("SERVE_REDIS_ADDRESS", "");
  if (o.redis_password.empty()) o.redis_password = EnvString("SERVE_REDIS_PASSWORD", "");
  return o;
}

namespace {

absl::StatusOr<std::unique_ptr<KvStore>> OpenKvStore(const ControllerOptions& o) {
  if (o.redis_address.empty()) {
    auto store = FileKvStore::Create(o.session_dir + "/kv");
    if (!store.ok()) return store.status();
    return std::unique_ptr<KvStore>(std::move(*store));
  }
  auto redis = ParseRedisAddress(o.redis_address);
  if (!redis.ok()) return redis.status();
  if (!o.redis_password.empty()) redis->password = o.redis_password;
  redis->namespace_prefix = "serve:" + o.cluster_name + ":";
  auto store = RedisKvStore::Create(*redis);
  if (!store.ok()) return store.status();
  return std::unique_ptr<KvStore>(std::move(*store));
}

// The port of "host:port" / "http://host:port" stored in `file`, or `fallback`. A restarted
// controller binds the ports it had, so proxies, replicas and CLIs reconnect to it.
int PreviousPort(const std::string& file, int fallback) {
  auto text = ReadFile(file);
  if (!text) return fallback;
  auto colon = text->rfind(':');
  if (colon == std::string::npos) return fallback;
  int port = std::atoi(text->c_str() + colon + 1);
  return port > 0 ? port : fallback;
}

}  // namespace

int RunController(const ControllerOptions& base_options) {
  const ControllerOptions options = LoadClusterOptions(base_options);
  std::string log_file =
      options.session_dir + "/logs/serve/controller_" + std::to_string(::getpid()) + ".log";
  InitProcessLogging(log_file);
  ::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);

  auto kv = OpenKvStore(options);
  if (!kv.ok()) {
    spdlog::critical("Cannot open the state store: {}", std::string(kv.status().message()));
    std::fprintf(stderr, "serve-controller: cannot open the state store: %s\n",
                 std::string(kv.status().message()).c_str());
    ShutdownLogging();
    return kExitConfig;
  }
  spdlog::info("State store: {}.", options.redis_address.empty()
                                      ? options.session_dir + "/kv"
                                      : "redis " + options.redis_address);
  ControllerImpl impl(options, std::move(*kv));
  impl.set_log_file(log_file);
  int port = 0;
  std::string host = LocalNodeIp();
  int previous = PreviousPort(options.session_dir + "/controller_address", 0);
  auto server = rpc::StartGrpcServer(host, previous, {&impl}, &port);
  if (!server && previous != 0) server = rpc::StartGrpcServer(host, 0, {&impl}, &port);
  if (!server) {
    spdlog::critical("Cannot start the controller's gRPC server.");
    return 1;
  }
  std::string address = host + ":" + std::to_string(port);
  impl.set_address(address);
  spdlog::info("Controller listening on {} (session {}).", address, options.session_dir);

  // REST API on the dashboard port, served from its own I/O thread.
  boost::asio::io_context rest_io(1);
  rpc::HttpServerOptions rest_options;
  rest_options.host = options.dashboard_host;
  rest_options.port = PreviousPort(options.session_dir + "/dashboard_address", options.dashboard_port);
  rest_options.access_log_name = "dashboard";
  rpc::HttpServer rest(
      rest_io,
      [&impl](rpc::HttpServerRequest req, std::function<void(rpc::HttpServerResponse)> done) {
        done(HandleRest(impl, req));
      },
      rest_options);
  unsigned short rest_port = 0;
  try {
    rest_port = rest.Listen();
  } catch (const std::exception& e) {
    spdlog::critical("Cannot serve the REST API on {}:{}: {}", options.dashboard_host,
                     options.dashboard_port, e.what());
    std::fprintf(stderr, "Cannot serve the REST API on %s:%d: %s\n",
                 options.dashboard_host.c_str(), options.dashboard_port, e.what());
    return 1;
  }
  std::thread rest_thread([&] { rest_io.run(); });
  std::string dashboard = "http://" + options.dashboard_host + ":" + std::to_string(rest_port);
  spdlog::info("REST API at {}.", dashboard);

  bool proxy_alive = impl.Recover();
  if (!proxy_alive) impl.StartProxy();
  if (!WriteFileAtomic(options.session_dir + "/dashboard_address", dashboard) ||
      !WriteFileAtomic(options.session_dir + "/controller_address", address)) {
    spdlog::critical("Cannot write addresses into {}.", options.session_dir);
    return 1;
  }

  std::thread loop([&] { impl.RunLoop(g_stop); });
  loop.join();
  spdlog::info("Controller stopping.");
  rest.Close();
  rest_io.stop();
  rest_thread.join();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  ShutdownLogging();
  return 0;
}

}  // namespace serve::controller
