#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <serve/deployment.h>

#include "serve/v1/dataplane.pb.h"

namespace serve::rpc {
class FramedConnection;
}

namespace serve::replica {

struct DataServerOptions {
  std::string app_name;
  std::string deployment;
  std::string replica_id;
  int max_ongoing_requests = 100;  ///< Requests beyond this are rejected (the router retries).
  bool access_log = true;
  /// Runs on the I/O thread when a caller cancels request `request_id` (to cascade).
  std::function<void(const std::string& request_id)> on_cancel;
};

/// Serves the data plane of one replica: accepts framed connections, enforces
/// max_ongoing_requests with the rejection protocol and runs user calls.
///
/// Threading: `io` is run by up to `user_threads + 1` threads (ElasticIoThreads). Each
/// connection lives on its own strand. A user call runs on the thread that completed the write
/// of its kAccepted frame, right after that handler returns, and that thread writes the reply:
/// no hand-off between threads on the hot path. At most `user_threads` calls run at once (the
/// rest wait in a queue), so a thread can always be found to read frames, answer probes and
/// deliver cancellations.
class DataServer {
 public:
  DataServer(boost::asio::io_context& io, int user_threads, detail::Instance& instance,
             DataServerOptions options);
  /// Binds host:0 and starts accepting; returns the bound port.
  unsigned short Listen(const std::string& host);
  /// New requests are rejected from now on (used while shutting down).
  void StartDraining() { draining_ = true; }
  int ongoing() const { return ongoing_.load(); }
  /// Threads inside a user call now, and user calls finished so far (see ElasticIoThreads).
  int busy() {
    std::lock_guard lock(mu_);
    return running_;
  }
  uint64_t finished() const { return finished_.load(); }
  /// Changes max_ongoing_requests for requests arriving from now on.
  void set_max_ongoing_requests(int n) { max_ongoing_.store(n); }

 private:
  using Job = std::function<void()>;
  void Accept();
  /// Runs `job` on this thread once the current handler returns, or queues it when
  /// `user_threads` calls are already running.
  void Schedule(Job job);
  /// Runs `job`, then queued jobs until none is left.
  void RunJobs(Job job);
  /// Runs one request and sends its reply (or stream) on the connection's strand.
  void Execute(const std::shared_ptr<rpc::FramedConnection>& conn, const v1::RequestHead& req,
               std::string_view body, uint64_t id,
               const std::shared_ptr<std::atomic<bool>>& cancelled);

  boost::asio::io_context& io_;              // Not owned; must outlive this.
  const int user_threads_;
  detail::Instance& instance_;               // Not owned; must outlive this.
  DataServerOptions options_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::atomic<int> ongoing_{0};
  std::atomic<uint64_t> finished_{0};
  std::atomic<bool> draining_{false};
  std::atomic<int> max_ongoing_;
  std::mutex mu_;  // guards the members below
  int running_ = 0;            // user calls running now
  std::deque<Job> queued_;     // user calls waiting for a free thread
  // Cancellation flags of in-flight requests, by (connection, request id).
  struct InFlight {
    std::string request_id;
    std::shared_ptr<std::atomic<bool>> cancelled;
  };
  std::map<std::pair<const void*, uint64_t>, InFlight> cancels_;
};

}  // namespace serve::replica
