#pragma once

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"

namespace serve::rpc {

/// Starts a gRPC server on `host:0` (or the given port) with `services`; writes the bound
/// port into `*port`. Returns nullptr when it cannot bind. When the process has a cluster token
/// (rpc/auth.h; taken now), every call must carry it (`authorization: Bearer <token>`
/// metadata, consumed before the handlers see it); others fail with UNAUTHENTICATED before
/// reaching a handler, and are logged.
std::unique_ptr<grpc::Server> StartGrpcServer(const std::string& host, int requested_port,
                                              const std::vector<grpc::Service*>& services,
                                              int* port);

/// Channel to "host:port", cached per address in this process. Each call sends this process's
/// cluster token as it is at the call (ClusterToken(); nothing when it has none). Plaintext:
/// the token authenticates callers, it does not encrypt the traffic.
std::shared_ptr<grpc::Channel> ChannelTo(const std::string& address);

/// A client context with a deadline `seconds` from now.
std::unique_ptr<grpc::ClientContext> ContextWithDeadline(double seconds);

/// The one mapping of internal errors to gRPC codes (absl and gRPC codes share numbering):
/// kUnavailable ("shutting down") stays UNAVAILABLE, kAlreadyExists stays ALREADY_EXISTS.
grpc::Status ToGrpcStatus(const absl::Status& status);
/// The inverse of ToGrpcStatus.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace serve::rpc
