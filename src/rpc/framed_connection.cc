#include "rpc/framed_connection.h"

#include <chrono>
#include <cstring>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <google/protobuf/message_lite.h>

#include "rpc/auth.h"

namespace serve::rpc {
namespace asio = boost::asio;

namespace {
void PutU32(std::string& out, uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);
  out.append(b, 4);
}
}  // namespace

std::string EncodeEnvelope(const google::protobuf::MessageLite& head, std::string_view body) {
  std::string out;
  size_t head_size = head.ByteSizeLong();
  out.reserve(4 + head_size + body.size());
  PutU32(out, static_cast<uint32_t>(head_size));
  out.resize(4 + head_size);
  head.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(out.data() + 4));
  out.append(body.data(), body.size());
  return out;
}

bool DecodeEnvelope(std::string_view payload, google::protobuf::MessageLite& head,
                    std::string_view& body) {
  if (payload.size() < 4) return false;
  uint32_t head_size;
  std::memcpy(&head_size, payload.data(), 4);
  if (payload.size() - 4 < head_size) return false;
  if (!head.ParseFromArray(payload.data() + 4, static_cast<int>(head_size))) return false;
  body = payload.substr(4 + head_size);
  return true;
}

FramedConnection::FramedConnection(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {
  boost::system::error_code ec;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
}

FramedConnection::~FramedConnection() = default;

void FramedConnection::RequireAuth(std::string token,
                                   std::function<void(const char* why)> on_refused) {
  required_token_ = std::move(token);
  on_refused_ = std::move(on_refused);
  if (required_token_.empty()) return;
  decoder_.set_limit(kMaxAuthFrameSize);
  auth_timer_ = std::make_unique<asio::steady_timer>(socket_.get_executor());
  auth_timer_->expires_after(std::chrono::seconds(kAuthTimeoutSeconds));
  auth_timer_->async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || self->required_token_.empty()) return;
    self->Refuse("no token within the time allowed");
  });
}

void FramedConnection::SendAuth(const std::string& token) {
  if (!token.empty()) Send(FrameType::kAuth, 0, token);
}

bool FramedConnection::CheckAuth(const Frame& frame) {
  if (frame.type != FrameType::kAuth) {
    Refuse("no cluster token");
    return false;
  }
  if (!TokenMatches(required_token_, frame.payload)) {
    Refuse("wrong cluster token");
    return false;
  }
  required_token_.clear();
  decoder_.set_limit(kMaxFrameSize);
  if (auth_timer_) auth_timer_->cancel();
  return true;
}

void FramedConnection::Refuse(const char* why) {
  dispatching_ = false;
  if (on_refused_) on_refused_(why);
  Fail();
}

void FramedConnection::Start(OnFrame on_frame, OnClose on_close) {
  on_frame_ = std::move(on_frame);
  on_close_ = std::move(on_close);
  ReadLoop();
}

uint64_t FramedConnection::Send(FrameType type, uint64_t id, std::string payload) {
  if (closed_) return 0;
  std::string& out = writing_ ? pending_buf_ : write_buf_;
  AppendFrame(out, type, id, payload);
  queued_ += kFrameHeaderSize + payload.size();
  if (!writing_ && !dispatching_) StartWrite();
  return queued_;
}

void FramedConnection::WhenWritten(uint64_t offset, std::function<void(bool)> fn) {
  if (closed_) {
    fn(false);
  } else if (written_ >= offset) {
    fn(true);
  } else {
    when_written_.emplace_back(offset, std::move(fn));
  }
}

void FramedConnection::AddWritten(size_t n) {
  written_ += n;
  while (!when_written_.empty() && when_written_.front().first <= written_) {
    auto fn = std::move(when_written_.front().second);
    when_written_.pop_front();
    fn(true);
  }
}

void FramedConnection::StartWrite() {
  // Asio tries the write at once and completes on the executor's next turn; frames sent until
  // then are coalesced into the next write. (Writing directly with write_some() and posting the
  // reset measured about a third slower per request, proxy and replica alike.)
  writing_ = true;
  asio::async_write(socket_, asio::buffer(write_buf_),
                    [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                      self->writing_ = false;
                      if (ec) {
                        self->Fail();
                        return;
                      }
                      self->AddWritten(n);
                      self->write_buf_.clear();
                      if (!self->pending_buf_.empty()) {
                        std::swap(self->write_buf_, self->pending_buf_);
                        self->StartWrite();
                      }
                    });
}

// Reads as much as is available and dispatches every complete frame in the buffer.
void FramedConnection::ReadLoop() {
  socket_.async_read_some(
      asio::buffer(decoder_.space(), decoder_.space_size()),
      [self = shared_from_this()](boost::system::error_code ec, size_t n) {
        if (ec) {
          self->Fail();
          return;
        }
        self->decoder_.Commit(n);
        self->dispatching_ = true;
        Frame f;
        for (;;) {
          FrameDecoder::Result r = self->decoder_.Next(f);
          if (r == FrameDecoder::Result::kNeedMore) break;
          if (r == FrameDecoder::Result::kTooLarge && !self->required_token_.empty()) {
            self->Refuse("an oversized first frame");
            return;
          }
          if (r != FrameDecoder::Result::kFrame) {
            self->dispatching_ = false;
            self->Fail();
            return;
          }
          if (!self->required_token_.empty()) {
            if (!self->CheckAuth(f)) return;
            continue;
          }
          if (f.type == FrameType::kAuth) continue;
          self->on_frame_(std::move(f));
          if (self->closed_) return;
        }
        self->dispatching_ = false;
        if (!self->writing_ && !self->write_buf_.empty()) self->StartWrite();
        self->decoder_.Compact();
        self->ReadLoop();
      });
}

void FramedConnection::Fail() {
  if (closed_) return;
  closed_ = true;
  if (auth_timer_) auth_timer_->cancel();
  auto pending = std::move(when_written_);
  when_written_.clear();
  for (auto& [offset, fn] : pending) fn(false);
  boost::system::error_code ec;
  socket_.close(ec);
  if (on_close_) {
    auto cb = std::move(on_close_);
    cb();
  }
}

void FramedConnection::Close() { Fail(); }

asio::ip::tcp::endpoint ParseEndpoint(const std::string& address) {
  auto colon = address.rfind(':');
  std::string host = address.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  auto port = static_cast<unsigned short>(std::stoi(address.substr(colon + 1)));
  return {asio::ip::make_address(host), port};
}

unsigned short ListenOn(asio::ip::tcp::acceptor& acceptor, const std::string& host,
                        unsigned short port) {
  asio::ip::tcp::endpoint ep(asio::ip::make_address(host), port);
  acceptor.open(ep.protocol());
  acceptor.set_option(asio::ip::tcp::acceptor::reuse_address(true));
  acceptor.bind(ep);
  acceptor.listen(asio::socket_base::max_listen_connections);
  return acceptor.local_endpoint().port();
}

}  // namespace serve::rpc
