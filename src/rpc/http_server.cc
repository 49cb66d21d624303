#include "rpc/http_server.h"

#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <optional>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

namespace serve::rpc {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);

// Adapts the callback-based handler to a coroutine.
template <class Token>
auto AsyncHandle(const HttpHandler& handler, HttpServerRequest req, Token&& token) {
  return asio::async_initiate<Token, void(HttpServerResponse)>(
      [&handler](auto completion, HttpServerRequest req) {
        auto shared = std::make_shared<decltype(completion)>(std::move(completion));
        handler(std::move(req), [shared](HttpServerResponse resp) {
          std::move(*shared)(std::move(resp));
        });
      },
      token, std::move(req));
}

}  // namespace

void ChunkQueue::Push(std::string chunk) {
  if (finished_) return;
  chunks_.push_back(std::move(chunk));
  signal_.cancel();
}

void ChunkQueue::Finish(std::string error) {
  if (finished_) return;
  finished_ = true;
  error_ = std::move(error);
  signal_.cancel();
}

void ChunkQueue::Cancel() {
  if (cancelled_) return;
  cancelled_ = true;
  if (on_cancel) on_cancel();
}

asio::awaitable<std::optional<std::string>> ChunkQueue::Next() {
  while (chunks_.empty() && !finished_) {
    signal_.expires_at(asio::steady_timer::time_point::max());
    co_await signal_.async_wait(kAwait);
  }
  if (chunks_.empty()) co_return std::nullopt;
  std::string c = std::move(chunks_.front());
  chunks_.pop_front();
  co_return c;
}

namespace {

http::response<http::string_body> ErrorResponse(http::status status, std::string body) {
  http::response<http::string_body> res{status, 11};
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.body() = std::move(body);
  res.keep_alive(false);
  res.prepare_payload();
  return res;
}

asio::awaitable<void> Session(tcp::socket socket, const HttpHandler& handler,
                              const HttpServerOptions& options) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  auto keep_alive =
      std::chrono::milliseconds(static_cast<int64_t>(options.keep_alive_timeout_s * 1000));
  while (true) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<uint32_t>(options.max_header_bytes));
    parser.body_limit(options.max_body_bytes);
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
    HttpServerRequest sreq;
    sreq.method = std::string(req.method_string());
    sreq.target = std::string(req.target());
    sreq.host = std::string(req[http::field::host]);
    for (auto& f : req) {
      sreq.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    }
    sreq.body = std::move(req.body());
    bool keep = req.keep_alive();
    unsigned version = req.version();
    std::string method = sreq.method, target = sreq.target;

    stream.expires_never();
    // Watch for the client going away while the handler works (EOF without consuming input).
    auto on_disconnect = sreq.on_disconnect;
    auto answered = std::make_shared<bool>(false);
    stream.socket().async_wait(
        tcp::socket::wait_read,
        [on_disconnect, answered, fd = stream.socket().native_handle()](boost::system::error_code ec) {
          if (ec || *answered) return;
          char c;
          ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
          if ((n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) && *on_disconnect) {
            (*on_disconnect)();
          }
        });
    HttpServerResponse sresp = co_await AsyncHandle(handler, std::move(sreq), asio::use_awaitable);
    *answered = true;
    boost::system::error_code cancel_ec;
    stream.socket().cancel(cancel_ec);
    if (sresp.status == 499) {
      if (!options.access_log_name.empty()) {
        spdlog::info("{} {} -- {} {} 499 (client disconnected)", options.access_log_name,
                     sresp.request_id, method, sresp.route.empty() ? target : sresp.route);
      }
      break;
    }

    if (sresp.stream) {
      // Streamed: header with chunked encoding, then each chunk as it arrives.
      http::response<http::empty_body> head{static_cast<http::status>(sresp.status), version};
      for (auto& [k, v] : sresp.headers) head.insert(k, v);
      head.keep_alive(keep);
      head.chunked(true);
      http::response_serializer<http::empty_body> sr{head};
      stream.expires_after(std::chrono::seconds(60));
      auto [hec, hn] = co_await http::async_write_header(stream, sr, kAwait);
      bool broken = static_cast<bool>(hec);
      while (!broken) {
        std::optional<std::string> chunk = co_await sresp.stream->Next();
        if (!chunk) break;
        stream.expires_after(std::chrono::seconds(60));
        auto [cec, cn] = co_await asio::async_write(stream, http::make_chunk(asio::buffer(*chunk)), kAwait);
        broken = static_cast<bool>(cec);
      }
      if (broken) {
        sresp.stream->Cancel();  // the client went away: stop the producer
        break;
      }
      if (!sresp.stream->error().empty()) {
        // Failed midway: end the connection without the last chunk so the client notices.
        spdlog::warn("stream {} failed: {}", sresp.request_id, sresp.stream->error());
        break;
      }
      auto [lec, ln] = co_await asio::async_write(stream, http::make_chunk_last(), kAwait);
      if (!options.access_log_name.empty()) {
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                              start).count();
        spdlog::info("{} {} -- {} {} {} {:.1f}ms", options.access_log_name, sresp.request_id,
                     method, sresp.route.empty() ? target : sresp.route, sresp.status, ms);
      }
      if (lec || !keep) break;
      continue;
    }
    http::response<http::string_body> res{static_cast<http::status>(sresp.status), version};
    for (auto& [k, v] : sresp.headers) res.insert(k, v);
    res.body() = std::move(sresp.body);
    res.keep_alive(keep);
    res.prepare_payload();
    if (!options.access_log_name.empty()) {
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                            start).count();
      spdlog::info("{} {} -- {} {} {} {:.1f}ms", options.access_log_name, sresp.request_id, method,
                   sresp.route.empty() ? target : sresp.route, sresp.status, ms);
    }
    stream.expires_after(std::chrono::seconds(60));
    auto [wec, wn] = co_await http::async_write(stream, res, kAwait);
    if (wec || !keep) break;
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

}  // namespace

HttpServer::HttpServer(asio::io_context& io, HttpHandler handler, HttpServerOptions options)
    : io_(io), handler_(std::move(handler)), options_(std::move(options)), acceptor_(io) {}

unsigned short HttpServer::Listen() {
  tcp::endpoint ep(asio::ip::make_address(options_.host),
                   static_cast<unsigned short>(options_.port));
  acceptor_.open(ep.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  asio::co_spawn(
      io_,
      [this]() -> asio::awaitable<void> {
        while (acceptor_.is_open()) {
          auto [ec, socket] = co_await acceptor_.async_accept(kAwait);
          if (ec) {
            if (ec == asio::error::operation_aborted) co_return;
            continue;
          }
          socket.set_option(tcp::no_delay(true), ec);
          asio::co_spawn(io_, Session(std::move(socket), handler_, options_),
                         [](std::exception_ptr e) {
                           if (!e) return;
                           try {
                             std::rethrow_exception(e);
                           } catch (const std::exception& ex) {
                             spdlog::error("HTTP session failed: {}", ex.what());
                           }
                         });
        }
      },
      asio::detached);
  return acceptor_.local_endpoint().port();
}

void HttpServer::Close() {
  boost::system::error_code ec;
  acceptor_.close(ec);
}

}  // namespace serve::rpc
