// The cluster token on the wire, over loopback sockets: a gRPC server from StartGrpcServer
// refuses calls without the token before any handler runs, and a FramedConnection that
// requires it closes connections whose first frame is not the token.

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include "rpc/auth.h"
#include "rpc/framed_connection.h"
#include "rpc/grpc_util.h"
#include "serve/v1/replica.grpc.pb.h"

namespace serve::rpc {
namespace {
namespace asio = boost::asio;
using asio::ip::tcp;

const std::string kToken = "0123456789abcdef0123456789abcdef";

/// Counts the calls that reached the handler and whether they still carried the token.
class CountingControl final : public v1::ReplicaControl::Service {
 public:
  grpc::Status CheckHealth(grpc::ServerContext* ctx, const v1::Empty*,
                           v1::HealthReply* reply) override {
    ++calls;
    if (ctx->client_metadata().count("authorization") > 0) saw_authorization = true;
    reply->set_ok(true);
    return grpc::Status::OK;
  }
  std::atomic<int> calls{0};
  std::atomic<bool> saw_authorization{false};
};

class GrpcAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetClusterToken(kToken);  // taken by the server when it starts
    int port = 0;
    server_ = StartGrpcServer("127.0.0.1", 0, {&service_}, &port);
    ASSERT_NE(server_, nullptr);
    address_ = "127.0.0.1:" + std::to_string(port);
  }
  void TearDown() override {
    server_->Shutdown(std::chrono::system_clock::now());
    SetClusterToken("");
  }
  // One CheckHealth call with `token` as this process's token (sent by ChannelTo's channel).
  grpc::Status Call(const std::string& token) {
    SetClusterToken(token);
    auto stub = v1::ReplicaControl::NewStub(ChannelTo(address_));
    auto ctx = ContextWithDeadline(5);
    v1::Empty req;
    v1::HealthReply reply;
    return stub->CheckHealth(ctx.get(), req, &reply);
  }
  CountingControl service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

TEST_F(GrpcAuthTest, CallsWithoutTheTokenNeverReachTheHandler) {
  grpc::Status none = Call("");
  EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED) << none.error_message();
  std::string wrong_token = kToken;
  wrong_token[0] = 'f';
  grpc::Status wrong = Call(wrong_token);
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED) << wrong.error_message();
  EXPECT_EQ(wrong.error_message().find(wrong_token), std::string::npos);
  EXPECT_EQ(service_.calls.load(), 0);
}

TEST_F(GrpcAuthTest, TheTokenIsCheckedAndConsumed) {
  grpc::Status ok = Call(kToken);
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(service_.calls.load(), 1);
  EXPECT_FALSE(service_.saw_authorization.load());
}

/// A FramedConnection server on loopback that requires kToken, run on its own thread.
class FramedAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    acceptor_.open(tcp::v4());
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec) return;
      conn_ = std::make_shared<FramedConnection>(std::move(socket));
      conn_->RequireAuth(kToken, [this](const char* why) { refused_.set_value(why); });
      conn_->Start(
          [this](Frame&& f) {
            if (f.type == FrameType::kAuth) ++auth_frames_seen_;
            if (f.type == FrameType::kProbe) conn_->Send(FrameType::kProbeReply, f.id, "okok");
          },
          [] {});
    });
    thread_ = std::thread([this] { io_.run(); });
    client_.connect(acceptor_.local_endpoint());
  }
  void TearDown() override {
    asio::post(io_, [this] {
      if (conn_) conn_->Close();
      acceptor_.close();
    });
    thread_.join();
  }

  static std::string EncodeFrame(FrameType type, uint64_t id, const std::string& payload) {
    std::string out;
    AppendFrame(out, type, id, payload);
    return out;
  }
  void Write(const std::string& bytes) { asio::write(client_, asio::buffer(bytes)); }
  // The next frame's type, or nullopt when the server closed the connection.
  std::optional<FrameType> ReadFrameType() {
    char header[kFrameHeaderSize];
    boost::system::error_code ec;
    asio::read(client_, asio::buffer(header), ec);
    if (ec) return std::nullopt;
    uint32_t len;
    std::memcpy(&len, header, 4);
    std::string rest(len - 9, '\0');
    asio::read(client_, asio::buffer(rest), ec);
    if (ec) return std::nullopt;
    return static_cast<FrameType>(header[4]);
  }
  std::string RefusedWhy() {
    auto fut = refused_.get_future();
    if (fut.wait_for(std::chrono::seconds(5)) != std::future_status::ready) return "(not refused)";
    return fut.get();
  }

  asio::io_context io_;
  tcp::acceptor acceptor_{io_};
  std::shared_ptr<FramedConnection> conn_;
  std::promise<std::string> refused_;
  int auth_frames_seen_ = 0;
  std::thread thread_;
  asio::io_context client_io_;
  tcp::socket client_{client_io_};
};

TEST_F(FramedAuthTest, AFrameBeforeTheTokenClosesTheConnection) {
  Write(EncodeFrame(FrameType::kProbe, 1, ""));
  EXPECT_EQ(ReadFrameType(), std::nullopt);
  EXPECT_EQ(RefusedWhy(), "no cluster token");
}

TEST_F(FramedAuthTest, AWrongTokenClosesTheConnection) {
  Write(EncodeFrame(FrameType::kAuth, 0, "fedcba9876543210fedcba9876543210") +
        EncodeFrame(FrameType::kProbe, 1, ""));
  EXPECT_EQ(ReadFrameType(), std::nullopt);
  EXPECT_EQ(RefusedWhy(), "wrong cluster token");
}

TEST_F(FramedAuthTest, AnOversizedFirstFrameIsRefusedBeforeItsBodyArrives) {
  // Only the header of a 512 MiB frame: the server must not wait for (or allocate) the rest.
  std::string header(kFrameHeaderSize, '\0');
  uint32_t len = 512u << 20;
  std::memcpy(header.data(), &len, 4);
  header[4] = static_cast<char>(FrameType::kAuth);
  Write(header);
  EXPECT_EQ(ReadFrameType(), std::nullopt);
  EXPECT_EQ(RefusedWhy(), "an oversized first frame");
}

TEST_F(FramedAuthTest, TheTokenFirstThenFramesFlow) {
  // SendAuth's frame followed at once by a request, without waiting for an answer.
  Write(EncodeFrame(FrameType::kAuth, 0, kToken) + EncodeFrame(FrameType::kProbe, 7, "") +
        EncodeFrame(FrameType::kAuth, 0, kToken));
  EXPECT_EQ(ReadFrameType(), FrameType::kProbeReply);
  Write(EncodeFrame(FrameType::kProbe, 8, ""));
  EXPECT_EQ(ReadFrameType(), FrameType::kProbeReply);
  std::promise<int> seen;
  asio::post(io_, [&] { seen.set_value(auth_frames_seen_); });
  EXPECT_EQ(seen.get_future().get(), 0);  // kAuth frames never reach on_frame
}

}  // namespace
}  // namespace serve::rpc
