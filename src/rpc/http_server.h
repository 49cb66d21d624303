#pragma once

// A small HTTP/1.1 server on Boost.Beast coroutines, shared by the proxy (ingress) and the
// controller (REST API on the dashboard port). Handlers see plain structs, never Beast types.

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

namespace boost::asio::ssl {
class context;
}  // namespace boost::asio::ssl

namespace serve::rpc {

struct HttpServerRequest {
  std::string method;
  std::string target;  ///< path + optional "?query"
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string host;    ///< Host header
  std::string peer;    ///< the client's "ip:port" ("" when unknown)
  bool peer_loopback = false;  ///< the client connected from a loopback address
  /// The session calls the function stored here (if any) when the client disconnects before
  /// the response is ready; the handler installs it to cancel the work.
  std::shared_ptr<std::function<void()>> on_disconnect = std::make_shared<std::function<void()>>();
};

/// Body chunks of a streamed response, produced and consumed on one executor (not
/// thread-safe). The producer pushes chunks and finishes; the consumer (the HTTP session)
/// awaits them and calls Cancel() when the client went away.
class ChunkQueue {
 public:
  explicit ChunkQueue(boost::asio::any_io_executor executor) : signal_(executor) {
    signal_.expires_at(boost::asio::steady_timer::time_point::max());
  }
  void Push(std::string chunk);
  /// No more chunks; `error` non-empty when the stream failed midway.
  void Finish(std::string error = "");
  /// The consumer gave up: runs on_cancel once.
  void Cancel();
  /// Next chunk, or nullopt once finished (then error() tells how).
  boost::asio::awaitable<std::optional<std::string>> Next();
  /// Moves the chunks already queued to the end of `out` (does not wait).
  void TakeQueued(std::vector<std::string>& out);
  /// Bounds the bytes pushed and not yet taken (0, the default: no bound). A push past it
  /// drops what is queued, fails the stream with an error and cancels it: a consumer that does
  /// not keep up is cut off instead of buffered for without bound.
  void set_max_queued_bytes(size_t n) { max_queued_bytes_ = n; }
  const std::string& error() const { return error_; }
  bool finished() const { return finished_; }
  std::function<void()> on_cancel;
  /// Runs with the bytes the consumer took (Next, TakeQueued) once at least `credit_batch`
  /// accumulated: the producer's flow-control credit (kWindowUpdate). Unset: nothing.
  std::function<void(size_t)> on_consumed;
  size_t credit_batch = 1 << 20;
  /// The payload of the stream's last frame (kEnd or kError) when it has one: a gRPC stream's
  /// final status envelope. Set before Finish().
  std::string trailer;

 private:
  std::deque<std::string> chunks_;
  size_t queued_bytes_ = 0;
  size_t max_queued_bytes_ = 0;
  size_t consumed_ = 0;  // taken since the last on_consumed
  void Consumed(size_t n);
  bool finished_ = false;
  bool cancelled_ = false;
  std::string error_;
  boost::asio::steady_timer signal_;
};

struct HttpServerResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string route;       ///< for the access log ("" = the request target)
  std::string request_id;  ///< for the access log
  /// 499: the client went away; nothing is sent (the status is only logged).
  /// Set for streamed responses: `body` is ignored and chunks are sent as they arrive
  /// (chunked transfer encoding).
  std::shared_ptr<ChunkQueue> stream;
};

/// The bytes of a complete (non-streamed) response: status line, `headers` (names must be
/// tokens; a header whose value holds CR, LF or NUL is dropped, as are content-length,
/// transfer-encoding and connection, which are derived here), content-length, connection
/// (close when !keep_alive; keep-alive for HTTP/1.0 when kept), then the body unless the request
/// was HEAD.
std::string SerializeHttpResponse(const HttpServerResponse& response, unsigned version,
                                  bool keep_alive, bool head_request);

using HttpHandler =
    std::function<void(HttpServerRequest, std::function<void(HttpServerResponse)>)>;

/// Limits and timeouts of one listener (docs/limits.md, "Listeners").
struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;                               ///< 0: any free port
  size_t max_header_bytes = 16 * 1024;        ///< larger headers get 431
  size_t max_body_bytes = 100 * 1024 * 1024;  ///< larger bodies get 413 (checked while reading)
  double keep_alive_timeout_s = 90;           ///< idle keep-alive connections are closed
  /// Open connections at most (lowered to what RLIMIT_NOFILE allows); a connection beyond it
  /// gets 503 and is closed (plain HTTP; HTTPS ones are closed).
  size_t max_connections = 10000;
  /// From a request's first byte, its header must be complete within this (slow clients).
  double header_read_timeout_s = 30;
  /// While a body is read, the client must send something at least this often.
  double body_read_timeout_s = 60;
  std::string access_log_name;                ///< non-empty: log "METHOD route status ms"
  /// Set: HTTPS only (each connection starts with a TLS handshake; rpc/tls.h); null: plain HTTP.
  std::shared_ptr<boost::asio::ssl::context> tls;
};

/// Applies the listener knobs set in the environment (SERVE_HTTP_MAX_CONNECTIONS,
/// SERVE_HTTP_HEADER_READ_TIMEOUT_S, SERVE_HTTP_BODY_READ_TIMEOUT_S; unset or invalid: kept).
void ApplyListenerLimitsFromEnvironment(HttpServerOptions& options);

class Watchdog;

/// Accepts connections on `io` and serves each with `handler` (which must call its callback
/// exactly once, on `io`'s thread). Malformed requests get 400, oversize headers 431, oversize
/// bodies 413, connections beyond max_connections 503. Idle keep-alive connections, slow
/// headers and bodies, and stalled writes are closed by one coarse timer per server (not a
/// timer operation per read and write). When accept fails for lack of descriptors or memory,
/// accepting pauses (100 ms) instead of spinning. Not thread-safe: all calls on `io`'s thread,
/// which must be the only thread running `io`.
class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, HttpHandler handler, HttpServerOptions options);
  ~HttpServer();
  /// Binds and listens, and starts accepting unless `accept_now` is false (connections then
  /// wait in the kernel's backlog until StartAccepting()); returns the bound port. Throws
  /// boost::system::system_error when it cannot bind.
  unsigned short Listen(bool accept_now = true);
  /// Starts accepting connections (once; no-op after Close()).
  void StartAccepting();
  void Close();

 private:
  boost::asio::io_context& io_;  // Not owned; must outlive this.
  HttpHandler handler_;
  HttpServerOptions options_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<Watchdog> watchdog_;
  std::shared_ptr<size_t> open_connections_ = std::make_shared<size_t>(0);
  size_t max_connections_;  // options_.max_connections within RLIMIT_NOFILE
  bool accepting_ = false;
};

}  // namespace serve::rpc
