// gRPC noop benchmark programs (bench/grpc.sh):
//   grpc_bench server PORT                      plain gRPC C++ callback server of benchnoop.Noop
//                                               (the baseline); runs until SIGTERM
//   grpc_bench load HOST:PORT CONC SECONDS      keeps CONC unary calls in flight for SECONDS
//                                               (callback API, one channel) and prints
//                                               "rps p50_ms p99_ms errors"
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "noop.grpc.pb.h"
#include "stats.h"

namespace {

class NoopService final : public benchnoop::Noop::CallbackService {
  grpc::ServerUnaryReactor* Call(grpc::CallbackServerContext* ctx, const benchnoop::NoopRequest*,
                                 benchnoop::NoopReply* reply) override {
    reply->set_text("ok");
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

int Serve(int port) {
  NoopService service;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  if (!server) return 1;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  int sig = 0;
  sigwait(&set, &sig);
  server->Shutdown();
  return 0;
}

struct Load {
  std::unique_ptr<benchnoop::Noop::Stub> stub;
  std::chrono::steady_clock::time_point end;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<double> latencies_ms;
  long errors = 0;
  int active = 0;

  // One caller: a call, and when it completes the next, until `end`.
  struct Caller {
    Load* load;
    grpc::ClientContext ctx;
    benchnoop::NoopRequest req;
    benchnoop::NoopReply reply;
    std::chrono::steady_clock::time_point start;
  };
  void Start() {
    auto* c = new Caller{this, {}, {}, {}, std::chrono::steady_clock::now()};
    c->req.set_text("noop");
    stub->async()->Call(&c->ctx, &c->req, &c->reply, [this, c](grpc::Status st) {
      auto now = std::chrono::steady_clock::now();
      bool more;
      {
        std::lock_guard lock(mu);
        if (st.ok()) {
          latencies_ms.push_back(std::chrono::duration<double, std::milli>(now - c->start).count());
        } else {
          ++errors;
        }
        more = now < end;
        if (!more && --active == 0) cv.notify_all();
      }
      delete c;
      if (more) Start();
    });
  }
};

int RunLoad(const std::string& address, int conc, double seconds) {
  Load load;
  load.stub = benchnoop::Noop::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  // Warm-up call (connection set-up is not measured).
  {
    grpc::ClientContext ctx;
    benchnoop::NoopRequest req;
    benchnoop::NoopReply reply;
    grpc::Status st = load.stub->Call(&ctx, req, &reply);
    if (!st.ok()) {
      std::fprintf(stderr, "warm-up call failed: %s\n", st.error_message().c_str());
      return 1;
    }
  }
  auto begin = std::chrono::steady_clock::now();
  load.end = begin + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                         std::chrono::duration<double>(seconds));
  load.active = conc;
  for (int i = 0; i < conc; ++i) load.Start();
  std::unique_lock lock(load.mu);
  load.cv.wait(lock, [&] { return load.active == 0; });
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  std::printf("%.0f %.3f %.3f %ld\n", static_cast<double>(load.latencies_ms.size()) / elapsed,
              serve::bench::Percentile(load.latencies_ms, 0.5),
              serve::bench::Percentile(load.latencies_ms, 0.99), load.errors);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "server" && argc == 3) return Serve(std::stoi(argv[2]));
  if (mode == "load" && argc == 5) return RunLoad(argv[2], std::stoi(argv[3]), std::stod(argv[4]));
  std::fprintf(stderr, "usage: grpc_bench server PORT | grpc_bench load HOST:PORT CONC SECONDS\n");
  return 2;
}
