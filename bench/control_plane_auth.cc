// Cost of the cluster token on the control plane: sequential unary gRPC calls
// (ReplicaControl.CheckHealth) on loopback to a server made by rpc::StartGrpcServer with a
// token (each call carries `authorization: Bearer`, checked by the auth metadata processor)
// and to one without (the baseline), through rpc::ChannelTo. Rounds alternate between the two
// in one process; prints the median round's wall time and process CPU time per call.
//
//   build/bin/bench_control_plane_auth [calls per round, default 2000] [rounds, default 7]

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "rpc/auth.h"
#include "rpc/grpc_util.h"
#include "serve/v1/replica.grpc.pb.h"

namespace {

class Noop final : public serve::v1::ReplicaControl::Service {
  grpc::Status CheckHealth(grpc::ServerContext*, const serve::v1::Empty*,
                           serve::v1::HealthReply* reply) override {
    reply->set_ok(true);
    return grpc::Status::OK;
  }
};

double CpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct Round {
  double wall_us;  // per call
  double cpu_us;   // per call, client and server together (one process)
};

Round Run(const std::string& address, int calls) {
  auto stub = serve::v1::ReplicaControl::NewStub(serve::rpc::ChannelTo(address));
  auto wall0 = std::chrono::steady_clock::now();
  double cpu0 = CpuSeconds();
  for (int i = 0; i < calls; ++i) {
    grpc::ClientContext ctx;
    serve::v1::Empty req;
    serve::v1::HealthReply reply;
    grpc::Status st = stub->CheckHealth(&ctx, req, &reply);
    if (!st.ok()) {
      std::fprintf(stderr, "call failed: %s\n", st.error_message().c_str());
      std::exit(1);
    }
  }
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  return {wall * 1e6 / calls, (CpuSeconds() - cpu0) * 1e6 / calls};
}

Round Median(std::vector<Round> rounds) {
  std::sort(rounds.begin(), rounds.end(),
            [](const Round& a, const Round& b) { return a.wall_us < b.wall_us; });
  return rounds[rounds.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int calls = argc > 1 ? std::atoi(argv[1]) : 2000;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 7;
  const std::string token = *serve::rpc::GenerateClusterToken();
  Noop plain_service, token_service;
  int plain_port = 0, token_port = 0;
  serve::rpc::SetClusterToken("");
  auto plain = serve::rpc::StartGrpcServer("127.0.0.1", 0, {&plain_service}, &plain_port);
  serve::rpc::SetClusterToken(token);
  auto checked = serve::rpc::StartGrpcServer("127.0.0.1", 0, {&token_service}, &token_port);
  if (!plain || !checked) return 1;
  const std::string plain_address = "127.0.0.1:" + std::to_string(plain_port);
  const std::string token_address = "127.0.0.1:" + std::to_string(token_port);
  std::vector<Round> without, with;
  for (int r = 0; r < rounds + 1; ++r) {  // round 0 warms both channels up
    serve::rpc::SetClusterToken("");
    Round a = Run(plain_address, calls);
    serve::rpc::SetClusterToken(token);
    Round b = Run(token_address, calls);
    if (r == 0) continue;
    without.push_back(a);
    with.push_back(b);
  }
  Round a = Median(without), b = Median(with);
  std::printf("calls/round %d, rounds %d (median round)\n", calls, rounds);
  std::printf("no token:   %.1f us/call wall, %.1f CPU-us/call\n", a.wall_us, a.cpu_us);
  std::printf("with token: %.1f us/call wall, %.1f CPU-us/call\n", b.wall_us, b.cpu_us);
  std::printf("ratio:      %.3f wall, %.3f CPU\n", b.wall_us / a.wall_us, b.cpu_us / a.cpu_us);
  plain->Shutdown();
  checked->Shutdown();
  return 0;
}
