#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controller/storage/kv_store.h"

struct redisContext;  // hiredis; kept out of this header.

namespace serve::controller {

/// Where and how RedisKvStore connects.
struct RedisOptions {
  /// Host name or IP address of the Redis server.
  std::string host = "127.0.0.1";
  /// TCP port of the Redis server.
  int port = 6379;
  /// Logical database, selected with SELECT after connecting (and after every reconnect).
  int db = 0;
  /// Sent with AUTH after connecting when set; unset means the server needs no password.
  std::optional<std::string> password;
  /// Prepended to every key on the server and stripped from the keys Keys() returns, so that
  /// several clusters (or tests) can share one Redis, e.g. "serve:<cluster>:". Default: none.
  std::string namespace_prefix;
  /// Deadline for connecting and for each command's round trip.
  std::chrono::milliseconds timeout = std::chrono::seconds(2);
};

/// Parses "HOST:PORT" or "HOST:PORT/DB" (HOST may be a bracketed IPv6 address, "[::1]:6379")
/// into RedisOptions with the other fields at their defaults. kInvalidArgument, naming the
/// input, when the host or port is missing, the port is not in 1..65535 or DB is not a
/// non-negative integer.
absl::StatusOr<RedisOptions> ParseRedisAddress(std::string_view address);

/// KvStore on a Redis server (hiredis synchronous API): each key is a Redis string at
/// `namespace_prefix + key`; Keys() uses SCAN, never KEYS, so it does not stall the server.
///
/// Durability is the server's: RedisKvStore does not ask for persistence.
///
/// Connection: one connection, opened by Create(). When a call finds the connection broken
/// (the server restarted, the network dropped, or an earlier call timed out), it reconnects
/// once (AUTH, SELECT) and retries the whole operation; if that fails too the call returns
/// kUnavailable and the next call tries again. All operations are idempotent, so a retried Put
/// or Delete cannot apply twice with a different effect. A command that timed out is not
/// retried (the server is slow or hung, not gone), so a call against a hung server returns
/// after about one timeout; one that has to reconnect may take a few (connect, AUTH, SELECT,
/// PING and the command each have their own timeout).
///
/// Errors: kUnavailable (connect, I/O, timeout, server LOADING/READONLY/BUSY) and
/// kUnauthenticated (AUTH rejected, or the server wants a password and none is set), both with
/// "redis host:port" and the hiredis or server message; kInternal for any other error reply.
///
/// Thread-safety: as KvStore. A mutex guards the connection, so calls are serialised; one
/// slow call delays the others by up to its timeout. SIGPIPE from writing to a closed
/// connection is blocked and consumed in the calling thread, so the process need not ignore it.
class RedisKvStore final : public KvStore {
 public:
  /// Connects, authenticates and selects the database. kUnavailable when the server cannot be
  /// reached within `options.timeout`, kUnauthenticated when the password is rejected or
  /// missing, kInvalidArgument for a bad port, db or timeout.
  static absl::StatusOr<std::unique_ptr<RedisKvStore>> Create(RedisOptions options);

  ~RedisKvStore() override;
  RedisKvStore(const RedisKvStore&) = delete;
  RedisKvStore& operator=(const RedisKvStore&) = delete;

  // KvStore:
  absl::Status Put(std::string_view key, std::string_view value) override;
  absl::StatusOr<std::string> Get(std::string_view key) override;
  absl::Status Delete(std::string_view key) override;
  absl::StatusOr<std::vector<std::string>> Keys(std::string_view prefix) override;

  /// "host:port", as used in error messages.
  const std::string& address() const { return address_; }

 private:
  struct ContextDeleter {
    void operator()(redisContext* context) const;
  };
  using ContextPtr = std::unique_ptr<redisContext, ContextDeleter>;
  class Session;  // One attempt at an operation on the current connection (in the .cc).

  explicit RedisKvStore(RedisOptions options);

  // Opens a new connection, authenticated and on options_.db.
  absl::StatusOr<ContextPtr> Connect() const;

  // Runs `op` on the connection, connecting first if there is none and reconnecting and
  // running it again once if the connection broke (not timed out) during the first run.
  template <typename Result, typename Op>
  Result WithConnection(Op op);

  const RedisOptions options_;
  const std::string address_;
  // A std::mutex rather than absl::Mutex: Debian's libabsl is not built with ThreadSanitizer,
  // so TSan would not see an absl::Mutex order the accesses (docs/sanitizers.md).
  std::mutex mu_;
  ContextPtr context_;  // Guarded by mu_. Null after a failed (re)connect.
};

}  // namespace serve::controller
