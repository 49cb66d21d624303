// Unit tests of the data-plane envelope encoding (u32 head size | protobuf head | raw body).

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "rpc/framed_connection.h"
#include "serve/v1/dataplane.pb.h"

namespace serve::rpc {
namespace {

v1::RequestHead SampleHead() {
  v1::RequestHead head;
  head.set_request_id("req-123");
  head.set_route("/api");
  head.set_app_name("app1");
  head.set_method("__call__");
  head.set_deadline_unix_ms(1700000000123);
  head.set_stream(true);
  head.set_caller("proxy");
  v1::HttpHead* http = head.mutable_http();
  http->set_method("POST");
  http->set_path("/api/x");
  http->set_query("a=1");
  http->set_route_prefix("/api");
  v1::KeyValue* h = http->add_headers();
  h->set_key("content-type");
  h->set_value("application/octet-stream");
  return head;
}

TEST(EnvelopeTest, RoundTripWithBinaryBody) {
  const v1::RequestHead head = SampleHead();
  const std::string body("\0a\0\xff\0", 5);
  std::string payload = EncodeEnvelope(head, body);
  ASSERT_EQ(payload.size(), 4 + head.ByteSizeLong() + body.size());

  v1::RequestHead decoded;
  std::string_view decoded_body;
  ASSERT_TRUE(DecodeEnvelope(payload, decoded, decoded_body));
  EXPECT_EQ(decoded.request_id(), "req-123");
  EXPECT_EQ(decoded.route(), "/api");
  EXPECT_EQ(decoded.app_name(), "app1");
  EXPECT_EQ(decoded.method(), "__call__");
  EXPECT_EQ(decoded.deadline_unix_ms(), 1700000000123);
  EXPECT_TRUE(decoded.stream());
  EXPECT_EQ(decoded.caller(), "proxy");
  ASSERT_TRUE(decoded.has_http());
  EXPECT_EQ(decoded.http().method(), "POST");
  EXPECT_EQ(decoded.http().path(), "/api/x");
  EXPECT_EQ(decoded.http().query(), "a=1");
  ASSERT_EQ(decoded.http().headers_size(), 1);
  EXPECT_EQ(decoded.http().headers(0).key(), "content-type");
  EXPECT_EQ(decoded.http().headers(0).value(), "application/octet-stream");
  EXPECT_EQ(decoded.SerializeAsString(), head.SerializeAsString());
  EXPECT_EQ(decoded_body, body);
  EXPECT_EQ(decoded_body.size(), 5u);
  // The body is a view into the payload, not a copy.
  EXPECT_EQ(decoded_body.data(), payload.data() + payload.size() - body.size());
}

TEST(EnvelopeTest, HeadSizePrefixIsLittleEndianU32) {
  const v1::RequestHead head = SampleHead();
  std::string payload = EncodeEnvelope(head, "body");
  const auto* b = reinterpret_cast<const unsigned char*>(payload.data());
  uint32_t size = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  EXPECT_EQ(size, head.ByteSizeLong());
  EXPECT_EQ(payload.substr(4, size), head.SerializeAsString());
  EXPECT_EQ(payload.substr(4 + size), "body");
}

TEST(EnvelopeTest, EmptyHeadAndBody) {
  v1::RequestHead empty;
  std::string payload = EncodeEnvelope(empty, "");
  EXPECT_EQ(payload, std::string(4, '\0'));
  v1::RequestHead decoded = SampleHead();  // must be cleared by parsing
  std::string_view body = "junk";
  ASSERT_TRUE(DecodeEnvelope(payload, decoded, body));
  EXPECT_EQ(decoded.request_id(), "");
  EXPECT_FALSE(decoded.has_http());
  EXPECT_TRUE(body.empty());
}

TEST(EnvelopeTest, ResponseHeadRoundTrip) {
  v1::ResponseHead head;
  head.set_accepted(true);
  head.set_ok(false);
  head.set_num_ongoing(3);
  head.set_error_type("ValueError");
  head.set_error_message("bad input");
  std::string payload = EncodeEnvelope(head, std::string("\0\0", 2));
  v1::ResponseHead decoded;
  std::string_view body;
  ASSERT_TRUE(DecodeEnvelope(payload, decoded, body));
  EXPECT_TRUE(decoded.accepted());
  EXPECT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.num_ongoing(), 3);
  EXPECT_EQ(decoded.error_type(), "ValueError");
  EXPECT_EQ(body, std::string("\0\0", 2));
}

TEST(EnvelopeTest, RejectsPayloadShorterThanSizePrefix) {
  v1::RequestHead decoded;
  std::string_view body;
  EXPECT_FALSE(DecodeEnvelope("", decoded, body));
  EXPECT_FALSE(DecodeEnvelope(std::string_view("\x01\x00\x00", 3), decoded, body));
}

TEST(EnvelopeTest, RejectsTruncatedHead) {
  const v1::RequestHead head = SampleHead();
  std::string payload = EncodeEnvelope(head, "");
  const size_t full = 4 + head.ByteSizeLong();
  ASSERT_EQ(payload.size(), full);
  for (size_t len : {size_t{4}, size_t{5}, full / 2, full - 1}) {
    v1::RequestHead decoded;
    std::string_view body;
    EXPECT_FALSE(DecodeEnvelope(std::string_view(payload).substr(0, len), decoded, body))
        << "accepted a payload truncated to " << len << " of " << full << " bytes";
  }
}

TEST(EnvelopeTest, RejectsHeadSizeBeyondPayload) {
  std::string payload("\xff\xff\xff\xff", 4);
  payload += "abc";
  v1::RequestHead decoded;
  std::string_view body;
  EXPECT_FALSE(DecodeEnvelope(payload, decoded, body));
}

}  // namespace
}  // namespace serve::rpc
