#include "controller/storage/redis_kv_store.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <ctime>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace serve::controller {
namespace {

constexpr std::string_view kAddressForm = "expected HOST:PORT or HOST:PORT/DB";

// Abseil here is built with its own string_view, not an alias of std::string_view.
absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

struct ReplyDeleter {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

timeval ToTimeval(std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  return tv;
}

// Blocks SIGPIPE in the calling thread while alive and discards a SIGPIPE raised meanwhile:
// hiredis 0.14 writes with write(2), which raises SIGPIPE on a connection the server closed.
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock() {
    sigset_t pending;
    sigemptyset(&pending);
    was_pending_ = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &old_mask_);
  }
  ~ScopedSigpipeBlock() {
    const int saved_errno = errno;
    sigset_t pending;
    sigemptyset(&pending);
    if (!was_pending_ && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
      sigset_t pipe;
      sigemptyset(&pipe);
      sigaddset(&pipe, SIGPIPE);
      const timespec zero{};
      while (sigtimedwait(&pipe, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
    errno = saved_errno;
  }
  ScopedSigpipeBlock(const ScopedSigpipeBlock&) = delete;
  ScopedSigpipeBlock& operator=(const ScopedSigpipeBlock&) = delete;

 private:
  bool was_pending_ = false;
  sigset_t old_mask_;
};

// A non-negative decimal of at most `max_digits` digits (no sign, no spaces).
std::optional<int> ParseDecimal(std::string_view text, size_t max_digits) {
  if (text.empty() || text.size() > max_digits) return std::nullopt;
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  return value;
}

absl::Status BadAddress(std::string_view address, std::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid redis address '", absl::CHexEscape(AbslView(address)),
                   "': ", AbslView(problem), "; ", AbslView(kAddressForm)));
}

// Escapes the glob metacharacters of SCAN MATCH so that `literal` matches only itself.
std::string GlobEscape(std::string_view literal) {
  std::string out;
  out.reserve(literal.size() + 8);
  for (char c : literal) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

bool StartsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

absl::Status EmptyKeyError() {
  return absl::InvalidArgumentError("RedisKvStore: key must not be empty");
}

}  // namespace

absl::StatusOr<RedisOptions> ParseRedisAddress(std::string_view address) {
  if (address.empty()) return BadAddress(address, "empty");
  std::string_view host;
  std::string_view rest;
  if (address.front() == '[') {
    const size_t close = address.find(']');
    if (close == std::string_view::npos) return BadAddress(address, "missing ']'");
    host = address.substr(1, close - 1);
    rest = address.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return BadAddress(address, "missing port");
    rest.remove_prefix(1);
  } else {
    const size_t colon = address.find(':');
    if (colon == std::string_view::npos) return BadAddress(address, "missing port");
    host = address.substr(0, colon);
    rest = address.substr(colon + 1);
    if (rest.find(':') != std::string_view::npos) {
      return BadAddress(address, "IPv6 hosts must be in brackets, e.g. [::1]:6379");
    }
  }
  if (host.empty()) return BadAddress(address, "missing host");

  std::string_view port_text = rest;
  std::optional<std::string_view> db_text;
  if (const size_t slash = rest.find('/'); slash != std::string_view::npos) {
    port_text = rest.substr(0, slash);
    db_text = rest.substr(slash + 1);
  }
  if (port_text.empty()) return BadAddress(address, "missing port");
  const std::optional<int> port = ParseDecimal(port_text, 5);
  if (!port.has_value() || *port < 1 || *port > 65535) {
    return BadAddress(address, absl::StrCat("bad port '", absl::CHexEscape(AbslView(port_text)),
                                            "' (expected 1..65535)"));
  }
  RedisOptions options;
  options.host = std::string(host);
  options.port = *port;
  if (db_text.has_value()) {
    const std::optional<int> db = ParseDecimal(*db_text, 9);
    if (!db.has_value()) {
      return BadAddress(address, absl::StrCat("bad db '", absl::CHexEscape(AbslView(*db_text)),
                                              "' (expected a non-negative integer)"));
    }
    options.db = *db;
  }
  return options;
}

// Issues commands on one connection for one attempt at an operation, turning replies and
// failures into Status and recording whether the connection is still usable.
class RedisKvStore::Session {
 public:
  Session(redisContext* context, const RedisKvStore& store) : context_(context), store_(store) {}

  // Runs one command (hiredis format; `%b` for binary-safe arguments). An error reply becomes
  // kUnauthenticated, kUnavailable or kInternal; a transport failure kUnavailable, after which
  // broken() is true and the connection must not be used again.
  absl::StatusOr<ReplyPtr> Command(std::string_view name, const char* format, ...) {
    errno = 0;
    va_list args;
    va_start(args, format);
    ReplyPtr reply(static_cast<redisReply*>(redisvCommand(context_, format, args)));
    va_end(args);
    const int error_number = errno;
    if (reply == nullptr) {
      broken_ = true;
      if (context_->err == REDIS_ERR_IO &&
          (error_number == EAGAIN || error_number == EWOULDBLOCK)) {
        timed_out_ = true;
        return absl::UnavailableError(
            absl::StrCat("redis ", store_.address_, ": ", AbslView(name), " timed out after ",
                         store_.options_.timeout.count(), " ms (", context_->errstr, ")"));
      }
      return absl::UnavailableError(absl::StrCat("redis ", store_.address_, ": ", AbslView(name),
                                                 " failed: ", context_->errstr));
    }
    if (reply->type == REDIS_REPLY_ERROR) {
      const std::string_view text(reply->str, reply->len);
      const std::string message = absl::StrCat("redis ", store_.address_, ": ", AbslView(name),
                                               " failed: ", AbslView(text));
      if (name == "AUTH" || StartsWith(text, "NOAUTH") || StartsWith(text, "WRONGPASS")) {
        return absl::UnauthenticatedError(message);
      }
      if (StartsWith(text, "LOADING") || StartsWith(text, "BUSY") || StartsWith(text, "READONLY") ||
          StartsWith(text, "MASTERDOWN") || StartsWith(text, "TRYAGAIN")) {
        return absl::UnavailableError(message);
      }
      return absl::InternalError(message);
    }
    return reply;
  }

  absl::Status Unexpected(std::string_view name, const redisReply& reply) const {
    return absl::InternalError(absl::StrCat("redis ", store_.address_, ": unexpected reply to ",
                                            AbslView(name), " (type ", reply.type, ")"));
  }

  bool broken() const { return broken_; }
  bool timed_out() const { return timed_out_; }

 private:
  redisContext* const context_;  // Not owned; must outlive this.
  const RedisKvStore& store_;    // Not owned; must outlive this.
  bool broken_ = false;
  bool timed_out_ = false;
};

void RedisKvStore::ContextDeleter::operator()(redisContext* context) const { redisFree(context); }

absl::StatusOr<std::unique_ptr<RedisKvStore>> RedisKvStore::Create(RedisOptions options) {
  if (options.host.empty()) return absl::InvalidArgumentError("RedisKvStore: empty host");
  if (options.port < 1 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("RedisKvStore: bad port ", options.port, " (expected 1..65535)"));
  }
  if (options.db < 0) {
    return absl::InvalidArgumentError(absl::StrCat("RedisKvStore: bad db ", options.db));
  }
  if (options.timeout <= std::chrono::milliseconds::zero()) {
    return absl::InvalidArgumentError("RedisKvStore: timeout must be positive");
  }
  std::unique_ptr<RedisKvStore> store(new RedisKvStore(std::move(options)));
  ScopedSigpipeBlock sigpipe;
  absl::StatusOr<ContextPtr> context = store->Connect();
  if (!context.ok()) return context.status();
  std::lock_guard lock(store->mu_);
  store->context_ = *std::move(context);
  return store;
}

RedisKvStore::RedisKvStore(RedisOptions options)
    : options_(std::move(options)),
      address_(options_.host.find(':') == std::string::npos
                   ? absl::StrCat(options_.host, ":", options_.port)
                   : absl::StrCat("[", options_.host, "]:", options_.port)) {}

RedisKvStore::~RedisKvStore() = default;

absl::StatusOr<RedisKvStore::ContextPtr> RedisKvStore::Connect() const {
  const timeval tv = ToTimeval(options_.timeout);
  ContextPtr context(redisConnectWithTimeout(options_.host.c_str(), options_.port, tv));
  if (context == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("redis ", address_, ": cannot connect: out of memory"));
  }
  if (context->err != 0) {
    return absl::UnavailableError(
        absl::StrCat("redis ", address_, ": cannot connect: ", context->errstr));
  }
  if (redisSetTimeout(context.get(), tv) != REDIS_OK) {
    return absl::UnavailableError(
        absl::StrCat("redis ", address_, ": cannot set timeout: ", context->errstr));
  }
  Session session(context.get(), *this);
  if (options_.password.has_value()) {
    absl::StatusOr<ReplyPtr> reply =
        session.Command("AUTH", "AUTH %b", options_.password->data(), options_.password->size());
    if (!reply.ok()) return reply.status();
  }
  if (options_.db != 0) {
    absl::StatusOr<ReplyPtr> reply = session.Command("SELECT", "SELECT %d", options_.db);
    if (!reply.ok()) return reply.status();
  }
  // Proves the server answers and that we are authorised, before the first real command.
  absl::StatusOr<ReplyPtr> pong = session.Command("PING", "PING");
  if (!pong.ok()) {
    if (absl::IsUnauthenticated(pong.status()) && !options_.password.has_value()) {
      return absl::UnauthenticatedError(absl::StrCat(
          pong.status().message(), " (the server requires a password; none is configured)"));
    }
    return pong.status();
  }
  return context;
}

template <typename Result, typename Op>
Result RedisKvStore::WithConnection(Op op) {
  ScopedSigpipeBlock sigpipe;
  std::lock_guard lock(mu_);
  bool fresh = false;
  if (context_ == nullptr) {
    absl::StatusOr<ContextPtr> context = Connect();
    if (!context.ok()) return context.status();
    context_ = *std::move(context);
    fresh = true;
  }
  for (;;) {
    Session session(context_.get(), *this);
    Result result = op(session);
    if (!session.broken()) return result;
    context_.reset();  // A hiredis context is unusable after an I/O error.
    // A timeout means the server is slow or hung, not gone: retrying would only double the
    // wait. One reconnect per call is enough to survive a server restart.
    if (fresh || session.timed_out()) return result;
    absl::StatusOr<ContextPtr> context = Connect();
    if (!context.ok()) return context.status();
    context_ = *std::move(context);
    fresh = true;
  }
}

absl::Status RedisKvStore::Put(std::string_view key, std::string_view value) {
  if (key.empty()) return EmptyKeyError();
  const std::string full_key = absl::StrCat(options_.namespace_prefix, AbslView(key));
  return WithConnection<absl::Status>([&](Session& session) -> absl::Status {
    absl::StatusOr<ReplyPtr> reply = session.Command("SET", "SET %b %b", full_key.data(),
                                                     full_key.size(), value.data(), value.size());
    if (!reply.ok()) return reply.status();
    if ((*reply)->type != REDIS_REPLY_STATUS) return session.Unexpected("SET", **reply);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::string> RedisKvStore::Get(std::string_view key) {
  if (key.empty()) return EmptyKeyError();
  const std::string full_key = absl::StrCat(options_.namespace_prefix, AbslView(key));
  return WithConnection<absl::StatusOr<std::string>>(
      [&](Session& session) -> absl::StatusOr<std::string> {
        absl::StatusOr<ReplyPtr> reply =
            session.Command("GET", "GET %b", full_key.data(), full_key.size());
        if (!reply.ok()) return reply.status();
        const redisReply& r = **reply;
        if (r.type == REDIS_REPLY_NIL) {
          return absl::NotFoundError(
              absl::StrCat("redis ", address_, ": no key '", absl::CHexEscape(AbslView(key)), "'"));
        }
        if (r.type != REDIS_REPLY_STRING) return session.Unexpected("GET", r);
        return std::string(r.str, r.len);
      });
}

absl::Status RedisKvStore::Delete(std::string_view key) {
  if (key.empty()) return EmptyKeyError();
  const std::string full_key = absl::StrCat(options_.namespace_prefix, AbslView(key));
  return WithConnection<absl::Status>([&](Session& session) -> absl::Status {
    absl::StatusOr<ReplyPtr> reply =
        session.Command("DEL", "DEL %b", full_key.data(), full_key.size());
    if (!reply.ok()) return reply.status();
    if ((*reply)->type != REDIS_REPLY_INTEGER) return session.Unexpected("DEL", **reply);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<std::string>> RedisKvStore::Keys(std::string_view prefix) {
  const std::string full_prefix = absl::StrCat(options_.namespace_prefix, AbslView(prefix));
  const std::string pattern = GlobEscape(full_prefix) + "*";
  const size_t strip = options_.namespace_prefix.size();
  return WithConnection<absl::StatusOr<std::vector<std::string>>>(
      [&](Session& session) -> absl::StatusOr<std::vector<std::string>> {
        std::vector<std::string> keys;
        std::string cursor = "0";
        do {
          absl::StatusOr<ReplyPtr> reply =
              session.Command("SCAN", "SCAN %b MATCH %b COUNT 1000", cursor.data(), cursor.size(),
                              pattern.data(), pattern.size());
          if (!reply.ok()) return reply.status();
          const redisReply& r = **reply;
          if (r.type != REDIS_REPLY_ARRAY || r.elements != 2 ||
              r.element[0]->type != REDIS_REPLY_STRING || r.element[1]->type != REDIS_REPLY_ARRAY) {
            return session.Unexpected("SCAN", r);
          }
          cursor.assign(r.element[0]->str, r.element[0]->len);
          const redisReply& batch = *r.element[1];
          for (size_t i = 0; i < batch.elements; ++i) {
            const redisReply& item = *batch.element[i];
            if (item.type != REDIS_REPLY_STRING) return session.Unexpected("SCAN", r);
            const std::string_view full_key(item.str, item.len);
            if (StartsWith(full_key, full_prefix)) keys.emplace_back(full_key.substr(strip));
          }
        } while (cursor != "0");
        // SCAN may return a key more than once.
        std::sort(keys.begin(), keys.end());
        keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
        return keys;
      });
}

}  // namespace serve::controller
