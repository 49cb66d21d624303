#pragma once

// The long-poll host (spec §7): per key a snapshot id (random start, +1 per change) and the
// listeners waiting for a key to move past the id they saw. Not thread-safe.

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <string>
#include <vector>

#include "serve/v1/controller.pb.h"

namespace serve::controller {

class LongPollHost {
 public:
  /// Answers one listener: the changed objects, or `timed_out` with none.
  using Reply = std::function<void(std::vector<v1::Update> updates, bool timed_out)>;
  /// Draws the first snapshot id of a key.
  using FirstId = std::function<int64_t()>;

  explicit LongPollHost(FirstId first_id);

  /// Publishes the current objects. A targets key that disappears publishes an unavailable,
  /// empty object once. While `hold` (replicas are being recovered) listeners keep waiting;
  /// the first publish after construction answers waiting listeners even without a change.
  void Publish(std::map<std::string, v1::Update> objects, bool hold);
  /// `keys` maps key -> the snapshot id the caller saw (-1: none). Replies at once when a
  /// known key moved on (unless `hold`), else at the next change or at `deadline_s`.
  void Listen(std::map<std::string, int64_t> keys, double deadline_s, bool hold, Reply reply);
  /// Answers listeners whose deadline passed with `timed_out`.
  void Expire(double now_s);
  /// Answers every listener with `timed_out` (shutdown).
  void CloseAll();

  /// The snapshot id of `key` (0: never published).
  int64_t SnapshotId(const std::string& key) const;
  size_t NumListeners() const { return listeners_.size(); }

 private:
  struct Snapshot {
    int64_t id = 0;
    std::string serialized;
    v1::Update update;
  };
  struct Listener {
    std::map<std::string, int64_t> keys;
    double deadline_s = 0;
    Reply reply;
  };
  /// The updates for every key of `l` whose id differs from what it saw.
  std::vector<v1::Update> Changed(const Listener& l) const;

  FirstId first_id_;
  std::map<std::string, Snapshot> snapshots_;
  std::list<Listener> listeners_;
  bool announce_ = true;
};

}  // namespace serve::controller
