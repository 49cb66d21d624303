#include "rpc/http_server.h"

#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <tuple>
#include <type_traits>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include "common/logging.h"
#include "common/util.h"
#include "rpc/framed_connection.h"

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
  queued_bytes_ += chunk.size();
  if (max_queued_bytes_ > 0 && queued_bytes_ > max_queued_bytes_) {
    size_t queued = queued_bytes_;
    chunks_.clear();
    queued_bytes_ = 0;
    Finish("the receiver did not keep up with the stream (" + std::to_string(queued) +
           " bytes waiting, limit " + std::to_string(max_queued_bytes_) + ")");
    spdlog::warn("Cancelled a stream: {}.", error_);
    Cancel();
    return;
  }
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
  queued_bytes_ -= c.size();
  Consumed(c.size());
  co_return c;
}

void ChunkQueue::TakeQueued(std::vector<std::string>& out) {
  for (auto& c : chunks_) out.push_back(std::move(c));
  chunks_.clear();
  Consumed(queued_bytes_);
  queued_bytes_ = 0;
}

void ChunkQueue::Consumed(size_t n) {
  consumed_ += n;
  if (consumed_ < credit_batch || finished_ || !on_consumed) return;
  size_t credit = consumed_;
  consumed_ = 0;
  on_consumed(credit);
}

namespace {

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (c <= 32 || c >= 127 || std::strchr("\"(),/:;<=>?@[\\]{}", c)) return false;
  }
  return true;
}

bool IsSafeValue(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

bool IsDerivedHeader(std::string_view name) {
  return beast::iequals(name, "content-length") || beast::iequals(name, "transfer-encoding") ||
         beast::iequals(name, "connection");
}

http::response<http::string_body> ErrorResponse(http::status status, std::string body) {
  http::response<http::string_body> res{status, 11};
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.body() = std::move(body);
  res.keep_alive(false);
  res.prepare_payload();
  return res;
}

}  // namespace

std::string SerializeHttpResponse(const HttpServerResponse& response, unsigned version,
                                  bool keep_alive, bool head_request) {
  std::string out;
  out.reserve(128 + response.body.size());
  out += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  out += std::to_string(response.status);
  out += ' ';
  out += http::obsolete_reason(static_cast<http::status>(response.status));
  out += "\r\n";
  for (const auto& [name, value] : response.headers) {
    if (IsDerivedHeader(name)) continue;
    if (!IsToken(name) || !IsSafeValue(value)) {
      spdlog::warn("Dropped the invalid response header '{}'.", name);
      continue;
    }
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  out += "content-length: ";
  out += std::to_string(response.body.size());
  out += "\r\n";
  if (!keep_alive) {
    out += "connection: close\r\n";
  } else if (version == 10) {
    out += "connection: keep-alive\r\n";
  }
  out += "\r\n";
  if (!head_request) out += response.body;
  return out;
}

/// Closes sockets whose deadline passed, checking every `period`. Entries are owned by their
/// sessions (the watchdog keeps weak references). Runs on the server's single I/O thread.
class Watchdog : public std::enable_shared_from_this<Watchdog> {
 public:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    tcp::socket* socket;
    Clock::time_point deadline = Clock::time_point::max();
  };
  Watchdog(asio::io_context& io, Clock::duration period) : timer_(io), period_(period) {}

  std::shared_ptr<Entry> Add(tcp::socket* socket) {
    auto e = std::make_shared<Entry>(Entry{socket});
    entries_.push_back(e);
    if (!running_) {
      running_ = true;
      Arm();
    }
    return e;
  }
  void Stop() {
    stopped_ = true;
    timer_.cancel();
  }

 private:
  void Arm() {
    timer_.expires_after(period_);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code) { self->Tick(); });
  }
  void Tick() {
    auto now = Clock::now();
    size_t kept = 0;
    for (size_t i = 0; i < entries_.size(); ++i) {
      auto e = entries_[i].lock();
      if (!e) continue;
      if (e->deadline <= now) {
        boost::system::error_code ec;
        e->socket->close(ec);  // the session's pending read or write ends with an error
        e->deadline = Clock::time_point::max();
      }
      if (kept != i) entries_[kept] = std::move(entries_[i]);  // no self-move: it empties
      ++kept;
    }
    entries_.resize(kept);
    running_ = !entries_.empty() && !stopped_;
    if (running_) Arm();
  }

  asio::steady_timer timer_;
  Clock::duration period_;
  std::vector<std::weak_ptr<Entry>> entries_;
  bool running_ = false;
  bool stopped_ = false;
};

namespace {

using TlsStream = asio::ssl::stream<tcp::socket>;

// One connection. `Stream` is tcp::socket (plain HTTP) or TlsStream (HTTPS): the plain path
// has no TLS layer and no indirection.
// Holds one of the server's connection slots for a session's lifetime.
struct ConnectionSlot {
  explicit ConnectionSlot(std::shared_ptr<size_t> open) : open_(std::move(open)) { ++*open_; }
  ~ConnectionSlot() { --*open_; }
  ConnectionSlot(const ConnectionSlot&) = delete;
  ConnectionSlot& operator=(const ConnectionSlot&) = delete;
  std::shared_ptr<size_t> open_;
};

Watchdog::Clock::duration Seconds(double s) {
  return std::chrono::duration_cast<Watchdog::Clock::duration>(std::chrono::duration<double>(s));
}

template <class Stream>
asio::awaitable<void> Session(Stream stream, const HttpHandler& handler,
                              const HttpServerOptions& options,
                              std::shared_ptr<Watchdog> watchdog,
                              std::shared_ptr<size_t> open_connections) {
  using Clock = Watchdog::Clock;
  ConnectionSlot slot(std::move(open_connections));
  tcp::socket& socket = beast::get_lowest_layer(stream);
  auto deadline = watchdog->Add(&socket);
  if constexpr (std::is_same_v<Stream, TlsStream>) {
    // A client that does not speak TLS (plain HTTP) fails the handshake and is disconnected.
    deadline->deadline = Clock::now() + std::chrono::seconds(10);
    auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::server, kAwait);
    if (hec) {
      spdlog::debug("TLS handshake failed: {}", hec.message());
      boost::system::error_code ignored;
      socket.close(ignored);
      co_return;
    }
  }
  std::string peer;
  bool peer_loopback = false;
  boost::system::error_code peer_ec;
  tcp::endpoint remote = socket.remote_endpoint(peer_ec);
  if (!peer_ec) {
    asio::ip::address ip = remote.address();
    if (ip.is_v6() && ip.to_v6().is_v4_mapped()) {
      ip = asio::ip::make_address_v4(asio::ip::v4_mapped, ip.to_v6());
    }
    peer_loopback = ip.is_loopback();
    peer = (ip.is_v6() ? "[" + ip.to_string() + "]" : ip.to_string()) + ":" +
           std::to_string(remote.port());
  }
  // Bounded: a header never needs more than its limit plus one read's worth of body bytes.
  beast::flat_buffer buffer(options.max_header_bytes + 64 * 1024);
  const auto keep_alive = Seconds(options.keep_alive_timeout_s);
  const auto header_timeout = Seconds(options.header_read_timeout_s);
  const auto body_timeout = Seconds(options.body_read_timeout_s);
  constexpr auto kWriteTimeout = std::chrono::seconds(60);
  std::string out;
  while (true) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<uint32_t>(options.max_header_bytes));
    parser.body_limit(options.max_body_bytes);
    // Idle until the request's first bytes (keep-alive timeout), then the rest of the header
    // within its timeout, then the body with at most body_read_timeout_s between reads. The
    // first read is a plain read (it returns with any bytes); the parser takes them next.
    boost::system::error_code ec;
    size_t n = 0;
    if (buffer.size() == 0) {
      deadline->deadline = Clock::now() + keep_alive;
      std::tie(ec, n) = co_await stream.async_read_some(
          buffer.prepare(std::min<size_t>(64 * 1024, buffer.max_size())), kAwait);
      buffer.commit(n);
    }
    if (!ec) {
      deadline->deadline = Clock::now() + header_timeout;
      size_t more = 0;
      std::tie(ec, more) = co_await http::async_read_header(stream, buffer, parser, kAwait);
      n += more;
    }
    while (!ec && !parser.is_done()) {
      deadline->deadline = Clock::now() + body_timeout;
      size_t more = 0;
      std::tie(ec, more) = co_await http::async_read_some(stream, buffer, parser, kAwait);
      n += more;
    }
    if (ec) {
      std::optional<http::response<http::string_body>> error;
      if (ec == http::error::header_limit) {
        error = ErrorResponse(http::status::request_header_fields_too_large,
                              "Request header fields too large.");
      } else if (ec == http::error::body_limit || ec == http::error::buffer_overflow) {
        error = ErrorResponse(http::status::payload_too_large, "Request body too large.");
      } else if (ec != http::error::end_of_stream && ec != asio::error::eof &&
                 ec != asio::error::connection_reset && ec != asio::error::operation_aborted &&
                 ec != asio::error::bad_descriptor && (n > 0 || buffer.size() > 0)) {
        error = ErrorResponse(http::status::bad_request, "Invalid HTTP request: " + ec.message());
      }
      if (error && socket.is_open()) {
        deadline->deadline = Clock::now() + std::chrono::seconds(5);
        co_await http::async_write(stream, *error, kAwait);
      }
      break;
    }
    auto start = Clock::now();
    deadline->deadline = Clock::time_point::max();
    http::request<http::string_body> req = parser.release();
    HttpServerRequest sreq;
    sreq.method = std::string(req.method_string());
    sreq.target = std::string(req.target());
    sreq.host = std::string(req[http::field::host]);
    sreq.peer = peer;
    sreq.peer_loopback = peer_loopback;
    sreq.headers.reserve(static_cast<size_t>(std::distance(req.begin(), req.end())));
    for (auto& f : req) {
      sreq.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    }
    sreq.body = std::move(req.body());
    bool keep = req.keep_alive();
    bool head_request = req.method() == http::verb::head;
    unsigned version = req.version();
    std::string method = sreq.method, target = sreq.target;

    // Watch for the client going away while the handler works (EOF without consuming input).
    auto on_disconnect = sreq.on_disconnect;
    auto answered = std::make_shared<bool>(false);
    socket.async_wait(
        tcp::socket::wait_read,
        [on_disconnect, answered, fd = socket.native_handle()](boost::system::error_code ec) {
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
    socket.cancel(cancel_ec);
    const std::string& route = sresp.route.empty() ? target : sresp.route;
    auto log_access = [&](const char* suffix) {
      if (options.access_log_name.empty() || !AccessLogEnabled()) return;
      double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      // The process's log format adds the component (e.g. "proxy <ip>") and the request id.
      ScopedRequestLog fields({sresp.request_id, route, {}});
      spdlog::info("{} {} {} {:.1f}ms{}", method, route, sresp.status, ms, suffix);
    };
    if (sresp.status == 499) {
      log_access(" (client disconnected)");
      break;
    }

    if (sresp.stream) {
      // Streamed: header with chunked encoding, then each chunk as it arrives.
      http::response<http::empty_body> head{static_cast<http::status>(sresp.status), version};
      for (auto& [k, v] : sresp.headers) head.insert(k, v);
      head.keep_alive(keep);
      head.chunked(true);
      http::response_serializer<http::empty_body> sr{head};
      deadline->deadline = Clock::now() + kWriteTimeout;
      auto [hec, hn] = co_await http::async_write_header(stream, sr, kAwait);
      bool broken = static_cast<bool>(hec);
      std::vector<std::string> chunks;
      while (!broken) {
        deadline->deadline = Clock::time_point::max();
        std::optional<std::string> chunk = co_await sresp.stream->Next();
        if (!chunk) break;
        // Every chunk that arrived meanwhile goes out in the same write.
        chunks.clear();
        chunks.push_back(std::move(*chunk));
        sresp.stream->TakeQueued(chunks);
        out.clear();
        for (const auto& c : chunks) {
          if (c.empty()) continue;  // "0\r\n\r\n" would end the body
          char size[20];
          out.append(size, static_cast<size_t>(std::snprintf(size, sizeof(size), "%zx\r\n",
                                                             c.size())));
          out += c;
          out += "\r\n";
        }
        if (out.empty()) continue;
        deadline->deadline = Clock::now() + kWriteTimeout;
        auto [cec, cn] = co_await asio::async_write(stream, asio::buffer(out), kAwait);
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
      deadline->deadline = Clock::now() + kWriteTimeout;
      auto [lec, ln] = co_await asio::async_write(stream, http::make_chunk_last(), kAwait);
      log_access("");
      if (lec || !keep) break;
      continue;
    }
    out = SerializeHttpResponse(sresp, version, keep, head_request);
    log_access("");
    deadline->deadline = Clock::now() + kWriteTimeout;
    auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(out), kAwait);
    if (wec || !keep) break;
  }
  boost::system::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_send, ignored);
}

}  // namespace

namespace {

// Over the connection limit: a best-effort 503 (one non-blocking write; plain HTTP only), then
// close. The client learns why instead of waiting in the backlog.
void RefuseConnection(tcp::socket& socket, bool plain) {
  static constexpr std::string_view kBusy =
      "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
      "content-length: 21\r\nconnection: close\r\n\r\nToo many connections.";
  if (plain) (void)::send(socket.native_handle(), kBusy.data(), kBusy.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  boost::system::error_code ignored;
  socket.close(ignored);
}

// max_connections, lowered so that the process keeps descriptors for everything else.
size_t EffectiveMaxConnections(size_t wanted) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return wanted;
  constexpr rlim_t kReserved = 64;
  size_t room = rl.rlim_cur > kReserved ? static_cast<size_t>(rl.rlim_cur - kReserved) : 1;
  return std::max<size_t>(1, std::min(wanted, room));
}

}  // namespace

void ApplyListenerLimitsFromEnvironment(HttpServerOptions& options) {
  double v = EnvDouble("SERVE_HTTP_MAX_CONNECTIONS", 0);
  if (v >= 1 && v <= 1e7) options.max_connections = static_cast<size_t>(v);
  v = EnvDouble("SERVE_HTTP_HEADER_READ_TIMEOUT_S", 0);
  if (v > 0 && v <= 1e7) options.header_read_timeout_s = v;
  v = EnvDouble("SERVE_HTTP_BODY_READ_TIMEOUT_S", 0);
  if (v > 0 && v <= 1e7) options.body_read_timeout_s = v;
}

HttpServer::HttpServer(asio::io_context& io, HttpHandler handler, HttpServerOptions options)
    : io_(io),
      handler_(std::move(handler)),
      options_(std::move(options)),
      acceptor_(io),
      max_connections_(EffectiveMaxConnections(options_.max_connections)) {
  // Deadlines are checked this often: keep-alive closes within a quarter of its timeout.
  auto period = std::chrono::duration<double>(std::clamp(
      std::min({options_.keep_alive_timeout_s, options_.header_read_timeout_s,
                options_.body_read_timeout_s}) / 4,
      0.05, 1.0));
  watchdog_ = std::make_shared<Watchdog>(
      io_, std::chrono::duration_cast<Watchdog::Clock::duration>(period));
}

HttpServer::~HttpServer() { watchdog_->Stop(); }

unsigned short HttpServer::Listen(bool accept_now) {
  unsigned short port =
      ListenOn(acceptor_, options_.host, static_cast<unsigned short>(options_.port));
  if (accept_now) StartAccepting();
  return port;
}

void HttpServer::StartAccepting() {
  if (accepting_ || !acceptor_.is_open()) return;
  accepting_ = true;
  asio::co_spawn(
      io_,
      [this]() -> asio::awaitable<void> {
        asio::steady_timer pause(io_);
        auto last_warning = std::chrono::steady_clock::time_point::min();
        while (acceptor_.is_open()) {
          auto [ec, socket] = co_await acceptor_.async_accept(kAwait);
          if (ec) {
            if (ec == asio::error::operation_aborted) co_return;
            int e = ec.value();
            if (ec.category() == boost::system::system_category() &&
                (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM)) {
              // The connection stays in the backlog; retrying at once would spin.
              auto now = std::chrono::steady_clock::now();
              if (now - last_warning > std::chrono::seconds(10)) {
                spdlog::warn("Cannot accept connections on port {}: {}; pausing accepts.",
                             acceptor_.local_endpoint().port(), ec.message());
                last_warning = now;
              }
              pause.expires_after(std::chrono::milliseconds(100));
              co_await pause.async_wait(kAwait);
            }
            continue;
          }
          if (*open_connections_ >= max_connections_) {
            RefuseConnection(socket, !options_.tls);
            continue;
          }
          socket.set_option(tcp::no_delay(true), ec);
          auto on_end = [](std::exception_ptr e) {
            if (!e) return;
            try {
              std::rethrow_exception(e);
            } catch (const std::exception& ex) {
              spdlog::error("HTTP session failed: {}", ex.what());
            }
          };
          if (options_.tls) {
            asio::co_spawn(io_,
                           Session(TlsStream(std::move(socket), *options_.tls), handler_,
                                   options_, watchdog_, open_connections_),
                           on_end);
          } else {
            asio::co_spawn(io_,
                           Session(std::move(socket), handler_, options_, watchdog_,
                                   open_connections_),
                           on_end);
          }
        }
      },
      asio::detached);
}

void HttpServer::Close() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  watchdog_->Stop();
}

}  // namespace serve::rpc
