#pragma once

// Cluster token authentication (Ray's token auth mode; docs/security.md). Every cluster has one
// token: the agent's and the controller's gRPC, each replica's control gRPC and data plane, and
// the REST API require it. The public ingress (HTTP proxy, user gRPC proxy) does not.
// A process holds its token in one place (SetClusterToken / ClusterToken); gRPC channels made by
// ChannelTo send it as `authorization: Bearer <token>`, servers from StartGrpcServer and
// DataServer check it. Refusals are logged without the token.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "rpc/http_server.h"

namespace serve::rpc {

/// Path of a file holding the token (what the agent gives its children).
inline constexpr char kTokenFileEnv[] = "SERVE_CLUSTER_TOKEN_FILE";
/// The token itself (when no file is set).
inline constexpr char kTokenEnv[] = "SERVE_CLUSTER_TOKEN";
inline constexpr size_t kMinTokenSize = 16;
inline constexpr size_t kMaxTokenSize = 512;

/// A new token: 32 bytes from OpenSSL's RAND_bytes as 64 hex digits.
absl::StatusOr<std::string> GenerateClusterToken();
/// kInvalidArgument unless `token` is kMinTokenSize..kMaxTokenSize printable ASCII characters
/// without spaces. The message never contains the token.
absl::Status ValidateToken(std::string_view token);
/// Whether `given` equals `expected`, compared in constant time (CRYPTO_memcmp) for tokens of
/// the same length. False when `expected` is empty.
bool TokenMatches(std::string_view expected, std::string_view given);

/// Reads and validates a token file (surrounding whitespace trimmed). Errors name the path,
/// never the content.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);
/// Writes `token` to `path` atomically, created 0600.
absl::Status WriteTokenFile(const std::string& path, const std::string& token);
/// $SERVE_CLUSTER_TOKEN_FILE (read), else $SERVE_CLUSTER_TOKEN; nullopt when neither is set.
absl::StatusOr<std::optional<std::string>> TokenFromEnvironment();

/// This process's cluster token; "" when it has none (servers then accept every caller and
/// clients send nothing: unit tests, `serve build`). Thread-safe.
std::string ClusterToken();
void SetClusterToken(std::string token);
/// For the daemons the agent starts: SetClusterToken(TokenFromEnvironment()). An error when a
/// variable is set but unusable (the process must not serve without its token).
absl::Status LoadClusterTokenFromEnvironment();

/// For a process that starts others (the node agent), before it starts threads: reads the token
/// from `token_file` ("" = TokenFromEnvironment(); an error when there is none), stores it at
/// `store_path` (0600), sets $SERVE_CLUSTER_TOKEN_FILE to that file's absolute path and unsets
/// $SERVE_CLUSTER_TOKEN (children inherit the file, never the token), then SetClusterToken.
absl::Status AdoptClusterToken(const std::string& token_file, const std::string& store_path);

/// "Bearer <token>": the value of the `authorization` header (REST) and metadata (gRPC).
std::string BearerValue(std::string_view token);
/// The token of an `authorization` value "Bearer <token>" (scheme case-insensitive), "" if the
/// value has another form.
std::string_view BearerToken(std::string_view value);

/// Logs one refused request at warning level: "Refused <what>: <why>." `what` and `why` must
/// not hold the token. At most 10 lines per 10 s; the next line counts those left out.
void LogRefused(std::string_view what, std::string_view why);

/// Whether a Host header value names this node, against DNS rebinding: an IP literal (v4, or
/// v6 in brackets), `localhost` (or a name under `.localhost`) or one of `names`
/// (case-insensitive, a trailing dot ignored), each with an optional port. An empty value (an
/// HTTP/1.0 request; browsers always send one) is allowed.
bool HostAllowed(std::string_view host_header, const std::vector<std::string>& names);

/// Who may use the REST API on the dashboard port.
struct RestAuthOptions {
  std::string token;           ///< "" = no token required (only the Host check applies)
  bool trust_loopback = true;  ///< requests from a loopback peer need no token
  std::vector<std::string> host_names;  ///< this node's names for HostAllowed
  /// ClusterToken(), $SERVE_REST_TRUST_LOOPBACK (default 1; 0 requires the token from loopback
  /// too), and as names gethostname() and $SERVE_REST_ALLOWED_HOSTS (comma-separated).
  static RestAuthOptions FromEnvironment();
};

/// nullopt when `request` may proceed: it carries the token (`authorization: Bearer`), or its
/// Host is allowed and either no token is required or it comes from loopback while that is
/// trusted. Otherwise the response to send (logged): 403 for a Host that is not this node's,
/// 401 with `www-authenticate: Bearer` for a missing or wrong token.
std::optional<HttpServerResponse> CheckRestRequest(const RestAuthOptions& options,
                                                   const HttpServerRequest& request);

}  // namespace serve::rpc
