#include "rpc/frame_decoder.h"

#include <algorithm>
#include <cstring>

namespace serve::rpc {

void AppendFrame(std::string& out, FrameType type, uint64_t id, std::string_view payload) {
  char head[kFrameHeaderSize];
  uint32_t len = static_cast<uint32_t>(1 + 8 + payload.size());
  std::memcpy(head, &len, 4);
  head[4] = static_cast<char>(type);
  std::memcpy(head + 5, &id, 8);
  out.append(head, kFrameHeaderSize);
  out.append(payload.data(), payload.size());
}

FrameDecoder::FrameDecoder(size_t initial_capacity)
    : buf_(std::max<size_t>(initial_capacity, 16), '\0'), initial_(buf_.size()) {}

char* FrameDecoder::space() {
  if (len_ == buf_.size()) {
    Compact();
    if (len_ == buf_.size()) buf_.resize(buf_.size() * 2);
  }
  return buf_.data() + len_;
}

size_t FrameDecoder::space_size() {
  space();
  return buf_.size() - len_;
}

void FrameDecoder::Commit(size_t n) { len_ += std::min(n, buf_.size() - len_); }

void FrameDecoder::Append(std::string_view bytes) {
  if (buf_.size() - len_ < bytes.size()) {
    Compact();
    if (buf_.size() - len_ < bytes.size()) buf_.resize(len_ + bytes.size());
  }
  std::memcpy(buf_.data() + len_, bytes.data(), bytes.size());
  len_ += bytes.size();
}

FrameDecoder::Result FrameDecoder::Next(Frame& out) {
  if (len_ - pos_ < 4) return Result::kNeedMore;
  uint32_t len;
  std::memcpy(&len, buf_.data() + pos_, 4);
  if (len < 9) return Result::kMalformed;
  if (len > limit_) return Result::kTooLarge;
  size_t frame_size = 4 + size_t{len};
  // Incomplete: the buffer grows with the bytes that arrive (space() doubles it when full), not
  // with the length the header announces.
  if (len_ - pos_ < frame_size) return Result::kNeedMore;
  out.type = static_cast<FrameType>(buf_[pos_ + 4]);
  std::memcpy(&out.id, buf_.data() + pos_ + 5, 8);
  out.payload.assign(buf_.data() + pos_ + kFrameHeaderSize, len - 9);
  pos_ += frame_size;
  return Result::kFrame;
}

void FrameDecoder::Compact() {
  if (pos_ == 0) return;
  std::memmove(buf_.data(), buf_.data() + pos_, len_ - pos_);
  len_ -= pos_;
  pos_ = 0;
  // A large frame's room is given back once it has been taken.
  if (buf_.size() > kShrinkAbove && len_ <= initial_) {
    buf_.resize(initial_);
    buf_.shrink_to_fit();
  }
}

}  // namespace serve::rpc
