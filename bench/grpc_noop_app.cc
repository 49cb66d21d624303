// The gRPC noop ingress served through the serve proxy by bench/grpc.sh.
#include <serve/grpc.h>
#include <serve/serve.h>

#include "noop.pb.h"

class GrpcNoop {
 public:
  benchnoop::NoopReply Call(const benchnoop::NoopRequest&) {
    benchnoop::NoopReply reply;
    reply.set_text("ok");
    return reply;
  }
};
SERVE_DEPLOYMENT(GrpcNoop, SERVE_GRPC_METHOD(&GrpcNoop::Call));

SERVE_APP(noop, serve::deployment<GrpcNoop>().max_ongoing_requests(1000).bind());
