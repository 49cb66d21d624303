// Unit tests of rpc::FrameDecoder: frames split across and packed into reads, the length
// limits checked before room is made for a frame, and sticky errors.

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "rpc/frame_decoder.h"

namespace serve::rpc {
namespace {

std::string Encoded(FrameType type, uint64_t id, const std::string& payload) {
  std::string out;
  AppendFrame(out, type, id, payload);
  return out;
}

std::string LengthField(uint32_t len) {
  std::string out(4, '\0');
  std::memcpy(out.data(), &len, 4);
  return out;
}

// Every frame `d` holds now.
std::vector<Frame> Drain(FrameDecoder& d) {
  std::vector<Frame> frames;
  Frame f;
  while (d.Next(f) == FrameDecoder::Result::kFrame) frames.push_back(f);
  return frames;
}

TEST(FrameDecoderTest, EncodesTheWireFormat) {
  std::string bytes = Encoded(FrameType::kProbeReply, 0x0102030405060708, "ab");
  ASSERT_EQ(bytes.size(), kFrameHeaderSize + 2);
  EXPECT_EQ(bytes.substr(0, 4), LengthField(11));
  EXPECT_EQ(bytes[4], static_cast<char>(FrameType::kProbeReply));
  uint64_t id;
  std::memcpy(&id, bytes.data() + 5, 8);
  EXPECT_EQ(id, 0x0102030405060708u);
  EXPECT_EQ(bytes.substr(13), "ab");
}

TEST(FrameDecoderTest, SplitsPackedFramesAndWaitsForPartialOnes) {
  FrameDecoder d;
  std::string stream = Encoded(FrameType::kRequest, 1, "first") +
                       Encoded(FrameType::kCancel, 1, "") + Encoded(FrameType::kChunk, 2, "xyz");
  d.Append(stream.substr(0, stream.size() - 1));
  std::vector<Frame> frames = Drain(d);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].type, FrameType::kRequest);
  EXPECT_EQ(frames[0].id, 1u);
  EXPECT_EQ(frames[0].payload, "first");
  EXPECT_EQ(frames[1].type, FrameType::kCancel);
  EXPECT_EQ(frames[1].payload, "");
  d.Compact();
  EXPECT_EQ(d.buffered(), kFrameHeaderSize + 2);
  d.Append(stream.substr(stream.size() - 1));
  frames = Drain(d);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].id, 2u);
  EXPECT_EQ(frames[0].payload, "xyz");
}

TEST(FrameDecoderTest, FeedsByteByByte) {
  FrameDecoder d(/*initial_capacity=*/16);
  std::string payload(1000, 'p');
  std::string stream = Encoded(FrameType::kResponse, 7, payload);
  Frame f;
  for (size_t i = 0; i + 1 < stream.size(); ++i) {
    d.Append(stream.substr(i, 1));
    ASSERT_EQ(d.Next(f), FrameDecoder::Result::kNeedMore) << i;
    d.Compact();
  }
  d.Append(stream.substr(stream.size() - 1));
  ASSERT_EQ(d.Next(f), FrameDecoder::Result::kFrame);
  EXPECT_EQ(f.payload, payload);
  EXPECT_EQ(d.capacity(), stream.size());  // room made once for the announced frame
}

TEST(FrameDecoderTest, GrowsWithTheBytesThatArriveNotWithTheAnnouncedLength) {
  FrameDecoder d(/*initial_capacity=*/64);
  d.Append(LengthField(kMaxFrameSize - 1));  // announces 1 GiB, sends 4 bytes
  Frame f;
  EXPECT_EQ(d.Next(f), FrameDecoder::Result::kNeedMore);
  EXPECT_EQ(d.capacity(), 64u);
}

TEST(FrameDecoderTest, GivesALargeFramesRoomBackOnceTaken) {
  FrameDecoder d(/*initial_capacity=*/64);
  std::string big(4 << 20, 'b');
  d.Append(Encoded(FrameType::kChunk, 1, big));
  Frame f;
  ASSERT_EQ(d.Next(f), FrameDecoder::Result::kFrame);
  EXPECT_EQ(f.payload.size(), big.size());
  d.Compact();
  EXPECT_EQ(d.capacity(), 64u);
}

TEST(FrameDecoderTest, RefusesShortLengths) {
  FrameDecoder d;
  d.Append(LengthField(8) + std::string(8, 'x'));
  Frame f;
  EXPECT_EQ(d.Next(f), FrameDecoder::Result::kMalformed);
  EXPECT_EQ(d.Next(f), FrameDecoder::Result::kMalformed);  // sticky
}

TEST(FrameDecoderTest, RefusesOversizedFramesBeforeAllocating) {
  FrameDecoder d(/*initial_capacity=*/64);
  d.Append(LengthField(kMaxFrameSize + 1));
  Frame f;
  EXPECT_EQ(d.Next(f), FrameDecoder::Result::kTooLarge);
  EXPECT_EQ(d.capacity(), 64u);
  EXPECT_EQ(d.Next(f), FrameDecoder::Result::kTooLarge);
}

TEST(FrameDecoderTest, TheAuthLimitAppliesUntilLifted) {
  FrameDecoder d(/*initial_capacity=*/64);
  d.set_limit(kMaxAuthFrameSize);
  std::string token(kMaxAuthFrameSize - 9, 't');
  d.Append(Encoded(FrameType::kAuth, 0, token));
  Frame f;
  ASSERT_EQ(d.Next(f), FrameDecoder::Result::kFrame);
  EXPECT_EQ(f.payload, token);
  // One byte more than the auth limit is refused with no room made for it...
  d.Append(LengthField(kMaxAuthFrameSize + 1));
  EXPECT_EQ(d.Next(f), FrameDecoder::Result::kTooLarge);
  EXPECT_LE(d.capacity(), size_t{kMaxAuthFrameSize} + 4);
  // ... and accepted once the limit is lifted (after authentication).
  d.set_limit(kMaxFrameSize);
  EXPECT_EQ(d.Next(f), FrameDecoder::Result::kNeedMore);
}

}  // namespace
}  // namespace serve::rpc
