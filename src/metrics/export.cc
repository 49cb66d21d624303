#include "metrics/export.h"

#include <unistd.h>

#include <algorithm>
#include <vector>

#include "common/util.h"
#include "metrics/registry.h"
#include "rpc/grpc_util.h"
#include "serve/v1/agent.grpc.pb.h"

namespace serve::metrics {

double PushIntervalSeconds() { return std::max(0.05, EnvDouble("SERVE_METRICS_PUSH_INTERVAL_S", 1)); }

double StaleSeconds() {
  return EnvDouble("SERVE_METRICS_STALE_S", std::max(10.0, 5 * PushIntervalSeconds()));
}

Pusher::Pusher(std::string tag, std::function<std::string()> extra)
    : tag_(std::move(tag)), extra_(std::move(extra)), address_(EnvString("SERVE_AGENT_ADDRESS", "")),
      interval_s_(PushIntervalSeconds()) {
  if (!Enabled() || address_.empty()) return;
  thread_ = std::thread([this] {
    auto stub = v1::Agent::NewStub(rpc::ChannelTo(address_));
    std::unique_lock lock(mu_);
    while (!stopping_) {
      cv_.wait_for(lock, std::chrono::duration<double>(interval_s_), [&] { return stopping_; });
      lock.unlock();
      PushOnce(*stub);
      lock.lock();
    }
  });
}

Pusher::~Pusher() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();  // its last round pushes the final values
}

void Pusher::PushOnce(v1::Agent::Stub& stub) {
  v1::PushMetricsRequest req;
  req.set_pid(::getpid());
  req.set_tag(tag_);
  std::string text = Serialize(Default());
  if (extra_) text = MergeText({text, extra_()});
  req.set_text(std::move(text));
  auto ctx = rpc::ContextWithDeadline(2);
  v1::Empty empty;
  (void)stub.PushMetrics(ctx.get(), req, &empty);
}

void NodeStore::Put(int pid, const std::string& tag, std::string text, Clock::time_point now) {
  std::lock_guard lock(mu_);
  by_pid_[pid] = Entry{tag, std::move(text), now};
}

std::string NodeStore::Text(const std::string& own, Clock::time_point now) {
  std::vector<std::string> texts;
  {
    std::lock_guard lock(mu_);
    for (auto it = by_pid_.begin(); it != by_pid_.end();) {
      if (now - it->second.at > stale_) {
        it = by_pid_.erase(it);
      } else {
        texts.push_back(it->second.text);
        ++it;
      }
    }
  }
  if (!own.empty()) texts.push_back(own);
  return MergeText(texts);
}

size_t NodeStore::size() {
  std::lock_guard lock(mu_);
  return by_pid_.size();
}

}  // namespace serve::metrics
