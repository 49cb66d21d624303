// Fuzzes rpc::FrameDecoder, the data plane's frame splitter. Input: byte 0 picks the length
// limit (the auth-frame limit or 64 KiB), byte 1 the read size (1..256 bytes); the rest is the
// byte stream. Checks: the frames re-encode to the bytes consumed, the same frames come out
// when the stream arrives at once, the buffer never grows beyond the limit before a frame is
// accepted, and an error is sticky.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "rpc/frame_decoder.h"
#include "fuzz_check.h"

namespace {
using serve::rpc::Frame;
using serve::rpc::FrameDecoder;


struct Decoded {
  std::string reencoded;  // the frames taken, encoded again
  FrameDecoder::Result end = FrameDecoder::Result::kNeedMore;
};

// Feeds `stream` in reads of `step` bytes, taking every frame after each read.
Decoded Decode(std::string_view stream, size_t step, uint32_t limit) {
  FrameDecoder decoder(/*initial_capacity=*/64);
  decoder.set_limit(limit);
  Decoded d;
  Frame f;
  size_t fed = 0;
  while (fed < stream.size()) {
    size_t n = std::min({step, stream.size() - fed, decoder.space_size()});
    std::string_view chunk = stream.substr(fed, n);
    std::copy(chunk.begin(), chunk.end(), decoder.space());
    decoder.Commit(n);
    fed += n;
    FrameDecoder::Result r;
    while ((r = decoder.Next(f)) == FrameDecoder::Result::kFrame) {
      CHECK(f.payload.size() + 9 <= limit);
      serve::rpc::AppendFrame(d.reencoded, f.type, f.id, f.payload);
    }
    // Room is made only for a frame whose length passed the limit.
    CHECK(decoder.capacity() <= std::max<size_t>(64, size_t{limit} + 4));
    if (r != FrameDecoder::Result::kNeedMore) {
      CHECK(decoder.Next(f) == r);  // sticky
      d.end = r;
      break;
    }
    decoder.Compact();
    CHECK(decoder.buffered() == fed - d.reencoded.size());
  }
  return d;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  uint32_t limit = (data[0] & 1) ? serve::rpc::kMaxAuthFrameSize : 64 * 1024;
  size_t step = size_t{data[1]} + 1;
  std::string_view stream(reinterpret_cast<const char*>(data) + 2, size - 2);

  Decoded chunked = Decode(stream, step, limit);
  CHECK(stream.substr(0, chunked.reencoded.size()) == chunked.reencoded);
  Decoded whole = Decode(stream, stream.size(), limit);
  CHECK(whole.reencoded == chunked.reencoded);
  CHECK(whole.end == chunked.end);
  return 0;
}
