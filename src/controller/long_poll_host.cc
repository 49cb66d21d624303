#include "controller/long_poll_host.h"

#include "common/ids.h"
#include "controller/controller_metrics.h"

namespace serve::controller {

LongPollHost::LongPollHost(FirstId first_id) : first_id_(std::move(first_id)) {}

std::vector<v1::Update> LongPollHost::Changed(const Listener& l) const {
  std::vector<v1::Update> out;
  for (auto& [key, seen] : l.keys) {
    auto it = snapshots_.find(key);
    if (it == snapshots_.end() || it->second.id == seen) continue;
    out.push_back(it->second.update);
  }
  return out;
}

void LongPollHost::Publish(std::map<std::string, v1::Update> objects, bool hold) {
  for (auto& [key, snap] : snapshots_) {
    if (!objects.count(key) && key != kRouteTableKey) {
      v1::Update u;
      u.set_key(key);
      u.mutable_targets()->set_is_available(false);
      objects[key] = std::move(u);
    }
  }
  bool changed = false;
  for (auto& [key, obj] : objects) {
    std::string s = obj.SerializeAsString();
    auto it = snapshots_.find(key);
    if (it != snapshots_.end() && it->second.serialized == s) continue;
    Snapshot& snap = snapshots_[key];
    snap.id = snap.id == 0 ? first_id_() : snap.id + 1;
    snap.serialized = std::move(s);
    snap.update = std::move(obj);
    snap.update.set_snapshot_id(snap.id);
    changed = true;
  }
  if ((!changed && !announce_) || hold) return;
  announce_ = false;
  for (auto it = listeners_.begin(); it != listeners_.end();) {
    auto updates = Changed(*it);
    if (updates.empty()) {
      ++it;
      continue;
    }
    for (const auto& u : updates) RecordLongPollTransmission(u.key());
    it->reply(std::move(updates), false);
    it = listeners_.erase(it);
  }
}

void LongPollHost::Listen(std::map<std::string, int64_t> keys, double deadline_s, bool hold,
                          Reply reply) {
  Listener l{std::move(keys), deadline_s, std::move(reply)};
  if (!hold) {
    auto updates = Changed(l);
    if (!updates.empty()) {
      for (const auto& u : updates) RecordLongPollTransmission(u.key());
      l.reply(std::move(updates), false);
      return;
    }
  }
  listeners_.push_back(std::move(l));
}

void LongPollHost::Expire(double now_s) {
  for (auto it = listeners_.begin(); it != listeners_.end();) {
    if (now_s < it->deadline_s) {
      ++it;
      continue;
    }
    it->reply({}, true);
    it = listeners_.erase(it);
  }
}

void LongPollHost::CloseAll() {
  for (auto& l : listeners_) l.reply({}, true);
  listeners_.clear();
}

int64_t LongPollHost::SnapshotId(const std::string& key) const {
  auto it = snapshots_.find(key);
  return it == snapshots_.end() ? 0 : it->second.id;
}

}  // namespace serve::controller
