#pragma once

// The gRPC call context of the SDK (see serve/grpc.h, which registers gRPC handlers).

#include <string>
#include <utility>
#include <vector>

namespace serve {

/// gRPC status codes (the values of grpc::StatusCode).
enum class GrpcStatusCode : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

using GrpcMetadata = std::vector<std::pair<std::string, std::string>>;

/// The gRPC side of one call (Ray Serve's `grpc_context`): the client's invocation metadata,
/// and the status code, details and trailing metadata sent back. A handler that sets a code
/// other than kOk makes the client see that status (with `details`) instead of the response;
/// a handler that throws gives INTERNAL whatever was set. Valid until the handler finished
/// (for a stream: until the generator ended); used by one request at a time.
class GrpcContext {
 public:
  /// Metadata the client sent (lower-case keys, in order; binary "-bin" values raw).
  const GrpcMetadata& invocation_metadata() const { return invocation_metadata_; }
  /// First value of invocation metadata `key`, or `fallback`.
  std::string metadata(const std::string& key, const std::string& fallback = "") const {
    for (const auto& [k, v] : invocation_metadata_) {
      if (k == key) return v;
    }
    return fallback;
  }
  GrpcStatusCode code() const { return code_; }
  void set_code(GrpcStatusCode code) { code_ = code; }
  const std::string& details() const { return details_; }
  void set_details(std::string details) { details_ = std::move(details); }
  const GrpcMetadata& trailing_metadata() const { return trailing_metadata_; }
  /// Replaces the trailing metadata (keys must be lower-case; the proxy adds `request_id`).
  void set_trailing_metadata(GrpcMetadata metadata) { trailing_metadata_ = std::move(metadata); }

  /// For hosts: the metadata of the incoming call.
  void set_invocation_metadata(GrpcMetadata metadata) {
    invocation_metadata_ = std::move(metadata);
  }

 private:
  GrpcMetadata invocation_metadata_;
  GrpcStatusCode code_ = GrpcStatusCode::kOk;
  std::string details_;
  GrpcMetadata trailing_metadata_;
};

namespace detail {

/// What a gRPC call gives its handler: the request message's bytes and the call's context.
/// Both outlive the handler (a coroutine's or a stream's too).
struct GrpcInput {
  const std::string* request = nullptr;
  GrpcContext* context = nullptr;
};

}  // namespace detail
}  // namespace serve
