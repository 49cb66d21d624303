#include "controller/controller.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/system/system_error.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/logging.h"
#include "common/util.h"
#include "config/limits.h"
#include "controller/clock.h"
#include "controller/control_loop.h"
#include "controller/dashboard.h"
#include "controller/grpc_clients.h"
#include "controller/rest_api.h"
#include "controller/service.h"
#include "controller/storage/file_kv_store.h"
#include "controller/storage/kv_store.h"
#include "controller/storage/redis_kv_store.h"
#include "metrics/export.h"
#include "metrics/registry.h"
#include "rpc/auth.h"
#include "rpc/grpc_util.h"
#include "rpc/http_server.h"
#include "serve/v1/agent.grpc.pb.h"

// The composition root: options, the state store, the clients, the control loop, and the
// gRPC and REST servers in front of it.

namespace serve::controller {
namespace {

using Json = nlohmann::json;

// The head agent does not restart a controller exiting with kExitConfig: it stops the node. The
// controller first writes the reason, one line, to <session>/startup_error, which the command
// that started the instance prints (launch/cluster.cc).
constexpr int kExitConfig = 78;

int ExitConfig(const ControllerOptions& o, const std::string& reason) {
  spdlog::critical("{}", reason);
  std::fprintf(stderr, "%s\n", reason.c_str());
  WriteFileAtomic(o.session_dir + "/startup_error", reason);
  ShutdownLogging();
  return kExitConfig;
}

// The reason alone ("Address already in use"), without Boost's source location.
std::string ListenErrorReason(const std::exception& e) {
  if (auto* se = dynamic_cast<const boost::system::system_error*>(&e)) return se->code().message();
  std::string what = e.what();
  if (auto bracket = what.find(" ["); bracket != std::string::npos) what.resize(bracket);
  return what;
}

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
  o.ssl_keyfile = j.value("ssl_keyfile", o.ssl_keyfile);
  o.ssl_certfile = j.value("ssl_certfile", o.ssl_certfile);
  o.ssl_keyfile_password = j.value("ssl_keyfile_password", o.ssl_keyfile_password);
  o.ssl_ca_certs = j.value("ssl_ca_certs", o.ssl_ca_certs);
  o.grpc_port = j.value("grpc_port", o.grpc_port);
  o.grpc_servicer_functions = j.value("grpc_servicer_functions", o.grpc_servicer_functions);
  o.grpc_request_timeout_s = j.value("grpc_request_timeout_s", o.grpc_request_timeout_s);
  o.proxy_location = j.value("proxy_location", o.proxy_location);
  o.dashboard_host = j.value("dashboard_host", o.dashboard_host);
  o.dashboard_port = j.value("dashboard_port", o.dashboard_port);
  o.app_dir = j.value("app_dir", o.app_dir);
  o.redis_address = j.value("redis_address", o.redis_address);
  o.redis_password = j.value("redis_password", o.redis_password);
  o.cluster_name = j.value("cluster_name", o.cluster_name);
  o.controller_port = j.value("controller_port", o.controller_port);
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
  ControllerOptions loaded = LoadClusterOptions(base_options);
  // The head agent resolved this node's resources before starting the controller.
  if (auto node = ReadFile(loaded.session_dir + "/node.json")) {
    Json j = Json::parse(*node, nullptr, false);
    if (j.is_object() && j.contains("resources")) loaded.head_resources_json = j["resources"].dump();
  }
  const ControllerOptions options = std::move(loaded);
  std::string log_file =
      options.session_dir + "/logs/serve/controller_" + std::to_string(::getpid()) + ".log";
  InitProcessLogging({"controller", std::to_string(::getpid())}, log_file);
  ::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);

  auto kv = OpenKvStore(options);
  if (!kv.ok()) {
    return ExitConfig(options,
                      "Cannot open the state store: " + std::string(kv.status().message()));
  }
  spdlog::info("State store: {}.", options.redis_address.empty()
                                      ? options.session_dir + "/kv"
                                      : "redis " + options.redis_address);
  SystemClock clock;
  SystemRandom random;
  GrpcAgentClient agent(options.agent_address);
  GrpcReplicaClient replicas;
  ControlLoop loop(options, clock, random, agent, replicas, **kv);
  loop.set_agent_factory([](const std::string& address) -> std::unique_ptr<AgentClient> {
    return std::make_unique<GrpcAgentClient>(address);
  });
  loop.set_log_file(log_file);
  ControllerService service(loop);
  metrics::Pusher metrics_pusher("controller");
  int port = 0;
  std::string host = LocalNodeIp();
  int previous = PreviousPort(options.session_dir + "/controller_address", 0);
  auto server = rpc::StartGrpcServer(host, previous > 0 ? previous : options.controller_port,
                                     {&service}, &port);
  if (!server && previous != 0) server = rpc::StartGrpcServer(host, 0, {&service}, &port);
  if (!server) {
    if (options.controller_port > 0 && previous == 0) {
      return ExitConfig(options, "Cannot listen on " + host + ":" +
                                     std::to_string(options.controller_port) +
                                     " (--controller-port): the port is taken or not allowed");
    }
    spdlog::critical("Cannot start the controller's gRPC server.");
    return 1;
  }
  std::string address = host + ":" + std::to_string(port);
  loop.set_address(address);
  spdlog::info("Controller listening on {} (session {}).", address, options.session_dir);

  // REST API and the Serve page on the dashboard port, served from its own I/O thread.
  DashboardOptions dashboard_options{FindWebDir(), options.session_dir + "/logs"};
  if (dashboard_options.web_dir.empty()) spdlog::warn("The dashboard's web files were not found.");
  boost::asio::io_context rest_io(1);
  rpc::HttpServerOptions rest_options;
  rest_options.host = options.dashboard_host;
  // A restarted controller binds the REST port it had; at first start, the configured one.
  bool restarted = ReadFile(options.session_dir + "/dashboard_address").has_value();
  rest_options.port = PreviousPort(options.session_dir + "/dashboard_address", options.dashboard_port);
  rest_options.access_log_name = "dashboard";
  // Config documents are the largest bodies the REST API takes.
  rest_options.max_body_bytes = config::limits::kMaxDocumentBytes;
  rpc::ApplyListenerLimitsFromEnvironment(rest_options);
  // Cluster-wide metrics: every node agent's merged text (one node: the head's).
  auto metrics_stub = v1::Agent::NewStub(rpc::ChannelTo(options.agent_address));
  MetricsSource cluster_metrics = [&metrics_stub]() -> absl::StatusOr<std::string> {
    auto ctx = rpc::ContextWithDeadline(5);
    v1::Empty empty;
    v1::MetricsText text;
    grpc::Status st = metrics_stub->GetMetrics(ctx.get(), empty, &text);
    if (!st.ok()) return rpc::FromGrpcStatus(st);
    return metrics::MergeText({text.text()});
  };
  // Every request on this port passes the token and Host checks first (docs/security.md).
  const rpc::RestAuthOptions rest_auth = rpc::RestAuthOptions::FromEnvironment();
  rpc::HttpServer rest(
      rest_io,
      [&loop, &dashboard_options, &cluster_metrics, &rest_auth](
          rpc::HttpServerRequest req, std::function<void(rpc::HttpServerResponse)> done) {
        if (auto refused = rpc::CheckRestRequest(rest_auth, req)) return done(*std::move(refused));
        if (auto page = HandleDashboard(dashboard_options, loop, req)) return done(*std::move(page));
        done(HandleRest(loop, req, cluster_metrics));
      },
      rest_options);
  unsigned short rest_port = 0;
  try {
    rest_port = rest.Listen();
  } catch (const std::exception& e) {
    std::string reason = "The REST API cannot listen on " + options.dashboard_host + ":" +
                         std::to_string(rest_options.port) + ": " + ListenErrorReason(e);
    // At first start the port is the user's choice: a configuration error. A restarted
    // controller exits plainly and the agent restarts it with backoff.
    if (!restarted) return ExitConfig(options, reason);
    spdlog::critical("{}", reason);
    std::fprintf(stderr, "%s\n", reason.c_str());
    ShutdownLogging();
    return 1;
  }
  std::thread rest_thread([&] { rest_io.run(); });
  std::string dashboard = "http://" + options.dashboard_host + ":" + std::to_string(rest_port);
  spdlog::info("REST API at {}: {}.", dashboard,
               rest_auth.token.empty()        ? "open (this process has no cluster token)"
               : rest_auth.trust_loopback ? "the cluster token is required except from loopback"
                                          : "the cluster token is required");

  loop.Recover();
  if (!WriteFileAtomic(options.session_dir + "/dashboard_address", dashboard) ||
      !WriteFileAtomic(options.session_dir + "/controller_address", address)) {
    spdlog::critical("Cannot write addresses into {}.", options.session_dir);
    return 1;
  }

  std::thread loop_thread([&] { loop.Run(g_stop); });
  loop_thread.join();
  spdlog::info("Controller stopping.");
  rest.Close();
  rest_io.stop();
  rest_thread.join();
  // The listeners were answered when the loop ended; a long poll that arrived after that would
  // hold the shutdown for the whole deadline, so keep it short.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
  ShutdownLogging();
  return 0;
}

}  // namespace serve::controller
