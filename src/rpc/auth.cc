#include "rpc/auth.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>

#include <boost/asio/ip/address.hpp>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include "common/util.h"

namespace serve::rpc {
namespace {

std::mutex& TokenMutex() {
  static std::mutex mu;
  return mu;
}
std::string& TokenSlot() {
  static std::string* token = new std::string();  // never destroyed: used by exiting threads
  return *token;
}

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

}  // namespace

absl::StatusOr<std::string> GenerateClusterToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return absl::InternalError("cannot generate a cluster token: RAND_bytes failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token;
  token.reserve(2 * sizeof(bytes));
  for (unsigned char b : bytes) {
    token.push_back(kHex[b >> 4]);
    token.push_back(kHex[b & 0xf]);
  }
  OPENSSL_cleanse(bytes, sizeof(bytes));
  return token;
}

absl::Status ValidateToken(std::string_view token) {
  if (token.size() < kMinTokenSize || token.size() > kMaxTokenSize) {
    return absl::InvalidArgumentError("a cluster token must have " +
                                      std::to_string(kMinTokenSize) + " to " +
                                      std::to_string(kMaxTokenSize) + " characters (got " +
                                      std::to_string(token.size()) + ")");
  }
  for (unsigned char c : token) {
    if (c <= 32 || c >= 127) {
      return absl::InvalidArgumentError(
          "a cluster token must be printable ASCII without spaces");
    }
  }
  return absl::OkStatus();
}

bool TokenMatches(std::string_view expected, std::string_view given) {
  if (expected.empty() || given.size() != expected.size()) return false;
  return CRYPTO_memcmp(expected.data(), given.data(), expected.size()) == 0;
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  auto text = ReadFile(path);
  if (!text) return absl::NotFoundError("cannot read the cluster token file " + path);
  std::string token(Trim(*text));
  OPENSSL_cleanse(text->data(), text->size());
  if (auto st = ValidateToken(token); !st.ok()) {
    return absl::InvalidArgumentError("the cluster token file " + path + " is not usable: " +
                                      std::string(st.message()));
  }
  return token;
}

absl::Status WriteTokenFile(const std::string& path, const std::string& token) {
  if (!WritePrivateFileAtomic(path, token + "\n")) {
    return absl::InternalError("cannot write the cluster token file " + path);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> TokenFromEnvironment() {
  std::string file = EnvString(kTokenFileEnv, "");
  if (!file.empty()) {
    auto token = ReadTokenFile(file);
    if (!token.ok()) {
      return absl::Status(token.status().code(),
                          "$" + std::string(kTokenFileEnv) + ": " +
                              std::string(token.status().message()));
    }
    return std::optional<std::string>(*std::move(token));
  }
  std::string token(Trim(EnvString(kTokenEnv, "")));
  if (token.empty()) return std::optional<std::string>();
  if (auto st = ValidateToken(token); !st.ok()) {
    return absl::InvalidArgumentError("$" + std::string(kTokenEnv) + ": " +
                                      std::string(st.message()));
  }
  return std::optional<std::string>(std::move(token));
}

std::string ClusterToken() {
  std::lock_guard lock(TokenMutex());
  return TokenSlot();
}

void SetClusterToken(std::string token) {
  std::lock_guard lock(TokenMutex());
  TokenSlot() = std::move(token);
}

absl::Status LoadClusterTokenFromEnvironment() {
  auto token = TokenFromEnvironment();
  if (!token.ok()) return token.status();
  if (*token) {
    SetClusterToken(**token);
  } else {
    spdlog::warn("No cluster token (${} and ${} are unset): this process accepts every caller.",
                 kTokenFileEnv, kTokenEnv);
  }
  return absl::OkStatus();
}

absl::Status AdoptClusterToken(const std::string& token_file, const std::string& store_path) {
  absl::StatusOr<std::optional<std::string>> token =
      token_file.empty() ? TokenFromEnvironment()
                         : absl::StatusOr<std::optional<std::string>>(ReadTokenFile(token_file));
  if (!token.ok()) return token.status();
  if (!*token) {
    return absl::InvalidArgumentError("a cluster token is required: --token-file FILE, $" +
                                      std::string(kTokenFileEnv) + " or $" + kTokenEnv);
  }
  auto stored = ReadTokenFile(store_path);
  if (!stored.ok() || *stored != **token) {
    if (auto st = WriteTokenFile(store_path, **token); !st.ok()) return st;
  }
  std::error_code ec;
  std::string path = std::filesystem::absolute(store_path, ec).string();
  ::setenv(kTokenFileEnv, path.c_str(), 1);
  ::unsetenv(kTokenEnv);
  SetClusterToken(**std::move(token));
  return absl::OkStatus();
}

std::string BearerValue(std::string_view token) { return "Bearer " + std::string(token); }

std::string_view BearerToken(std::string_view value) {
  value = Trim(value);
  constexpr std::string_view kScheme = "bearer";
  if (value.size() <= kScheme.size() || !IEquals(value.substr(0, kScheme.size()), kScheme) ||
      value[kScheme.size()] != ' ') {
    return {};
  }
  return Trim(value.substr(kScheme.size() + 1));
}

void LogRefused(std::string_view what, std::string_view why) {
  // At most kBurst lines per kWindow; the first line of the next window counts the rest.
  using Clock = std::chrono::steady_clock;
  constexpr int kBurst = 10;
  constexpr auto kWindow = std::chrono::seconds(10);
  static std::mutex mu;
  static Clock::time_point window_start{};
  static int logged = 0;
  static int left_out = 0;
  std::lock_guard lock(mu);
  auto now = Clock::now();
  if (logged == 0 || now - window_start >= kWindow) {
    window_start = now;
    logged = 0;
  }
  if (logged >= kBurst) {
    ++left_out;
    return;
  }
  ++logged;
  // `what` can hold a caller's bytes (a path): no control characters in the log.
  std::string shown(what);
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 32 || c == 127) c = '?';
  }
  if (left_out > 0) {
    spdlog::warn("Refused {}: {} ({} more refused requests were not logged).", shown, why,
                 left_out);
    left_out = 0;
  } else {
    spdlog::warn("Refused {}: {}.", shown, why);
  }
}

bool HostAllowed(std::string_view host_header, const std::vector<std::string>& names) {
  std::string_view host = Trim(host_header);
  if (host.empty()) return true;
  if (host.front() == '[') {  // [v6]:port
    auto close = host.find(']');
    if (close == std::string_view::npos) return false;
    std::string_view rest = host.substr(close + 1);
    if (!rest.empty() && (rest.front() != ':' ||
                          !std::all_of(rest.begin() + 1, rest.end(), [](char c) {
                            return std::isdigit(static_cast<unsigned char>(c));
                          }))) {
      return false;
    }
    boost::system::error_code ec;
    boost::asio::ip::make_address_v6(std::string(host.substr(1, close - 1)), ec);
    return !ec;
  }
  if (auto colon = host.rfind(':'); colon != std::string_view::npos) {
    std::string_view port = host.substr(colon + 1);
    if (!std::all_of(port.begin(), port.end(),
                     [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
      return false;
    }
    host = host.substr(0, colon);
  }
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (host.empty()) return false;
  boost::system::error_code ec;
  boost::asio::ip::make_address_v4(std::string(host), ec);
  if (!ec) return true;
  constexpr std::string_view kLocal = ".localhost";
  if (IEquals(host, "localhost") ||
      (host.size() > kLocal.size() && IEquals(host.substr(host.size() - kLocal.size()), kLocal))) {
    return true;
  }
  return std::any_of(names.begin(), names.end(), [&](const std::string& name) {
    std::string_view n = name;
    if (!n.empty() && n.back() == '.') n.remove_suffix(1);
    return !n.empty() && IEquals(n, host);
  });
}

RestAuthOptions RestAuthOptions::FromEnvironment() {
  RestAuthOptions o;
  o.token = ClusterToken();
  o.trust_loopback = EnvDouble("SERVE_REST_TRUST_LOOPBACK", 1) != 0;
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) == 0 && name[0] != '\0') o.host_names.push_back(name);
  std::string extra = EnvString("SERVE_REST_ALLOWED_HOSTS", "");
  size_t pos = 0;
  while (pos <= extra.size()) {
    size_t comma = extra.find(',', pos);
    std::string_view item = Trim(std::string_view(extra).substr(
        pos, comma == std::string::npos ? std::string::npos : comma - pos));
    if (!item.empty()) o.host_names.emplace_back(item);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return o;
}

std::optional<HttpServerResponse> CheckRestRequest(const RestAuthOptions& options,
                                                   const HttpServerRequest& request) {
  std::string_view given;
  bool has_authorization = false;
  for (const auto& [name, value] : request.headers) {
    if (IEquals(name, "authorization")) {
      has_authorization = true;
      given = BearerToken(value);
      break;
    }
  }
  if (!options.token.empty() && TokenMatches(options.token, given)) return std::nullopt;
  std::string what = "REST " + request.method + " " + request.target.substr(0, 200) + " from " +
                     (request.peer.empty() ? std::string("an unknown peer") : request.peer);
  auto refuse = [&](int status, std::string_view why, std::string body) {
    LogRefused(what, why);
    HttpServerResponse r;
    r.status = status;
    r.headers.emplace_back("content-type", "text/plain; charset=utf-8");
    if (status == 401) r.headers.emplace_back("www-authenticate", "Bearer");
    r.body = std::move(body);
    return r;
  };
  if (!HostAllowed(request.host, options.host_names)) {
    return refuse(403, "its Host header names another site (DNS rebinding protection)",
                  "Forbidden: the Host header does not name this node. Use its IP address or "
                  "host name, or list the name in $SERVE_REST_ALLOWED_HOSTS.\n");
  }
  if (options.token.empty()) return std::nullopt;
  if (request.peer_loopback && options.trust_loopback) return std::nullopt;
  return refuse(401, has_authorization ? "wrong cluster token" : "no cluster token",
                "Unauthorized: this API needs the cluster token (header 'Authorization: Bearer "
                "<token>'). The serve CLI reads it from --token-file, $SERVE_CLUSTER_TOKEN_FILE, "
                "$SERVE_CLUSTER_TOKEN or the local session's cluster_token file.\n");
}

}  // namespace serve::rpc
