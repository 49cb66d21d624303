#include "replica/elastic_io.h"

#include <algorithm>
#include <chrono>

namespace serve::replica {
namespace {
constexpr auto kTick = std::chrono::milliseconds(1);
constexpr auto kIdleTick = std::chrono::milliseconds(20);  // after a while without calls
constexpr auto kHelperSlice = std::chrono::milliseconds(200);
}  // namespace

ElasticIoThreads::ElasticIoThreads(boost::asio::io_context& io, int extra, Load load)
    : io_(io), extra_(std::max(0, extra)), load_(std::move(load)) {
  for (int i = 0; i < extra_; ++i) helpers_.emplace_back([this] { Helper(); });
  monitor_ = std::thread([this] { Monitor(); });
}

ElasticIoThreads::~ElasticIoThreads() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (monitor_.joinable()) monitor_.join();
  for (auto& t : helpers_) {
    if (t.joinable()) t.join();
  }
}

void ElasticIoThreads::Run() {
  ++in_io_;
  io_.run();
  --in_io_;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  monitor_.join();
  for (auto& t : helpers_) t.join();
}

void ElasticIoThreads::Monitor() {
  uint64_t last_finished = load_.finished();
  auto tick = kTick;
  int quiet_ticks = 0;
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, tick, [this] { return stop_; })) {
    uint64_t finished = load_.finished();
    int busy = load_.busy();
    bool progress = finished != last_finished;
    last_finished = finished;
    // Every thread in the event loop is stuck in a user call: let one more in.
    if (!progress && busy > 0 && busy >= in_io_.load() && promotions_ == 0 &&
        in_io_.load() < 1 + extra_) {
      ++promotions_;
      cv_.notify_all();
    }
    // Poll every tick while calls run; slow down when the replica is idle.
    quiet_ticks = (progress || busy > 0) ? 0 : quiet_ticks + 1;
    tick = quiet_ticks > 100 ? kIdleTick : kTick;
  }
}

void ElasticIoThreads::Helper() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stop_ || promotions_ > 0; });
    if (stop_) return;
    --promotions_;
    ++in_io_;
    lock.unlock();
    while (!io_.stopped()) {
      io_.run_for(kHelperSlice);
      // Leave when at least two threads of the loop are idle (one stays besides Run's).
      if (in_io_.load() - load_.busy() >= 2) break;
    }
    --in_io_;
    lock.lock();
  }
}

}  // namespace serve::replica
