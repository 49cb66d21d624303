#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>

namespace serve::replica {

/// Runs an io_context whose handlers may block in user code on as few threads as it takes.
///
/// One thread (the caller of Run) always runs `io`. Up to `limit()` more join it only when
/// every thread running `io` is inside a user job and none has finished for a tick (~1 ms), and
/// leave again once two or more are idle. Fast calls thus never pay for Asio waking a second
/// thread each time the running one starts a handler, while slow calls cannot starve reads,
/// probes and cancellations for more than a tick or two. Helper threads ("serve-user") are
/// created on first need, one per tick at most, and then parked between uses; `limit` is read
/// every tick, so it may change (max_ongoing_requests reconfigured).
class ElasticIoThreads {
 public:
  struct Load {
    std::function<int()> busy;            ///< threads inside a user job now
    std::function<uint64_t()> finished;   ///< user jobs finished so far
    std::function<int()> limit;           ///< most helper threads in the loop at once
  };
  ElasticIoThreads(boost::asio::io_context& io, Load load);
  ~ElasticIoThreads();
  /// Runs `io` on this thread until it is stopped, then stops and joins the helpers.
  void Run();
  int threads_in_io() const { return in_io_.load(); }

 private:
  void Monitor();
  void Helper();
  void StopAndJoin();

  boost::asio::io_context& io_;
  Load load_;
  std::atomic<int> in_io_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  int promotions_ = 0;   // helpers asked to join (guarded by mu_)
  int parked_ = 0;       // helpers waiting for a promotion (guarded by mu_)
  bool stop_ = false;    // guarded by mu_
  std::vector<std::thread> helpers_;  // guarded by mu_
  std::thread monitor_;
};

}  // namespace serve::replica
