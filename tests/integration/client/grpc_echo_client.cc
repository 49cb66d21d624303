// A C++ gRPC client of servetest.Echo (protos/echo.proto, stubs generated in the tree) calling
// the serve proxy: `grpc_echo_client HOST:PORT APP` makes one unary and one server-streaming
// call and prints what came back, one line each; exits 1 on a failed call.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <string>

#include "echo.grpc.pb.h"

namespace {

std::unique_ptr<grpc::ClientContext> Context(const std::string& app) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->AddMetadata("application", app);
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return ctx;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: grpc_echo_client HOST:PORT APP\n";
    return 2;
  }
  auto stub = servetest::Echo::NewStub(
      grpc::CreateChannel(argv[1], grpc::InsecureChannelCredentials()));
  servetest::EchoRequest req;
  req.set_text("from c++");
  req.set_count(3);

  auto ctx = Context(argv[2]);
  servetest::EchoReply reply;
  grpc::Status st = stub->Say(ctx.get(), req, &reply);
  if (!st.ok()) {
    std::cerr << "Say failed: " << st.error_code() << " " << st.error_message() << "\n";
    return 1;
  }
  std::string request_id;
  for (const auto& [k, v] : ctx->GetServerTrailingMetadata()) {
    if (k == "request_id") request_id.assign(v.data(), v.size());
  }
  std::cout << "say " << reply.text() << " " << reply.app() << " request_id=" << request_id
            << "\n";

  auto stream_ctx = Context(argv[2]);
  auto reader = stub->Count(stream_ctx.get(), req);
  std::cout << "count";
  while (reader->Read(&reply)) std::cout << " " << reply.index();
  std::cout << "\n";
  st = reader->Finish();
  if (!st.ok()) {
    std::cerr << "Count failed: " << st.error_code() << " " << st.error_message() << "\n";
    return 1;
  }
  return 0;
}
