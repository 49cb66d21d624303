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
/// One thread (the caller of Run) always runs `io`. Up to `extra` more join it only when every
/// thread running `io` is inside a user call and none has finished for a tick (~1 ms), and leave
/// again once two or more are idle. Fast calls thus never pay for Asio waking a second thread
/// each time the running one starts a handler, while slow calls cannot starve reads, probes and
/// cancellations for more than a tick or two.
class ElasticIoThreads {
 public:
  struct Load {
    std::function<int()> busy;            ///< threads inside a user call now
    std::function<uint64_t()> finished;   ///< user calls finished so far
  };
  ElasticIoThreads(boost::asio::io_context& io, int extra, Load load);
  ~ElasticIoThreads();
  /// Runs `io` on this thread until it is stopped, then stops and joins the helpers.
  void Run();
  int threads_in_io() const { return in_io_.load(); }

 private:
  void Monitor();
  void Helper();

  boost::asio::io_context& io_;
  const int extra_;
  Load load_;
  std::atomic<int> in_io_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  int promotions_ = 0;   // helpers asked to join (guarded by mu_)
  bool stop_ = false;    // guarded by mu_
  std::vector<std::thread> helpers_;
  std::thread monitor_;
};

}  // namespace serve::replica
