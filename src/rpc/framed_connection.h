#pragma once

// The data plane: a lean framed protocol over TCP. One connection multiplexes many requests.
// Frames are described in rpc/frame_decoder.h. Envelopes (RequestHead/ResponseHead) are
// protobuf; bodies are raw.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "rpc/frame_decoder.h"

namespace google::protobuf {
class MessageLite;
}

namespace serve::rpc {

/// How long a server that requires a token waits for it.
inline constexpr int kAuthTimeoutSeconds = 10;

/// payload = u32 head size | serialized head | body.
std::string EncodeEnvelope(const google::protobuf::MessageLite& head, std::string_view body);
/// Parses an envelope; on success `body` views the bytes after the head inside `payload`.
bool DecodeEnvelope(std::string_view payload, google::protobuf::MessageLite& head,
                    std::string_view& body);

/// One framed TCP connection. Not thread-safe: every member must be called on the executor of
/// the socket (a single-threaded io_context, or its strand).
class FramedConnection : public std::enable_shared_from_this<FramedConnection> {
 public:
  using OnFrame = std::function<void(Frame&&)>;
  using OnClose = std::function<void()>;

  explicit FramedConnection(boost::asio::ip::tcp::socket socket);
  ~FramedConnection();

  /// Server side, before Start(): the peer's first frame must be kAuth carrying `token`
  /// (compared in constant time), at most kMaxAuthFrameSize long and within
  /// kAuthTimeoutSeconds. Otherwise `on_refused(why)` runs and the connection closes without
  /// an answer. An empty `token` requires nothing.
  void RequireAuth(std::string token, std::function<void(const char* why)> on_refused);
  /// Caller side, before any other frame: sends `token` as the kAuth frame (nothing when it is
  /// empty). Frames may follow at once, without waiting for an answer.
  void SendAuth(const std::string& token);
  /// Starts reading. `on_frame` runs for each frame; `on_close` once when the peer goes away
  /// or Close() is called.
  void Start(OnFrame on_frame, OnClose on_close);
  /// Queues a frame; frames are written in order, coalesced into few syscalls. Frames queued
  /// by `on_frame` while a read is dispatched go out together once the batch is dispatched.
  /// Returns the stream offset just past the frame (for WhenWritten).
  uint64_t Send(FrameType type, uint64_t id, std::string payload);
  /// Runs `fn(true)` on the connection's executor once every byte before `offset` was handed
  /// to the kernel (at once if it already was), or `fn(false)` if the connection fails first.
  void WhenWritten(uint64_t offset, std::function<void(bool written)> fn);
  void Close();
  bool closed() const { return closed_; }
  /// The stream offset just past the last frame queued (what WhenWritten waits for).
  uint64_t queued() const { return queued_; }
  boost::asio::any_io_executor executor() { return socket_.get_executor(); }

 private:
  void StartWrite();
  void AddWritten(size_t n);  // and runs the WhenWritten callbacks that are due
  void ReadLoop();
  void Fail();
  /// Handles the first frame of a connection that requires a token; false when refused.
  bool CheckAuth(const Frame& frame);
  void Refuse(const char* why);

  boost::asio::ip::tcp::socket socket_;
  OnFrame on_frame_;
  OnClose on_close_;
  FrameDecoder decoder_;
  std::string write_buf_;     // frames being written
  std::string pending_buf_;   // frames queued while a write is in flight
  uint64_t queued_ = 0;                    // bytes queued since the start
  uint64_t written_ = 0;                   // bytes handed to the kernel
  std::deque<std::pair<uint64_t, std::function<void(bool)>>> when_written_;  // by offset
  bool writing_ = false;
  bool dispatching_ = false;  // inside on_frame_ for a read batch: Send() only queues
  bool closed_ = false;
  std::string required_token_;  // non-empty until the peer has authenticated
  std::function<void(const char*)> on_refused_;
  std::unique_ptr<boost::asio::steady_timer> auth_timer_;
};

/// Connects to "host:port" (blocking resolve of numeric hosts only).
boost::asio::ip::tcp::endpoint ParseEndpoint(const std::string& address);

/// Opens `acceptor` on `host`:`port` (0: any free port) with SO_REUSEADDR and starts listening;
/// returns the bound port. Throws boost::system::system_error when it cannot bind.
unsigned short ListenOn(boost::asio::ip::tcp::acceptor& acceptor, const std::string& host,
                        unsigned short port);

}  // namespace serve::rpc
