// Unit tests of the proxy's response serialization (SerializeHttpResponse).

#include <string>

#include <gtest/gtest.h>

#include "rpc/http_server.h"

namespace serve::rpc {
namespace {

HttpServerResponse Sample() {
  HttpServerResponse r;
  r.status = 200;
  r.headers = {{"content-type", "text/plain"}, {"x-request-id", "abc"}};
  r.body = "hello";
  return r;
}

TEST(SerializeHttpResponse, KeepAliveHttp11) {
  EXPECT_EQ(SerializeHttpResponse(Sample(), 11, true, false),
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-request-id: abc\r\n"
            "content-length: 5\r\n\r\nhello");
}

TEST(SerializeHttpResponse, CloseAndHttp10KeepAlive) {
  EXPECT_EQ(SerializeHttpResponse(Sample(), 11, false, false),
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-request-id: abc\r\n"
            "content-length: 5\r\nconnection: close\r\n\r\nhello");
  EXPECT_NE(SerializeHttpResponse(Sample(), 10, true, false)
                .find("HTTP/1.0 200 OK\r\n"), std::string::npos);
  EXPECT_NE(SerializeHttpResponse(Sample(), 10, true, false)
                .find("\r\nconnection: keep-alive\r\n"), std::string::npos);
}

TEST(SerializeHttpResponse, HeadRequestHasLengthButNoBody) {
  std::string out = SerializeHttpResponse(Sample(), 11, true, true);
  EXPECT_NE(out.find("content-length: 5\r\n"), std::string::npos);
  EXPECT_EQ(out.substr(out.size() - 4), "\r\n\r\n");
}

TEST(SerializeHttpResponse, StatusReasons) {
  HttpServerResponse r = Sample();
  r.status = 503;
  EXPECT_EQ(SerializeHttpResponse(r, 11, true, false).rfind("HTTP/1.1 503 Service Unavailable\r\n", 0),
            0u);
  r.status = 418;
  EXPECT_EQ(SerializeHttpResponse(r, 11, true, false).rfind("HTTP/1.1 418 ", 0), 0u);
}

TEST(SerializeHttpResponse, DropsInjectedAndDerivedHeaders) {
  HttpServerResponse r = Sample();
  r.headers = {{"x-ok", "1"},
               {"x-evil", "a\r\nset-cookie: pwned"},
               {"bad name", "x"},
               {"Content-Length", "999"},
               {"transfer-encoding", "chunked"},
               {"Connection", "upgrade"}};
  EXPECT_EQ(SerializeHttpResponse(r, 11, true, false),
            "HTTP/1.1 200 OK\r\nx-ok: 1\r\ncontent-length: 5\r\n\r\nhello");
}

}  // namespace
}  // namespace serve::rpc
