#pragma once

// The data plane's framing, transport-free: the frame types, the wire limits, and FrameDecoder,
// which splits a byte stream into frames.
// Wire format of a frame: u32 length (of everything after it, little endian) | u8 type |
// u64 request id | payload.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

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

/// Appends the encoding of one frame to `out`.
void AppendFrame(std::string& out, FrameType type, uint64_t id, std::string_view payload);

/// Splits a byte stream into frames. The caller reads into space() and calls Commit(), then
/// takes frames with Next() until it answers kNeedMore, then calls Compact(). A frame's length
/// field is checked against limit() as soon as it arrives; room grows only with the bytes
/// that arrive. The frame type is
/// not checked (unknown types are the caller's to handle). Not thread-safe.
class FrameDecoder {
 public:
  enum class Result {
    kFrame,      ///< `out` holds the next frame
    kNeedMore,   ///< no complete frame buffered
    kMalformed,  ///< a length field below the 9-byte minimum; the stream is unusable
    kTooLarge,   ///< a length field above limit(); the stream is unusable
  };

  explicit FrameDecoder(size_t initial_capacity = 64 * 1024);

  /// The largest length field accepted from the next frame on (default kMaxFrameSize).
  void set_limit(uint32_t limit) { limit_ = limit; }
  uint32_t limit() const { return limit_; }

  /// Free room to read into; never empty.
  char* space();
  size_t space_size();
  /// The first `n` bytes of space() now hold stream data.
  void Commit(size_t n);
  /// Copies `bytes` in, making room for exactly them when needed (tests; a reader uses space()).
  void Append(std::string_view bytes);

  /// The next frame; after kMalformed or kTooLarge it answers the same again.
  Result Next(Frame& out);
  /// Drops the bytes of the frames already taken.
  void Compact();
  /// Bytes committed and not yet taken as frames.
  size_t buffered() const { return len_ - pos_; }
  /// Size of the read buffer: it doubles when full (so it follows the bytes that arrived, not
  /// the lengths announced), and Compact() shrinks it back once a large frame was taken.
  size_t capacity() const { return buf_.size(); }

 private:
  static constexpr size_t kShrinkAbove = 1u << 20;  // Compact() shrinks a larger buffer
  std::string buf_;
  size_t initial_;  // the capacity it was built with (and shrinks back to)
  size_t len_ = 0;  // bytes of buf_ holding stream data
  size_t pos_ = 0;  // start of the first frame not taken
  uint32_t limit_ = kMaxFrameSize;
};

}  // namespace serve::rpc
