// A trivial Beast HTTP/1.1 server, the backend and baseline of bench/run.sh:
//   GET /        -> 200 text/plain "ok" (keep-alive)
//   GET /stream  -> 200, chunked: 50 chunks of 20 bytes, each written on its own
//   otherwise    -> 404
// One thread, one io_context, one coroutine per connection.
//   beast_backend [PORT [HOST]]     prints the bound port on stdout, then serves until SIGTERM.
#include <cstdio>
#include <cstdlib>
#include <string>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);
constexpr int kChunks = 50;

// "chunk 07/50 .......\n": 20 bytes.
std::string ChunkText(int i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "chunk %02d/%02d .......\n", i, kChunks);
  return std::string(buf, 20);
}

asio::awaitable<void> Session(tcp::socket socket) {
  beast::flat_buffer buffer;
  while (true) {
    http::request<http::string_body> req;
    auto [ec, n] = co_await http::async_read(socket, buffer, req, kAwait);
    if (ec) break;
    bool keep = req.keep_alive();
    if (req.target() == "/stream") {
      http::response<http::empty_body> res{http::status::ok, req.version()};
      res.set(http::field::content_type, "text/plain");
      res.chunked(true);
      res.keep_alive(keep);
      http::response_serializer<http::empty_body> sr{res};
      auto [hec, hn] = co_await http::async_write_header(socket, sr, kAwait);
      if (hec) break;
      bool failed = false;
      for (int i = 0; i < kChunks && !failed; ++i) {
        std::string chunk = ChunkText(i);
        auto [cec, cn] = co_await asio::async_write(
            socket, http::make_chunk(asio::buffer(chunk)), kAwait);
        failed = static_cast<bool>(cec);
      }
      if (failed) break;
      auto [lec, ln] = co_await asio::async_write(socket, http::make_chunk_last(), kAwait);
      if (lec) break;
    } else {
      bool found = req.target() == "/" || req.target().starts_with("/?");
      http::response<http::string_body> res{found ? http::status::ok : http::status::not_found,
                                            req.version()};
      res.set(http::field::content_type, "text/plain");
      res.body() = found ? "ok" : "not found";
      res.keep_alive(keep);
      res.prepare_payload();
      auto [wec, wn] = co_await http::async_write(socket, res, kAwait);
      if (wec) break;
    }
    if (!keep) break;
  }
  boost::system::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> Accept(tcp::acceptor& acceptor) {
  while (acceptor.is_open()) {
    auto [ec, socket] = co_await acceptor.async_accept(kAwait);
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(acceptor.get_executor(), Session(std::move(socket)), asio::detached);
  }
}

}  // namespace

int main(int argc, char** argv) {
  auto port = static_cast<unsigned short>(argc > 1 ? std::atoi(argv[1]) : 0);
  std::string host = argc > 2 ? argv[2] : "127.0.0.1";
  asio::io_context io(1);
  tcp::acceptor acceptor(io);
  tcp::endpoint ep(asio::ip::make_address(host), port);
  acceptor.open(ep.protocol());
  acceptor.set_option(tcp::acceptor::reuse_address(true));
  acceptor.bind(ep);
  acceptor.listen(asio::socket_base::max_listen_connections);
  std::printf("%u\n", static_cast<unsigned>(acceptor.local_endpoint().port()));
  std::fflush(stdout);
  asio::co_spawn(io, Accept(acceptor), asio::detached);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int) { io.stop(); });
  io.run();
  return 0;
}
