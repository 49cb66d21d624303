#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controller/storage/kv_store.h"

namespace serve::controller {

/// KvStore that keeps one file per key in a local directory (single-node deployments, tests).
///
/// On-disk layout (a format: other tools and later versions read it):
///   - `<dir>/<escaped key>` holds the value's bytes, nothing else. Escaping keeps
///     [A-Za-z0-9_-] and writes every other byte as `%XX` (upper-case hex), so a name never
///     contains '/', never starts with '.', and is never "." or "..": every key stays a plain
///     file directly inside `dir`. Escaped names are at most 240 bytes (kInvalidArgument above).
///   - A Put writes `<dir>/.tmp.<unique>`, fsyncs it, renames it over the key's file and
///     fsyncs `dir`. Names starting with '.' (and names that are not a canonical escape) are
///     never read as keys, so a temp file left by a crash or a full disk is never visible; it
///     is left on disk and may be deleted by hand.
///
/// Thread-safety: as KvStore; no lock is needed because every call is one atomic file-system
/// operation. Several instances, in this or other processes, may share one directory;
/// concurrent Puts of one key end with one of the values (the last rename wins).
class FileKvStore final : public KvStore {
 public:
  /// Opens the store in `dir`, creating it (and its parents) if needed. Fails, with the path
  /// and the system error in the message, when `dir` is empty (kInvalidArgument), cannot be
  /// created, is not a directory (kFailedPrecondition), or a file cannot be written in it
  /// (the errno's code, e.g. kPermissionDenied or kResourceExhausted).
  static absl::StatusOr<std::unique_ptr<FileKvStore>> Create(std::string dir);

  // KvStore:
  absl::Status Put(std::string_view key, std::string_view value) override;
  absl::StatusOr<std::string> Get(std::string_view key) override;
  absl::Status Delete(std::string_view key) override;
  absl::StatusOr<std::vector<std::string>> Keys(std::string_view prefix) override;

  /// Absolute path of the directory holding the files.
  const std::string& dir() const { return dir_; }

 private:
  explicit FileKvStore(std::string dir);

  // Writes `value` to a new temp file in dir_, fsynced and closed; returns its path.
  absl::StatusOr<std::string> WriteTempFile(std::string_view value);
  absl::Status SyncDir();

  const std::string dir_;
  const uint64_t temp_nonce_;  // Random per instance: temp names never collide.
  std::atomic<uint64_t> temp_counter_{0};
};

}  // namespace serve::controller
