#include "proxy/proxy.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/system_error.hpp>
#include <spdlog/spdlog.h>

#include "common/ids.h"
#include "common/logging.h"
#include "common/util.h"
#include "metrics/export.h"
#include "proxy/grpc_proxy.h"
#include "proxy/request_handler.h"
#include "router/router.h"
#include "rpc/grpc_util.h"
#include "serve/v1/controller.grpc.pb.h"

namespace serve::proxy {
namespace asio = boost::asio;

namespace {

// Contract with the controller (controller/proxy_state.cc): a proxy that cannot bind its HTTP
// port, or cannot use its TLS files, writes one line naming the address (or file) and the
// reason to ProxyStartupErrorFile() and exits with kExitCannotListen; the controller shows
// that line as the proxy's status message.
constexpr int kExitCannotListen = 73;  // EX_CANTCREAT

std::string ProxyStartupErrorFile(const ProxyOptions& o) {
  return o.session_dir + "/proxy_" + o.node_id + ".error";
}

// The reason alone ("Address already in use"), without Boost's source location.
std::string ListenErrorReason(const std::exception& e) {
  if (auto* se = dynamic_cast<const boost::system::system_error*>(&e)) return se->code().message();
  std::string what = e.what();
  if (auto bracket = what.find(" ["); bracket != std::string::npos) what.resize(bracket);
  return what;
}

// Records why the proxy cannot start (the contract above) and returns its exit code.
int FailStartup(const ProxyOptions& o, const std::string& line) {
  spdlog::critical("{}", line);
  WriteFileAtomic(ProxyStartupErrorFile(o), line);
  ShutdownLogging();
  return kExitCannotListen;
}

}  // namespace

int RunProxy(const ProxyOptions& options) {
  const std::string log_name = "proxy_" + LocalNodeIp() + ".log";
  std::string log_file = options.session_dir + "/logs/serve/" + log_name;
  InitProcessLogging({"proxy", LocalNodeIp()}, log_file);
  ::signal(SIGPIPE, SIG_IGN);

  asio::io_context io(1);
  router::Router router(io.get_executor(), options.node_id);
  router::MetricsOptions metrics;
  metrics.controller_address = options.controller_address;
  metrics.source = "proxy:" + options.node_id;
  router.EnableMetrics(std::move(metrics));
  RequestHandler handler(router, io.get_executor(), options.request_timeout_s);
  ProxyMetrics proxy_metrics(options.node_id, LocalNodeIp());
  handler.set_metrics(&proxy_metrics);
  metrics::Pusher metrics_pusher("proxy:" + options.node_id);
  rpc::HttpServerOptions http_options;
  http_options.host = options.http_host;
  http_options.port = options.http_port;
  http_options.max_header_bytes = options.max_header_bytes;
  http_options.max_body_bytes = options.max_body_bytes;
  http_options.keep_alive_timeout_s = options.keep_alive_timeout_s;
  // The environment overrides keep_alive_timeout_s when set (> 0), as in Ray Serve.
  double env_keep_alive = EnvDouble("RAY_SERVE_HTTP_KEEP_ALIVE_TIMEOUT_S",
                                    EnvDouble("SERVE_HTTP_KEEP_ALIVE_TIMEOUT_S", 0));
  if (env_keep_alive > 0) http_options.keep_alive_timeout_s = env_keep_alive;
  rpc::ApplyListenerLimitsFromEnvironment(http_options);
  http_options.access_log_name = "proxy " + LocalNodeIp();
  // The TLS files are checked before anything listens: a bad file fails the start-up with a
  // line naming the field and the file (shown by `serve run`/`serve start`).
  std::optional<rpc::TlsMaterial> tls;
  if (options.tls.enabled()) {
    auto material = rpc::LoadTlsMaterial(options.tls);
    try {
      if (material.ok()) http_options.tls = rpc::MakeServerSslContext(*material);
    } catch (const std::exception& e) {
      material = absl::InvalidArgumentError(ListenErrorReason(e));
    }
    if (!material.ok()) {
      return FailStartup(options, "Cannot use the TLS files in http_options: " +
                                      std::string(material.status().message()));
    }
    tls = *std::move(material);
  }
  rpc::HttpServer server(
      io, [&handler](ProxyRequest req, auto done) { handler.Handle(std::move(req), std::move(done)); },
      http_options);
  unsigned short port = 0;
  try {
    // Connections wait in the backlog until the route table arrives, so that a restarted
    // proxy does not answer 404 for routes it has not heard of yet.
    port = server.Listen(/*accept_now=*/false);
  } catch (const std::exception& e) {
    return FailStartup(options, "Cannot listen on " + options.http_host + ":" +
                                    std::to_string(options.http_port) + ": " +
                                    ListenErrorReason(e));
  }
  std::unique_ptr<ProxyMetrics> grpc_metrics;  // outlives grpc_proxy
  std::unique_ptr<GrpcProxy> grpc_proxy;
  int grpc_port = 0;
  if (GrpcIngressEnabled(options.grpc_port, options.grpc_services)) {
    GrpcProxyOptions g;
    g.host = options.http_host;
    g.port = options.grpc_port;
    g.services = options.grpc_services;
    g.request_timeout_s = options.grpc_request_timeout_s > 0 ? options.grpc_request_timeout_s
                                                             : options.request_timeout_s;
    g.tls = tls;
    grpc_proxy = std::make_unique<GrpcProxy>(router, io.get_executor(), std::move(g));
    grpc_metrics = std::make_unique<ProxyMetrics>(options.node_id, LocalNodeIp(),
                                                  ProxyMetrics::Protocol::kGrpc);
    grpc_proxy->set_metrics(grpc_metrics.get());
    try {
      grpc_port = grpc_proxy->Start();
    } catch (const std::exception& e) {
      return FailStartup(options, e.what());
    }
  }
  std::error_code ignored;
  std::filesystem::remove(ProxyStartupErrorFile(options), ignored);
  spdlog::info("Proxy listening on {}://{}:{}.", tls ? "https" : "http", options.http_host, port);
  if (grpc_proxy) {
    std::string services;
    for (const auto& s : options.grpc_services) services += (services.empty() ? "" : ", ") + s;
    spdlog::info("Proxy listening for gRPC on {}:{} (services: {}).", options.http_host,
                 grpc_port, services);
  }

  std::set<std::string> watched;
  std::optional<std::chrono::steady_clock::time_point> draining_since;
  std::unique_ptr<router::LongPollClient> poll;
  poll = std::make_unique<router::LongPollClient>(
      options.controller_address, io.get_executor(), [&](const v1::Update& u) {
        if (u.has_route_table()) {
          std::vector<Route> routes;
          for (auto& e : u.route_table().routes()) {
            routes.push_back({e.route_prefix(), e.app_name(), e.deployment()});
            std::string key = TargetsKey({e.app_name(), e.deployment()});
            if (watched.insert(key).second) poll->Watch(key);
          }
          RouteTable table(std::move(routes));
          if (grpc_proxy) grpc_proxy->SetRouteTable(table);
          handler.SetRouteTable(std::move(table));
          server.StartAccepting();
        } else if (u.has_logging_config_json()) {
          // The top-level logging_config: this proxy's level, encoding and logs_dir.
          nlohmann::json lc = nlohmann::json::parse(u.logging_config_json(), nullptr, false);
          if (lc.is_object()) {
            ReconfigureProcessLogging(LogSettingsFromJson(lc),
                                      ServeLogsDir(options.session_dir, lc) + "/" + log_name);
            SetAccessLogEnabled(lc.value("enable_access_log", true));
            spdlog::info("Applied the top-level logging_config: {}", u.logging_config_json());
          }
        } else if (u.has_proxy_state()) {
          bool draining = u.proxy_state().draining();
          if (draining && !draining_since) {
            draining_since = std::chrono::steady_clock::now();
            spdlog::info("Proxy is DRAINING: /-/healthz answers 503 from now on.");
          } else if (!draining && draining_since) {
            draining_since.reset();
            spdlog::info("Proxy is no longer draining.");
          }
          handler.set_draining(draining);
        } else if (auto id = ParseTargetsKey(u.key()); id && u.has_targets()) {
          router.UpdateTargets(id->Key(), u.targets());
        }
      });
  poll->Watch(std::string(kRouteTableKey));
  poll->Watch(std::string(kGlobalLoggingConfigKey));
  poll->Watch(ProxyStateKey(options.node_id));
  // Without a controller to ask, serve anyway after a while (/-/healthz then says 503).
  asio::steady_timer accept_anyway(io, std::chrono::seconds(5));
  accept_anyway.async_wait([&server](boost::system::error_code ec) {
    if (!ec) server.StartAccepting();
  });

  {
    auto stub = v1::Controller::NewStub(rpc::ChannelTo(options.controller_address));
    v1::ProxyReady ready;
    ready.set_node_id(options.node_id);
    ready.set_http_port(port);
    ready.set_pid(::getpid());
    ready.set_log_file_path(log_file);
    auto ctx = rpc::ContextWithDeadline(10);
    v1::Empty empty;
    grpc::Status st = stub->ReportProxyReady(ctx.get(), ready, &empty);
    if (!st.ok()) spdlog::warn("Cannot report readiness to the controller: {}", st.error_message());
  }

  asio::signal_set signals(io, SIGTERM, SIGINT);
  std::thread grpc_stopper;
  signals.async_wait([&](boost::system::error_code, int) {
    spdlog::info("Proxy shutting down.");
    server.Close();
    if (!grpc_proxy) return io.stop();
    // gRPC calls in flight end on this executor: stop the gRPC server from another thread.
    grpc_stopper = std::thread([&] {
      grpc_proxy->Shutdown();
      asio::post(io, [&io] { io.stop(); });
    });
  });
  // Drained (spec §8.1): draining, nothing in flight, and the minimum period passed: the
  // proxy exits as on SIGTERM (the controller then drops it as DRAINED).
  asio::steady_timer drain_check(io);
  std::function<void()> check_drained = [&] {
    drain_check.expires_after(std::chrono::milliseconds(200));
    drain_check.async_wait([&](boost::system::error_code ec) {
      if (ec) return;
      if (draining_since && handler.ongoing() == 0 &&
          std::chrono::steady_clock::now() - *draining_since >=
              std::chrono::duration<double>(options.min_draining_period_s)) {
        spdlog::info("Proxy is DRAINED; exiting.");
        ::kill(::getpid(), SIGTERM);
        return;
      }
      check_drained();
    });
  };
  check_drained();
  io.run();
  if (grpc_stopper.joinable()) grpc_stopper.join();
  grpc_proxy.reset();
  poll.reset();
  ShutdownLogging();
  return 0;
}

}  // namespace serve::proxy
