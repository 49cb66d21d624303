#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace serve::controller {

/// A durable map from string keys to byte-string values: where the controller checkpoints its
/// state so that a restarted controller can recover it.
///
/// Keys are non-empty byte strings (they may contain '/', ':', '#', '.', spaces or NUL);
/// implementations may bound their length (FileKvStore: 240 bytes once escaped). Values are
/// arbitrary bytes, NUL included, and may be empty.
///
/// Each call is atomic: a Get never sees a partially written value, and after Put returns OK
/// the value is durable to the degree the backend provides (FileKvStore: fsynced; RedisKvStore:
/// acknowledged by the server, persisted per its own configuration).
///
/// Errors shared by all implementations:
///   - kInvalidArgument: the key is empty or too long for this backend;
///   - kUnavailable: the backend cannot be reached (Redis down, timed out); retrying later may
///     succeed, and a Put or Delete that failed this way may or may not have been applied;
///   - kUnauthenticated: the backend rejected our credentials;
///   - kInternal (or the errno-derived code): the backend failed (disk I/O error, unexpected
///     reply).
///
/// Thread-safety: every method may be called concurrently from any number of threads (the
/// controller calls them from its control-loop thread and from gRPC callback threads). Calls
/// may block on disk or network I/O for up to the backend's timeout, so never call them on an
/// I/O thread.
class KvStore {
 public:
  virtual ~KvStore() = default;

  /// Stores `value` under `key`, replacing any previous value.
  virtual absl::Status Put(std::string_view key, std::string_view value) = 0;

  /// Returns the value stored under `key`; kNotFound when there is none.
  virtual absl::StatusOr<std::string> Get(std::string_view key) = 0;

  /// Removes `key`. Returns OK when the key did not exist.
  virtual absl::Status Delete(std::string_view key) = 0;

  /// Returns every key that starts with `prefix` (taken literally: no glob or regex meaning),
  /// sorted bytewise ascending and without duplicates. An empty `prefix` lists all keys. The
  /// result is not a snapshot: keys written concurrently may or may not appear.
  virtual absl::StatusOr<std::vector<std::string>> Keys(std::string_view prefix) = 0;
};

}  // namespace serve::controller
