#include "proxy/proxy.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <set>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include "common/logging.h"
#include "common/util.h"
#include "proxy/request_handler.h"
#include "router/router.h"
#include "rpc/grpc_util.h"
#include "serve/v1/controller.grpc.pb.h"

namespace serve::proxy {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);

// Adapts the callback-based handler to a coroutine.
template <class Token>
auto AsyncHandle(RequestHandler& handler, ProxyRequest req, Token&& token) {
  return asio::async_initiate<Token, void(ProxyResponse)>(
      [&handler](auto completion, ProxyRequest req) {
        auto shared = std::make_shared<decltype(completion)>(std::move(completion));
        handler.Handle(std::move(req), [shared](ProxyResponse resp) {
          std::move(*shared)(std::move(resp));
        });
      },
      token, std::move(req));
}

http::response<http::string_body> ErrorResponse(http::status status, std::string body) {
  http::response<http::string_body> res{status, 11};
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.body() = std::move(body);
  res.keep_alive(false);
  res.prepare_payload();
  return res;
}

class HttpServer {
 public:
  HttpServer(asio::io_context& io, RequestHandler& handler, const ProxyOptions& options)
      : io_(io), handler_(handler), options_(options), acceptor_(io) {}

  unsigned short Listen() {
    tcp::endpoint ep(asio::ip::make_address(options_.http_host),
                     static_cast<unsigned short>(options_.http_port));
    acceptor_.open(ep.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen(asio::socket_base::max_listen_connections);
    asio::co_spawn(io_, AcceptLoop(), asio::detached);
    return acceptor_.local_endpoint().port();
  }
  void Close() {
    boost::system::error_code ec;
    acceptor_.close(ec);
  }

 private:
  asio::awaitable<void> AcceptLoop() {
    while (acceptor_.is_open()) {
      auto [ec, socket] = co_await acceptor_.async_accept(kAwait);
      if (ec) {
        if (ec == asio::error::operation_aborted) co_return;
        continue;
      }
      socket.set_option(tcp::no_delay(true), ec);
      asio::co_spawn(io_, Session(std::move(socket)), [](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          spdlog::error("HTTP session failed: {}", ex.what());
        }
      });
    }
  }

  asio::awaitable<void> Session(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    auto keep_alive = std::chrono::milliseconds(
        static_cast<int64_t>(options_.keep_alive_timeout_s * 1000));
    while (true) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<uint32_t>(options_.max_header_bytes));
      parser.body_limit(options_.max_body_bytes);
      stream.expires_after(keep_alive);
      auto [ec, n] = co_await http::async_read(stream, buffer, parser, kAwait);
      if (ec) {
        std::optional<http::response<http::string_body>> error;
        if (ec == http::error::header_limit) {
          error = ErrorResponse(http::status::request_header_fields_too_large,
                                "Request header fields too large.");
        } else if (ec == http::error::body_limit) {
          error = ErrorResponse(http::status::payload_too_large, "Request body too large.");
        } else if (ec != http::error::end_of_stream && ec != beast::error::timeout &&
                   ec != asio::error::eof && ec != asio::error::connection_reset &&
                   ec != asio::error::operation_aborted && (n > 0 || buffer.size() > 0)) {
          error = ErrorResponse(http::status::bad_request, "Invalid HTTP request: " + ec.message());
        }
        if (error) {
          stream.expires_after(std::chrono::seconds(5));
          co_await http::async_write(stream, *error, kAwait);
        }
        break;
      }
      auto start = std::chrono::steady_clock::now();
      http::request<http::string_body> req = parser.release();
      ProxyRequest preq;
      preq.method = std::string(req.method_string());
      preq.target = std::string(req.target());
      preq.host = std::string(req[http::field::host]);
      for (auto& f : req) preq.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
      preq.body = std::move(req.body());
      bool keep = req.keep_alive();
      unsigned version = req.version();
      std::string method = preq.method, target = preq.target;

      stream.expires_never();
      ProxyResponse presp = co_await AsyncHandle(handler_, std::move(preq), asio::use_awaitable);

      http::response<http::string_body> res{static_cast<http::status>(presp.status), version};
      for (auto& [k, v] : presp.headers) res.insert(k, v);
      res.body() = std::move(presp.body);
      res.keep_alive(keep);
      res.prepare_payload();
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      spdlog::info("proxy {} {} -- {} {} {} {:.1f}ms", LocalNodeIp(), presp.request_id, method,
                   presp.route.empty() ? target : presp.route, presp.status, ms);
      stream.expires_after(std::chrono::seconds(60));
      auto [wec, wn] = co_await http::async_write(stream, res, kAwait);
      if (wec || !keep) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  asio::io_context& io_;
  RequestHandler& handler_;           // Not owned; must outlive this.
  const ProxyOptions& options_;       // Not owned; must outlive this.
  tcp::acceptor acceptor_;
};

}  // namespace

int RunProxy(const ProxyOptions& options) {
  std::string log_file = options.session_dir + "/logs/serve/proxy_" + LocalNodeIp() + ".log";
  InitProcessLogging(log_file);
  ::signal(SIGPIPE, SIG_IGN);

  asio::io_context io(1);
  router::Router router(io.get_executor());
  RequestHandler handler(router);
  HttpServer server(io, handler, options);
  unsigned short port = 0;
  try {
    port = server.Listen();
  } catch (const std::exception& e) {
    spdlog::critical("Cannot listen on {}:{}: {}", options.http_host, options.http_port, e.what());
    ShutdownLogging();
    return 1;
  }
  spdlog::info("Proxy listening on http://{}:{}.", options.http_host, port);

  std::set<std::string> watched;
  std::unique_ptr<router::LongPollClient> poll;
  poll = std::make_unique<router::LongPollClient>(
      options.controller_address, io.get_executor(), [&](const v1::Update& u) {
        if (u.has_route_table()) {
          std::vector<Route> routes;
          for (auto& e : u.route_table().routes()) {
            routes.push_back({e.route_prefix(), e.app_name(), e.deployment()});
            std::string key = "DEPLOYMENT_TARGETS:" + e.app_name() + "#" + e.deployment();
            if (watched.insert(key).second) poll->Watch(key);
          }
          handler.SetRouteTable(RouteTable(std::move(routes)));
        } else if (u.has_targets()) {
          router.UpdateTargets(u.key().substr(std::string("DEPLOYMENT_TARGETS:").size()),
                               u.targets());
        }
      });
  poll->Watch("ROUTE_TABLE");

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
  signals.async_wait([&](boost::system::error_code, int) {
    spdlog::info("Proxy shutting down.");
    server.Close();
    io.stop();
  });
  io.run();
  poll.reset();
  ShutdownLogging();
  return 0;
}

}  // namespace serve::proxy
