#pragma once

// The data plane: a lean framed protocol over TCP. One connection multiplexes many requests.
// Wire format of a frame: u32 length (of everything after it, little endian) | u8 type |
// u64 request id | payload. Envelopes (RequestHead/ResponseHead) are protobuf; bodies are raw.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

namespace google::protobuf {
class MessageLite;
}

namespace serve::rpc {

enum class FrameType : uint8_t {
  kRequest = 1,       ///< payload: RequestHead + body
  kResponse = 2,      ///< unary reply or rejection, final. payload: ResponseHead + body
  kResponseHead = 3,  ///< streaming reply starts. payload: ResponseHead
  kChunk = 4,         ///< streaming body chunk (either direction)
  kEnd = 5,           ///< end of a stream, final
  kCancel = 6,        ///< caller gave up on the request
  kProbe = 7,         ///< queue-length probe
  kProbeReply = 8,    ///< payload: u32 num_ongoing
  kError = 9,         ///< failure after a streaming head, final. payload: ResponseHead
  kAccepted = 10,     ///< the replica took the request and is about to run it (no payload);
                      ///< a caller losing the connection after this must not retry
  kAuth = 11,         ///< a caller's first frame when the cluster has a token. payload: the
                      ///< token. Never dispatched to on_frame.
  kWindowUpdate = 12, ///< the caller consumed more of a streamed reply. payload: u64 bytes of
                      ///< chunk payload consumed since its last update (flow control)
};

/// Flow control of streamed replies: a replica keeps at most this many chunk payload bytes of
/// one stream unacknowledged (kWindowUpdate) by its caller; the caller acknowledges what its
/// consumer took, at least every kStreamCreditBatch bytes.
inline constexpr size_t kStreamWindowBytes = 8u << 20;
inline constexpr size_t kStreamCreditBatch = 1u << 20;


struct Frame {
  FrameType type = FrameType::kRequest;
  uint64_t id = 0;
  std::string payload;
};

inline constexpr size_t kFrameHeaderSize = 4 + 1 + 8;
inline constexpr uint32_t kMaxFrameSize = 1u << 30;
/// Largest first frame a server that requires a token reads (it allocates no more before the
/// caller has authenticated).
inline constexpr uint32_t kMaxAuthFrameSize = 1 + 8 + 1024;
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
  std::string read_buf_;
  size_t read_len_ = 0;
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
