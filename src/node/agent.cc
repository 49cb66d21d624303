#include "node/agent.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/logging.h"
#include "common/util.h"
#include "metrics/export.h"
#include "node/membership.h"
#include "node/metrics_endpoint.h"
#include "node/process_table.h"
#include "rpc/auth.h"
#include "rpc/grpc_util.h"
#include "serve/v1/agent.grpc.pb.h"
#include "serve/v1/controller.grpc.pb.h"

namespace serve::node {
namespace {

using internal::Child;
using internal::ExitText;
using internal::ProcessTable;

class AgentService final : public v1::Agent::Service {
 public:
  AgentService(ProcessTable& table, metrics::NodeStore& metrics, std::function<void()> shutdown,
               std::string session_dir)
      : table_(table),
        metrics_(metrics),
        shutdown_(std::move(shutdown)),
        session_dir_(std::move(session_dir)) {}
  grpc::Status StartProcess(grpc::ServerContext*, const v1::StartProcessRequest* req,
                            v1::StartProcessReply* reply) override {
    v1::StartProcessRequest copy = *req;
    // Only our own binaries may be started, resolved next to this one.
    if (copy.binary().find('/') != std::string::npos) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "binary must be a bare serve binary name"};
    }
    copy.set_binary(SiblingBinary(copy.binary()));
    // Processes keep their logs in this node's session directory, not the controller's.
    for (int i = 0; i + 1 < copy.args_size(); ++i) {
      if (copy.args(i) == "--session-dir") copy.set_args(i + 1, session_dir_);
    }
    std::string error;
    pid_t pid = table_.Start(copy, &error);
    if (pid < 0) return {grpc::StatusCode::INTERNAL, "cannot start " + req->binary() + ": " + error};
    reply->set_pid(pid);
    return grpc::Status::OK;
  }
  grpc::Status ListProcesses(grpc::ServerContext*, const v1::Empty*,
                             v1::ListProcessesReply* reply) override {
    for (const Child& c : table_.List()) {
      auto* p = reply->add_processes();
      p->set_pid(c.pid);
      p->set_tag(c.tag);
    }
    return grpc::Status::OK;
  }
  grpc::Status StopProcess(grpc::ServerContext*, const v1::StopProcessRequest* req,
                           v1::Empty*) override {
    table_.Stop(req->pid(), req->grace_s());
    return grpc::Status::OK;
  }
  grpc::Status Shutdown(grpc::ServerContext*, const v1::Empty*, v1::Empty*) override {
    shutdown_();
    return grpc::Status::OK;
  }
  grpc::Status PushMetrics(grpc::ServerContext*, const v1::PushMetricsRequest* req,
                           v1::Empty*) override {
    metrics_.Put(req->pid(), req->tag(), req->text());
    return grpc::Status::OK;
  }
  grpc::Status GetMetrics(grpc::ServerContext*, const v1::Empty*, v1::MetricsText* reply) override {
    reply->set_text(metrics_.Text());
    return grpc::Status::OK;
  }

 private:
  ProcessTable& table_;        // Not owned; must outlive this.
  metrics::NodeStore& metrics_;  // Not owned; must outlive this.
  std::function<void()> shutdown_;
  std::string session_dir_;
};

std::atomic<bool> g_signalled{false};
std::atomic<int> g_signal_count{0};
std::atomic<int> g_last_signal{0};
constexpr int kExitConfig = 78;
void OnSignal(int sig) {
  g_last_signal = sig;
  ++g_signal_count;
  g_signalled = true;
}

/// Asks the controller at `address` to drain `node_id`.
grpc::Status RequestDrain(const std::string& address, const std::string& node_id) {
  auto stub = v1::Controller::NewStub(rpc::ChannelTo(address));
  v1::DrainNodeRequest req;
  req.set_node_id(node_id);
  req.set_deadline_s(EnvDouble("SERVE_NODE_DRAIN_DEADLINE_S", 0));
  auto ctx = rpc::ContextWithDeadline(5);
  v1::Empty empty;
  return stub->DrainNode(ctx.get(), req, &empty);
}

}  // namespace

int RunAgent(const AgentOptions& options) {
  std::string node_id = options.node_id.empty() ? RandomId(28) : options.node_id;
  // LocalNodeIp() of this process and of every child it starts.
  if (!options.node_ip.empty()) ::setenv("SERVE_NODE_IP", options.node_ip.c_str(), 1);
  // Children get $SERVE_CLUSTER_TOKEN_FILE naming <session>/cluster_token. Before any thread.
  if (absl::Status st =
          rpc::AdoptClusterToken(options.token_file, options.session_dir + "/cluster_token");
      !st.ok()) {
    std::cerr << "serve-agent: " << st.message() << "\n";
    WriteFileAtomic(options.session_dir + "/startup_error", std::string(st.message()));
    return 2;
  }
  nlohmann::json labels = nlohmann::json::object();
  if (!options.labels_json.empty()) {
    labels = nlohmann::json::parse(options.labels_json, nullptr, false);
    bool strings = labels.is_object();
    for (auto& [k, v] : labels.items()) strings &= v.is_string();
    if (!strings) {
      std::cerr << "serve-agent: --labels: must be a JSON object of strings (got "
                << options.labels_json << ")\n";
      return 2;
    }
  }
  NodeResources resources;
  try {
    ResourceOverrides overrides = options.resources;
    // $SERVE_NUM_CPUS: the default of --num-cpus (e.g. a test environment emulating a larger
    // node than the machine it runs on).
    if (!overrides.num_cpus && !EnvString("SERVE_NUM_CPUS", "").empty()) {
      overrides.num_cpus = EnvDouble("SERVE_NUM_CPUS", 0);
    }
    resources = ResolveNodeResources(overrides, SystemProbe());
  } catch (const std::invalid_argument& e) {
    std::cerr << "serve-agent: " << e.what() << "\n";
    return 2;
  }
  InitProcessLogging({"agent", node_id}, options.session_dir + "/logs/serve/agent.log", {},
                     /*to_stderr=*/false);
  WriteFileAtomic(options.session_dir + "/node.json",
                  nlohmann::json{{"node_id", node_id}, {"node_ip", LocalNodeIp()},
                                 {"resources", resources.ToJson()}}
                      .dump());
  spdlog::info("Node {} resources: {}", node_id, resources.ToJson().dump());
  ::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);

  ProcessTable table(options);
  std::mutex shutdown_mu;
  std::condition_variable shutdown_cv;
  bool shutdown = false;
  auto request_shutdown = [&] {
    std::lock_guard lock(shutdown_mu);
    shutdown = true;
    shutdown_cv.notify_all();
  };

  std::string controller_file = options.session_dir + "/controller_address";
  std::string startup_error_file = options.session_dir + "/startup_error";
  // The head agent restarts a controller that dies, after kRestartBaseS * 2^(n-1) s (at most
  // kRestartCapS) for the n-th exit in a row of a controller that ran less than kStableS. Exit
  // code 78 (EX_CONFIG) means it cannot run with this configuration, and kMaxStartFailures
  // exits in a row before any controller was ready (wrote controller_address) mean it cannot
  // start: either way the node stops, with the reason in <session>/startup_error.
  constexpr double kRestartBaseS = 0.25;
  constexpr double kRestartCapS = 10;
  constexpr double kStableS = 30;
  constexpr int kMaxStartFailures = 4;
  using SteadyTime = std::chrono::steady_clock::time_point;
  std::optional<SteadyTime> controller_restart_at;  // guarded by shutdown_mu
  SteadyTime controller_started_at{};               // guarded by shutdown_mu
  int controller_failures = 0;                      // guarded by shutdown_mu
  int controller_restarts = 0;                      // guarded by shutdown_mu
  bool controller_ever_ready = false;               // guarded by shutdown_mu
  auto give_up = [&](const std::string& reason) {
    spdlog::error("{} Stopping the node.", reason);
    if (!ReadFile(startup_error_file)) WriteFileAtomic(startup_error_file, reason);
  };
  table.OnExit([&](const Child& child, int code) {
    if (child.tag == "controller") {
      if (child.stop_requested || g_signalled) return;
      std::lock_guard lock(shutdown_mu);
      if (shutdown) return;
      controller_ever_ready |= std::filesystem::exists(controller_file);
      if (code == kExitConfig) {
        give_up("The controller cannot run with this configuration.");
        shutdown = true;
        shutdown_cv.notify_all();
        return;
      }
      auto now = std::chrono::steady_clock::now();
      if (now - controller_started_at >= std::chrono::duration<double>(kStableS)) {
        controller_failures = 0;
      }
      int n = ++controller_failures;
      if (!controller_ever_ready && n >= kMaxStartFailures) {
        give_up("The controller " + ExitText(code) + " " + std::to_string(n) +
                " times in a row before it was ready; see " + options.session_dir +
                "/logs/serve/controller_*.log.");
        shutdown = true;
        shutdown_cv.notify_all();
        return;
      }
      double delay = std::min(kRestartBaseS * std::pow(2.0, n - 1), kRestartCapS);
      spdlog::error("The controller (pid {}) {}; restarting it in {:.2f} s (restart {}).",
                    child.pid, ExitText(code), delay, ++controller_restarts);
      controller_restart_at =
          now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                    std::chrono::duration<double>(delay));
      shutdown_cv.notify_all();
      return;
    }
    auto address =
        options.head ? ReadFile(controller_file) : std::optional(options.controller_address);
    if (!address) return;
    v1::ProcessExit msg;
    msg.set_node_id(node_id);
    msg.set_pid(child.pid);
    msg.set_tag(child.tag);
    msg.set_exit_code(code);
    auto stub = v1::Controller::NewStub(rpc::ChannelTo(*address));
    auto ctx = rpc::ContextWithDeadline(5);
    v1::Empty empty;
    grpc::Status st = stub->ReportProcessExit(ctx.get(), msg, &empty);
    if (!st.ok()) spdlog::warn("Cannot report exit of {}: {}", child.tag, st.error_message());
  });

  metrics::NodeStore metrics_store(metrics::StaleSeconds());
  AgentService service(table, metrics_store, request_shutdown, options.session_dir);
  int port = 0;
  auto server = rpc::StartGrpcServer(LocalNodeIp(), 0, {&service}, &port);
  if (!server) {
    std::cerr << "serve-agent: cannot start its gRPC server\n";
    return 1;
  }
  std::string address = LocalNodeIp() + ":" + std::to_string(port);
  table.SetAgentAddress(address);
  std::unique_ptr<MetricsEndpoint> metrics_endpoint;
  try {
    int metrics_port = options.metrics_export_port;
    try {
      metrics_endpoint = std::make_unique<MetricsEndpoint>(
          metrics_store, LocalNodeIp(),
          metrics_port < 0 ? kDefaultMetricsExportPort : metrics_port);
    } catch (const std::exception& e) {
      if (metrics_port >= 0) throw;
      spdlog::warn("{}; using a free port instead.", e.what());
      metrics_endpoint = std::make_unique<MetricsEndpoint>(metrics_store, LocalNodeIp(), 0);
    }
  } catch (const std::exception& e) {
    std::string reason = std::string("The node agent ") + e.what() + ".";
    spdlog::error("{}", reason);
    WriteFileAtomic(startup_error_file, reason);
    server->Shutdown(std::chrono::system_clock::now());
    ShutdownLogging();
    return kExitConfig;
  }
  WriteFileAtomic(options.session_dir + "/metrics_address",
                  "http://" + metrics_endpoint->address());
  UpdateServiceDiscovery(options.session_dir, metrics_endpoint->address(), /*add=*/true);
  WriteFileAtomic(options.session_dir + "/agent_address", address);
  WriteFileAtomic(options.session_dir + "/agent_pid", std::to_string(::getpid()));
  spdlog::info("Node agent {} listening on {}; metrics at http://{}/metrics.", node_id, address,
               metrics_endpoint->address());

  std::function<void()> start_controller = [&] {
    {
      std::lock_guard lock(shutdown_mu);
      controller_started_at = std::chrono::steady_clock::now();
    }
    v1::StartProcessRequest req;
    req.set_tag("controller");
    req.set_log_prefix("ServeController");
    req.set_binary(SiblingBinary("serve-controller"));
    for (const std::string& a : {std::string("--session-dir"), options.session_dir,
                                 std::string("--agent-address"), address,
                                 std::string("--node-id"), node_id}) {
      req.add_args(a);
    }
    std::string error;
    if (table.Start(req, &error) < 0) {
      spdlog::error("Cannot start the controller: {}", error);
      request_shutdown();
    }
  };
  if (options.head) start_controller();
  std::unique_ptr<Membership> membership;
  if (!options.head) {
    v1::RegisterNodeRequest join;
    join.set_node_id(node_id);
    join.set_node_ip(LocalNodeIp());
    join.set_agent_address(address);
    const nlohmann::json offered = resources.ToJson();
    for (auto& [k, v] : offered.items()) (*join.mutable_resources())[k] = v.get<double>();
    for (auto& [k, v] : labels.items()) (*join.mutable_labels())[k] = v.get<std::string>();
    std::string joined_file = options.session_dir + "/head_address";
    membership = std::make_unique<Membership>(
        options.controller_address, join,
        Membership::Callbacks{
            [&options, joined_file] { WriteFileAtomic(joined_file, options.controller_address); },
            [&] { table.StopAll(EnvDouble("SERVE_AGENT_STOP_GRACE_S", 10)); },
            [&](const std::string& reason) {
              if (reason.find("drained") != std::string::npos) {
                spdlog::info("Node {} is drained; stopping.", node_id);
              } else {
                give_up("The controller at " + options.controller_address +
                        " refused this node: " + reason + ".");
              }
              request_shutdown();
            }});
  }

  {
    // A worker's first SIGTERM drains the node (spec §4.6): the controller moves its replicas
    // away and then declares it DEAD ("drained"), which stops this agent. SIGINT, a second
    // signal, or a controller that cannot be asked stop it at once.
    int signals_handled = 0;
    std::unique_lock lock(shutdown_mu);
    while (!shutdown) {
      if (g_signal_count > signals_handled) {
        bool drain = !options.head && signals_handled == 0 && g_last_signal == SIGTERM;
        signals_handled = g_signal_count;
        if (!drain) break;
        lock.unlock();
        grpc::Status st = RequestDrain(options.controller_address, node_id);
        lock.lock();
        if (!st.ok()) {
          spdlog::warn("SIGTERM: cannot drain this node ({}); stopping now.", st.error_message());
          break;
        }
        spdlog::info("SIGTERM: draining node {}; it stops once its replicas have moved (a second "
                     "signal stops it at once).", node_id);
        continue;
      }
      if (controller_restart_at && std::chrono::steady_clock::now() >= *controller_restart_at) {
        controller_restart_at.reset();
        lock.unlock();
        start_controller();
        lock.lock();
        continue;
      }
      shutdown_cv.wait_for(lock, std::chrono::milliseconds(50));
    }
  }
  request_shutdown();
  membership.reset();
  spdlog::info("Node agent stopping its processes.");
  table.StopAll(EnvDouble("SERVE_AGENT_STOP_GRACE_S", 10));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  UpdateServiceDiscovery(options.session_dir, metrics_endpoint->address(), /*add=*/false);
  metrics_endpoint.reset();
  std::error_code ec;
  std::filesystem::remove(options.session_dir + "/metrics_address", ec);
  std::filesystem::remove(options.session_dir + "/agent_address", ec);
  std::filesystem::remove(options.session_dir + "/controller_address", ec);
  std::filesystem::remove(options.session_dir + "/dashboard_address", ec);
  std::filesystem::remove(options.session_dir + "/head_address", ec);
  spdlog::info("Node agent stopped.");
  ShutdownLogging();
  return 0;
}

}  // namespace serve::node
