#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/thread_pool.hpp>

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
/// max_ongoing_requests with the rejection protocol, runs user calls on `user_pool` and writes
/// replies back on the I/O thread. Connection state lives on `io` (one thread); the counters
/// are atomic because user threads read them.
class DataServer {
 public:
  DataServer(boost::asio::io_context& io, boost::asio::thread_pool& user_pool,
             detail::Instance& instance, DataServerOptions options);
  /// Binds host:0 and starts accepting; returns the bound port.
  unsigned short Listen(const std::string& host);
  /// New requests are rejected from now on (used while shutting down).
  void StartDraining() { draining_ = true; }
  int ongoing() const { return ongoing_.load(); }
  /// Changes max_ongoing_requests for requests arriving from now on.
  void set_max_ongoing_requests(int n) { max_ongoing_.store(n); }

 private:
  void Accept();
  /// Runs one request on a user thread and sends its reply (or stream) back on the I/O thread.
  void Execute(const std::shared_ptr<rpc::FramedConnection>& conn, const v1::RequestHead& req,
               const std::string& body, uint64_t id,
               const std::shared_ptr<std::atomic<bool>>& cancelled);

  boost::asio::io_context& io_;              // Not owned; must outlive this.
  boost::asio::thread_pool& user_pool_;      // Not owned; must outlive this.
  detail::Instance& instance_;               // Not owned; must outlive this.
  DataServerOptions options_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::atomic<int> ongoing_{0};
  std::atomic<bool> draining_{false};
  std::atomic<int> max_ongoing_;
  // Cancellation flags of in-flight requests, by (connection, request id). I/O thread only.
  struct InFlight {
    std::string request_id;
    std::shared_ptr<std::atomic<bool>> cancelled;
  };
  std::map<std::pair<const void*, uint64_t>, InFlight> cancels_;
};

}  // namespace serve::replica
