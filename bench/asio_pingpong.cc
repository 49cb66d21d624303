// Raw Asio TCP ping-pong: the baseline for handle calls (bench/run.sh).
// Frames look like the data plane's: u32 length | u64 id | payload (length counts id+payload).
//
//   asio_pingpong server [--port P] [--host H]
//       one thread, one io_context; echoes every frame (same id, same payload). Reads what is
//       available, answers every complete frame in it with one write. Prints the bound port.
//   asio_pingpong client --port P [--host H] [--iterations N] [--batches B] [--batch-size K]
//                        [--payload BYTES] [--seconds S]
//       1. sequential: N round trips, one frame in flight (RTT mean/p50/p99)
//       2. concurrent: B batches of K frames written at once, then all K answers awaited
//          (calls/s, batch latency p50/p99)
//       Each phase stops early after S seconds. Prints one JSON object.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/write.hpp>

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kHeader = 4 + 8;

void AppendFrame(std::string& out, uint64_t id, std::string_view payload) {
  auto len = static_cast<uint32_t>(8 + payload.size());
  char h[kHeader];
  std::memcpy(h, &len, 4);
  std::memcpy(h + 4, &id, 8);
  out.append(h, kHeader);
  out.append(payload);
}

// ------------------------------------------------------------------ server

class ServerConnection : public std::enable_shared_from_this<ServerConnection> {
 public:
  explicit ServerConnection(tcp::socket s) : socket_(std::move(s)) { in_.resize(64 * 1024); }
  void Start() { Read(); }

 private:
  void Read() {
    if (len_ == in_.size()) in_.resize(in_.size() * 2);
    socket_.async_read_some(asio::buffer(in_.data() + len_, in_.size() - len_),
                            [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                              if (ec) return;
                              self->len_ += n;
                              self->Process();
                            });
  }
  void Process() {
    size_t pos = 0;
    out_.clear();
    while (len_ - pos >= 4) {
      uint32_t len;
      std::memcpy(&len, in_.data() + pos, 4);
      if (len < 8 || len > (64u << 20)) return;  // malformed: drop the connection
      if (len_ - pos < 4 + size_t{len}) break;
      uint64_t id;
      std::memcpy(&id, in_.data() + pos + 4, 8);
      AppendFrame(out_, id, std::string_view(in_.data() + pos + kHeader, len - 8));
      pos += 4 + size_t{len};
    }
    if (pos > 0) {
      std::memmove(in_.data(), in_.data() + pos, len_ - pos);
      len_ -= pos;
    }
    if (out_.empty()) {
      Read();
      return;
    }
    asio::async_write(socket_, asio::buffer(out_),
                      [self = shared_from_this()](boost::system::error_code ec, size_t) {
                        if (!ec) self->Read();
                      });
  }

  tcp::socket socket_;
  std::string in_;
  size_t len_ = 0;
  std::string out_;
};

void Accept(tcp::acceptor& acceptor) {
  acceptor.async_accept([&acceptor](boost::system::error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      s.set_option(tcp::no_delay(true), ec);
      std::make_shared<ServerConnection>(std::move(s))->Start();
    }
    Accept(acceptor);
  });
}

int RunServer(const std::string& host, unsigned short port) {
  asio::io_context io(1);
  tcp::acceptor acceptor(io);
  tcp::endpoint ep(asio::ip::make_address(host), port);
  acceptor.open(ep.protocol());
  acceptor.set_option(tcp::acceptor::reuse_address(true));
  acceptor.bind(ep);
  acceptor.listen();
  std::printf("%u\n", static_cast<unsigned>(acceptor.local_endpoint().port()));
  std::fflush(stdout);
  Accept(acceptor);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int) { io.stop(); });
  io.run();
  return 0;
}

// ------------------------------------------------------------------ client

// Blocking reader of whole frames.
class FrameReader {
 public:
  explicit FrameReader(tcp::socket& s) : s_(s) { buf_.resize(64 * 1024); }
  uint64_t Next() {  // returns the id of the next frame
    while (true) {
      if (len_ - pos_ >= 4) {
        uint32_t len;
        std::memcpy(&len, buf_.data() + pos_, 4);
        if (len_ - pos_ >= 4 + size_t{len}) {
          uint64_t id;
          std::memcpy(&id, buf_.data() + pos_ + 4, 8);
          pos_ += 4 + size_t{len};
          return id;
        }
      }
      if (pos_ > 0) {
        std::memmove(buf_.data(), buf_.data() + pos_, len_ - pos_);
        len_ -= pos_;
        pos_ = 0;
      }
      if (len_ == buf_.size()) buf_.resize(buf_.size() * 2);
      len_ += s_.read_some(asio::buffer(buf_.data() + len_, buf_.size() - len_));
    }
  }

 private:
  tcp::socket& s_;
  std::string buf_;
  size_t len_ = 0, pos_ = 0;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

int RunClient(const std::string& host, unsigned short port, long iterations, long batches,
              long batch_size, size_t payload_bytes, double seconds) {
  asio::io_context io;
  tcp::socket s(io);
  s.connect(tcp::endpoint(asio::ip::make_address(host), port));
  s.set_option(tcp::no_delay(true));
  FrameReader reader(s);
  std::string payload(payload_bytes, 'x');
  std::string out;
  uint64_t next_id = 1;
  auto deadline = [&](Clock::time_point start) {
    return Clock::now() - start > std::chrono::duration<double>(seconds);
  };

  // Warm-up.
  for (int i = 0; i < 200; ++i) {
    out.clear();
    AppendFrame(out, next_id++, payload);
    asio::write(s, asio::buffer(out));
    reader.Next();
  }

  // 1. Sequential round trips.
  std::vector<double> rtt;
  rtt.reserve(static_cast<size_t>(iterations));
  auto seq_start = Clock::now();
  for (long i = 0; i < iterations; ++i) {
    out.clear();
    uint64_t id = next_id++;
    AppendFrame(out, id, payload);
    auto t0 = Clock::now();
    asio::write(s, asio::buffer(out));
    if (reader.Next() != id) {
      std::fprintf(stderr, "out-of-order reply\n");
      return 1;
    }
    rtt.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    if ((i & 255) == 0 && deadline(seq_start)) break;
  }
  double seq_s = std::chrono::duration<double>(Clock::now() - seq_start).count();

  // 2. Batches of `batch_size` in flight, written at once (as a coalescing caller would).
  std::vector<double> batch_us;
  auto conc_start = Clock::now();
  long calls = 0;
  for (long b = 0; b < batches; ++b) {
    out.clear();
    for (long k = 0; k < batch_size; ++k) AppendFrame(out, next_id++, payload);
    auto t0 = Clock::now();
    asio::write(s, asio::buffer(out));
    for (long k = 0; k < batch_size; ++k) reader.Next();
    batch_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    calls += batch_size;
    if (deadline(conc_start)) break;
  }
  double conc_s = std::chrono::duration<double>(Clock::now() - conc_start).count();

  std::printf(
      "{\"sequential\": {\"iterations\": %zu, \"seconds\": %.3f, \"rtt_mean_us\": %.1f, "
      "\"rtt_p50_us\": %.1f, \"rtt_p99_us\": %.1f, \"calls_per_s\": %.0f}, "
      "\"concurrent\": {\"batch_size\": %ld, \"batches\": %zu, \"seconds\": %.3f, "
      "\"calls_per_s\": %.0f, \"batch_p50_us\": %.1f, \"batch_p99_us\": %.1f}, "
      "\"payload_bytes\": %zu}\n",
      rtt.size(), seq_s, Mean(rtt), Percentile(rtt, 0.5), Percentile(rtt, 0.99),
      static_cast<double>(rtt.size()) / seq_s, batch_size, batch_us.size(), conc_s,
      static_cast<double>(calls) / conc_s, Percentile(batch_us, 0.5),
      Percentile(batch_us, 0.99), payload_bytes);
  return 0;
}

int Usage() {
  std::fprintf(stderr,
               "usage: asio_pingpong server [--port P] [--host H]\n"
               "       asio_pingpong client --port P [--host H] [--iterations N] [--batches B]\n"
               "                            [--batch-size K] [--payload BYTES] [--seconds S]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  std::string mode = argv[1];
  std::map<std::string, std::string> opt;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (std::strncmp(argv[i], "--", 2) != 0) return Usage();
    opt[argv[i] + 2] = argv[i + 1];
  }
  auto get = [&](const char* k, const char* d) { return opt.count(k) ? opt[k] : std::string(d); };
  std::string host = get("host", "127.0.0.1");
  auto port = static_cast<unsigned short>(std::atoi(get("port", "0").c_str()));
  try {
    if (mode == "server") return RunServer(host, port);
    if (mode == "client") {
      if (port == 0) return Usage();
      return RunClient(host, port, std::atol(get("iterations", "20000").c_str()),
                       std::atol(get("batches", "2000").c_str()),
                       std::atol(get("batch-size", "100").c_str()),
                       static_cast<size_t>(std::atol(get("payload", "16").c_str())),
                       std::atof(get("seconds", "3").c_str()));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "asio_pingpong: %s\n", e.what());
    return 1;
  }
  return Usage();
}
