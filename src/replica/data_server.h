#pragma once

#include <atomic>
#include <coroutine>
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

#include "replica/replica_metrics.h"
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
  /// Concurrency::kSerialized: one piece of user code at a time (the replica's strand).
  bool serialized = false;
  /// True when $SERVE_REPLICA_THREADS fixed `user_threads`: max_ongoing_requests changes do not
  /// resize it.
  bool fixed_threads = false;
};

/// Serves the data plane of one replica: accepts framed connections, enforces
/// max_ongoing_requests with the rejection protocol and runs user calls.
///
/// Threading: `io` is the replica's executor, run by up to `user_threads + 1` threads
/// (ElasticIoThreads). Each connection lives on its own strand. User code runs in jobs: a call
/// (the handler up to its return, or a coroutine handler up to its first suspension), or one
/// resumption of a suspended coroutine (posted by whichever thread completed what it awaited,
/// through the request's sdk::Resumer). A call runs on the thread that completed the write of
/// its kAccepted frame, right after that handler returns, and replies from there: no hand-off on
/// the hot path. At most `user_threads` jobs run at once (1 in serialized mode: that queue is
/// the strand); the rest wait in a FIFO, so a thread is always left to read frames, answer
/// probes and deliver cancellations. A suspended coroutine is not a job: it holds no thread.
class DataServer {
 public:
  DataServer(boost::asio::io_context& io, int user_threads, detail::Instance& instance,
             DataServerOptions options);
  /// Binds host:0 and starts accepting; returns the bound port.
  unsigned short Listen(const std::string& host);
  /// New requests are rejected from now on (used while shutting down).
  void StartDraining() { draining_ = true; }
  int ongoing() const { return ongoing_.load(); }
  /// Threads inside a user job now, and jobs finished so far (see ElasticIoThreads).
  int busy() {
    std::lock_guard lock(mu_);
    return running_;
  }
  uint64_t finished() const { return finished_.load(); }
  /// Jobs that may run at once (the size the thread pool may grow to).
  int user_threads() const { return user_threads_.load(); }
  bool serialized() const { return options_.serialized; }
  /// Changes max_ongoing_requests for requests arriving from now on; in concurrent mode
  /// without fixed threads, user_threads() follows it.
  void set_max_ongoing_requests(int n);
  ReplicaMetrics& metrics() { return metrics_; }
  /// Turns the per-request access log line on or off (logging_config.enable_access_log).
  void set_access_log(bool on) { access_log_.store(on); }
  /// Runs `fn` as a user job (in serialized mode: on the strand, between handlers) and waits
  /// for it; rethrows what it throws. Call from a thread outside the executor (gRPC's).
  void RunUserCode(const std::function<void()>& fn);

 private:
  struct Call;
  /// One unit of user code: starting `call`, resuming its coroutine `resume`, or `fn`.
  struct Job {
    std::shared_ptr<Call> call;
    std::coroutine_handle<> resume;
    std::function<void()> fn;
  };
  void Accept();
  /// Runs `job` on this thread once the current handler returns, or queues it when
  /// `user_threads` jobs are already running.
  void Schedule(Job job);
  /// Runs `job`, then hands its slot to the first queued job (deferred, so that reads and
  /// probes get their turn in between).
  void RunJob(Job job);
  /// Runs the user call of `call` (sdk::RunCall): replies at once, or once its coroutine
  /// finished, on the thread that finished it.
  void Start(const std::shared_ptr<Call>& call);
  /// Sends the reply (or the stream) of `call` for `out` / `error`, logs it, forgets the call.
  void Reply(Call& call, detail::CallOutput&& out, std::exception_ptr error);

  boost::asio::io_context& io_;              // Not owned; must outlive this.
  std::atomic<int> user_threads_;
  detail::Instance& instance_;               // Not owned; must outlive this.
  DataServerOptions options_;
  std::atomic<bool> access_log_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::atomic<int> ongoing_{0};
  std::atomic<uint64_t> finished_{0};
  std::atomic<bool> draining_{false};
  std::atomic<int> max_ongoing_;
  ReplicaMetrics metrics_;
  std::mutex mu_;  // guards the members below
  int running_ = 0;            // user jobs running now
  std::deque<Job> queued_;     // user jobs waiting for a free slot
  // In-flight requests, by (connection, request id): their cancel flags.
  std::map<std::pair<const void*, uint64_t>, std::shared_ptr<Call>> calls_;
};

}  // namespace serve::replica
