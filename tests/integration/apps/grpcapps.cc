// gRPC ingress deployments for test_grpc.py: servetest.Echo (protos/echo.proto) served through
// the proxy's gRPC port, next to an HTTP handler on the same ingress.
#include <serve/grpc.h>
#include <serve/multiplex.h>
#include <serve/serve.h>

#include <chrono>
#include <stdexcept>
#include <string>

#include "echo.pb.h"

// A downstream deployment, called through a handle by Echo.Shout.
class Upper {
 public:
  std::string upper(std::string s) {
    for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
  }
};
SERVE_DEPLOYMENT(Upper, SERVE_METHOD(&Upper::upper));

class EchoIngress {
 public:
  explicit EchoIngress(serve::Handle<Upper> upper) : upper_(std::move(upper)) {}

  servetest::EchoReply Say(const servetest::EchoRequest& req, serve::GrpcContext& ctx) {
    servetest::EchoReply reply = Base(req.text());
    std::string metadata;
    for (const auto& [k, v] : ctx.invocation_metadata()) metadata += k + "=" + v + ";";
    reply.set_metadata(metadata);
    return reply;
  }

  serve::Stream<servetest::EchoReply> Count(const servetest::EchoRequest& req) {
    for (int i = 0; i < req.count(); ++i) {
      servetest::EchoReply reply = Base(req.text());
      reply.set_index(i);
      co_yield reply;
    }
  }

  // Sleeps without holding a thread; a cancelled request wakes with RequestCancelledError.
  serve::Task<servetest::EchoReply> Sleep(servetest::EchoRequest req) {
    serve::logger().info("sleep started");
    co_await serve::sleep_for(std::chrono::milliseconds(req.sleep_ms()));
    co_return Base("slept");
  }

  servetest::EchoReply SetCode(const servetest::EchoRequest& req, serve::GrpcContext& ctx) {
    ctx.set_code(static_cast<serve::GrpcStatusCode>(req.code()));
    ctx.set_details(req.details());
    ctx.set_trailing_metadata({{"custom-trailer", "trailer-value"}});
    return Base("with code");
  }

  servetest::EchoReply Fail(const servetest::EchoRequest& req) {
    throw std::runtime_error("asked to fail: " + req.text());
  }

  serve::Task<servetest::EchoReply> Shout(servetest::EchoRequest req) {
    std::string loud = co_await upper_.call<&Upper::upper>(req.text());
    co_return Base(loud);
  }

  // The same ingress over HTTP.
  std::string operator()(const serve::HttpRequest&) { return "http ok"; }

 private:
  servetest::EchoReply Base(const std::string& text) {
    servetest::EchoReply reply;
    reply.set_text(text);
    reply.set_app(serve::get_replica_context().app_name);
    reply.set_model_id(serve::get_multiplexed_model_id());
    return reply;
  }

  serve::Handle<Upper> upper_;
};
SERVE_DEPLOYMENT(EchoIngress, SERVE_GRPC_METHOD(&EchoIngress::Say),
                 SERVE_GRPC_METHOD(&EchoIngress::Count), SERVE_GRPC_METHOD(&EchoIngress::Sleep),
                 SERVE_GRPC_METHOD(&EchoIngress::SetCode), SERVE_GRPC_METHOD(&EchoIngress::Fail),
                 SERVE_GRPC_METHOD(&EchoIngress::Shout));

SERVE_APP(echo_app, serve::deployment<EchoIngress>().bind(serve::deployment<Upper>().bind()));
