// Handle-call benchmark (bench/run.sh), the serve counterpart of asio_pingpong:
//   serve run bench_handles:app --app-dir build/bench
//   GET /?seconds=3&iterations=1000000&batches=1000000&batch_size=100
// The ingress calls Pong (which returns its argument) through a DeploymentHandle:
//   1. sequential: one call in flight, .result() each (round trip mean/p50/p99)
//   2. concurrent: batches of `batch_size` calls started at once, then all awaited
// and answers with JSON in the shape asio_pingpong prints. Each phase stops after `seconds`.
#include <serve/serve.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "stats.h"

namespace {
using Clock = std::chrono::steady_clock;

using serve::bench::Mean;
using serve::bench::Percentile;
double Round1(double x) { return static_cast<double>(static_cast<long long>(x * 10 + 0.5)) / 10; }
}  // namespace

class Pong {
 public:
  std::string operator()(const std::string& payload) { return payload; }
};
SERVE_DEPLOYMENT(Pong);

class HandleBench {
 public:
  explicit HandleBench(serve::DeploymentHandle pong) : pong_(std::move(pong)) {}

  serve::Json operator()(const serve::HttpRequest& request) {
    double seconds = std::stod(request.query("seconds", "3"));
    long iterations = std::stol(request.query("iterations", "1000000"));
    long batches = std::stol(request.query("batches", "1000000"));
    long batch_size = std::stol(request.query("batch_size", "100"));
    std::string payload(std::stoul(request.query("payload", "16")), 'x');
    auto limit = std::chrono::duration<double>(seconds);

    for (int i = 0; i < 100; ++i) pong_.remote<std::string>(payload).result(30.0);  // warm-up

    std::vector<double> rtt;
    auto seq_start = Clock::now();
    for (long i = 0; i < iterations; ++i) {
      auto t0 = Clock::now();
      std::string echo = pong_.remote<std::string>(payload).result(30.0);
      rtt.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      if (echo.size() != payload.size()) throw std::runtime_error("bad echo");
      if (Clock::now() - seq_start > limit) break;
    }
    double seq_s = std::chrono::duration<double>(Clock::now() - seq_start).count();

    std::vector<double> batch_us;
    long calls = 0;
    auto conc_start = Clock::now();
    for (long b = 0; b < batches; ++b) {
      auto t0 = Clock::now();
      std::vector<serve::DeploymentResponse<std::string>> inflight;
      inflight.reserve(static_cast<size_t>(batch_size));
      for (long k = 0; k < batch_size; ++k) inflight.push_back(pong_.remote<std::string>(payload));
      for (auto& r : inflight) r.result(30.0);
      batch_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      calls += batch_size;
      if (Clock::now() - conc_start > limit) break;
    }
    double conc_s = std::chrono::duration<double>(Clock::now() - conc_start).count();

    return {{"sequential",
             {{"iterations", rtt.size()},
              {"seconds", seq_s},
              {"rtt_mean_us", Round1(Mean(rtt))},
              {"rtt_p50_us", Round1(Percentile(rtt, 0.5))},
              {"rtt_p99_us", Round1(Percentile(rtt, 0.99))},
              {"calls_per_s", Round1(static_cast<double>(rtt.size()) / seq_s)}}},
            {"concurrent",
             {{"batch_size", batch_size},
              {"batches", batch_us.size()},
              {"seconds", conc_s},
              {"calls_per_s", Round1(static_cast<double>(calls) / conc_s)},
              {"batch_p50_us", Round1(Percentile(batch_us, 0.5))},
              {"batch_p99_us", Round1(Percentile(batch_us, 0.99))}}},
            {"payload_bytes", payload.size()}};
  }

 private:
  serve::DeploymentHandle pong_;
};
SERVE_DEPLOYMENT(HandleBench);

SERVE_APP(app, serve::deployment<HandleBench>().bind(serve::deployment<Pong>().bind()));
