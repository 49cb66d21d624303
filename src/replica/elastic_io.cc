#include "replica/elastic_io.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>

namespace serve::replica {
namespace {
constexpr auto kTick = std::chrono::milliseconds(1);
constexpr auto kIdleTick = std::chrono::milliseconds(20);  // after a while without calls
constexpr auto kHelperSlice = std::chrono::milliseconds(200);
}  // namespace

ElasticIoThreads::ElasticIoThreads(boost::asio::io_context& io, Load load)
    : io_(io), load_(std::move(load)) {
  monitor_ = std::thread([this] { Monitor(); });
}

ElasticIoThreads::~ElasticIoThreads() { StopAndJoin(); }

void ElasticIoThreads::StopAndJoin() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (monitor_.joinable()) monitor_.join();
  // The monitor is gone: no helper is added any more.
  for (auto& t : helpers_) {
    if (t.joinable()) t.join();
  }
}

void ElasticIoThreads::Run() {
  ++in_io_;
  io_.run();
  --in_io_;
  StopAndJoin();
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
    // Every thread in the event loop is stuck in a user job: let one more in.
    if (!progress && busy > 0 && busy >= in_io_.load() && promotions_ == 0 &&
        in_io_.load() < 1 + std::max(1, load_.limit())) {
      ++promotions_;
      if (parked_ > 0) {
        cv_.notify_all();
      } else {
        helpers_.emplace_back([this] { Helper(); });
      }
    }
    // Poll every tick while calls run; slow down when the replica is idle.
    quiet_ticks = (progress || busy > 0) ? 0 : quiet_ticks + 1;
    tick = quiet_ticks > 100 ? kIdleTick : kTick;
  }
}

void ElasticIoThreads::Helper() {
  ::pthread_setname_np(::pthread_self(), "serve-user");
  std::unique_lock lock(mu_);
  while (true) {
    ++parked_;
    cv_.wait(lock, [this] { return stop_ || promotions_ > 0; });
    --parked_;
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
