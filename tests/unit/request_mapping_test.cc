// Unit tests of the proxy's request mapping (proxy/request_mapping.h): target split, route,
// and the RequestHead the ingress receives.

#include "proxy/request_mapping.h"

#include <string>

#include <gtest/gtest.h>

namespace serve::proxy {
namespace {

TEST(RequestMappingTest, SplitsTheTargetAndMatchesTheLongestPrefix) {
  RouteTable table({{"/", "root", "R"}, {"/api", "api", "A"}});
  MappedRequest m = MapRequest(table, "/api/v1?x=1?y");
  EXPECT_EQ(m.path, "/api/v1");
  EXPECT_EQ(m.query, "x=1?y");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->app_name, "api");
  EXPECT_EQ(MapRequest(table, "/apix").route->app_name, "root");
  EXPECT_EQ(MapRequest(RouteTable(), "/").route, nullptr);
}

TEST(RequestMappingTest, BuildsTheHeadWithLowerCaseHeaderNames) {
  RouteTable table({{"/m", "models", "Ingress"}});
  rpc::HttpServerRequest req;
  req.method = "POST";
  req.target = "/m/run?a=b";
  req.headers = {{"X-Request-ID", "first"}, {"x-request-id", "abc"},
                 {"Serve_Multiplexed_Model_Id", "model-7"}, {"Content-Type", "text/plain"}};
  MappedRequest m = MapRequest(table, req.target);
  std::string request_id = RequestIdHeader(req);
  EXPECT_EQ(request_id, "abc");  // the last one
  v1::RequestHead head = MakeRequestHead(req, m, request_id);
  EXPECT_EQ(head.request_id(), "abc");
  EXPECT_EQ(head.app_name(), "models");
  EXPECT_EQ(head.route(), "/m");
  EXPECT_EQ(head.method(), "__call__");
  EXPECT_EQ(head.multiplexed_model_id(), "model-7");
  EXPECT_EQ(head.http().method(), "POST");
  EXPECT_EQ(head.http().path(), "/m/run");
  EXPECT_EQ(head.http().query(), "a=b");
  EXPECT_EQ(head.http().route_prefix(), "/m");
  ASSERT_EQ(head.http().headers_size(), 4);
  EXPECT_EQ(head.http().headers(2).key(), "serve_multiplexed_model_id");
  EXPECT_EQ(head.http().headers(3).key(), "content-type");
  EXPECT_EQ(head.http().headers(3).value(), "text/plain");
}

// HTTP allows bytes that are not UTF-8 in header values (obs-text) and clients send them in
// paths; the head must still reach the replica (found by tests/fuzz/fuzz_proxy_request: with
// protobuf `string` fields the replica could not parse such a head).
TEST(RequestMappingTest, HeadsWithBytesThatAreNotUtf8SurviveTheWire) {
  RouteTable table({{"/a", "app", "Ingress"}});
  rpc::HttpServerRequest req;
  req.method = "GET";
  req.target = "/a/\xff?q=\xfe";
  req.headers = {{"X-Request-ID", "id-\xff"}, {"X-Name", "caf\xe9"},
                 {"serve_multiplexed_model_id", "m\xc3"}};
  MappedRequest m = MapRequest(table, req.target);
  v1::RequestHead head = MakeRequestHead(req, m, RequestIdHeader(req));
  v1::RequestHead back;
  ASSERT_TRUE(back.ParseFromString(head.SerializeAsString()));
  EXPECT_EQ(back.request_id(), "id-\xff");
  EXPECT_EQ(back.http().path(), "/a/\xff");
  EXPECT_EQ(back.http().query(), "q=\xfe");
  EXPECT_EQ(back.http().headers(1).value(), "caf\xe9");
  EXPECT_EQ(back.multiplexed_model_id(), "m\xc3");
}

}  // namespace
}  // namespace serve::proxy
