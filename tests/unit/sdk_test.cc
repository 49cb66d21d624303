// Unit tests of the SDK (libserve.so): JSON/msgpack values, HTTP request/response helpers,
// deployment options, method invokers, application graphs, app registry and replica context.

#include <cstdint>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <serve/serve.h>

#include "sdk/host.h"
#include "sdk_test_support.h"

using ::testing::HasSubstr;

// ---- Deployment classes under test (SERVE_DEPLOYMENT must be used at global scope) ----------

class UnitCounter {
 public:
  explicit UnitCounter(int start) : start_(start) {}
  int add(int a, int b) { return start_ + a + b; }
  std::string greet(const std::string& who) const { return "hi " + who; }
  std::string ping() { return "pong"; }
  serve::HttpResponse echo_path(const serve::HttpRequest& req) {
    return serve::HttpResponse::text(req.method + " " + req.path + " " + req.query("q"), 201);
  }
  void touch() { ++touched_; }
  int touched() const { return touched_; }
  serve::Bytes reverse(serve::Bytes b) {
    std::vector<std::uint8_t> r(b.data.rbegin(), b.data.rend());
    return serve::Bytes{r};
  }
  std::string operator()(const serve::HttpRequest& req) { return "called " + req.path; }

 private:
  int start_;
  int touched_ = 0;
};
SERVE_DEPLOYMENT(UnitCounter, serve::method("add", &UnitCounter::add),
                 serve::method("greet", &UnitCounter::greet),
                 serve::method("ping", &UnitCounter::ping),
                 serve::method("echo_path", &UnitCounter::echo_path),
                 serve::method("touch", &UnitCounter::touch),
                 serve::method("touched", &UnitCounter::touched),
                 serve::method("reverse", &UnitCounter::reverse));

class UnitConfigurable {
 public:
  UnitConfigurable(std::string prefix, int times) : prefix_(std::move(prefix)), times_(times) {}
  void reconfigure(const serve::Json& config) { threshold_ = config.at("threshold").get<int>(); }
  int threshold() const { return threshold_; }
  std::string describe() const { return prefix_ + ":" + std::to_string(times_); }

 private:
  std::string prefix_;
  int times_;
  int threshold_ = -1;
};
SERVE_DEPLOYMENT(UnitConfigurable, serve::method("threshold", &UnitConfigurable::threshold),
                 serve::method("describe", &UnitConfigurable::describe));

// No SERVE_DEPLOYMENT: named after the class, exposes only operator().
struct UnitPlainCallable {
  int operator()(int x) { return x * 2; }
};

std::string unit_hello_fn(std::string name) { return "Hello " + name + "!"; }

namespace unit_ns {
int unit_double_fn(int x) { return 2 * x; }
}  // namespace unit_ns

// ---- Registered applications ------------------------------------------------------------------

SERVE_APP(unit_plain_app, serve::deployment<UnitCounter>().name("PlainCounter").bind(7));

serve::Application unit_builder_app(const serve::Args& args) {
  return serve::deployment<UnitConfigurable>()
      .name("Built-" + args.get("suffix", "none"))
      .bind(args.get("prefix", "p"), static_cast<int>(args.values().size()));
}
SERVE_APP_BUILDER(unit_builder_app);

namespace {

using serve::testing::MakeInstance;

serve::detail::CallOutput CallArgs(serve::detail::Instance& inst, const std::string& method,
                                   const serve::Json& args) {
  serve::detail::CallInput in;
  in.args = &args;
  return inst.Call(method, in);
}

serve::detail::CallOutput CallHttp(serve::detail::Instance& inst, const std::string& method,
                                   const serve::HttpRequest& req) {
  serve::detail::CallInput in;
  in.http = &req;
  return inst.Call(method, in);
}

serve::ActorOptions CpuGpu(std::optional<double> cpus, std::optional<double> gpus) {
  serve::ActorOptions o;
  o.num_cpus = cpus;
  o.num_gpus = gpus;
  return o;
}

std::string InvalidArgumentMessage(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "<no std::invalid_argument thrown>";
}

}  // namespace

// ---- Bytes ------------------------------------------------------------------------------------

TEST(BytesTest, ToJsonIsBinary) {
  serve::Bytes b{{0x00, 0x01, 0xff, 0x7f}};
  serve::Json j = b;
  ASSERT_TRUE(j.is_binary());
  const std::vector<std::uint8_t>& raw = j.get_binary();
  EXPECT_EQ(raw, (std::vector<std::uint8_t>{0x00, 0x01, 0xff, 0x7f}));
  EXPECT_EQ(j.get<serve::Bytes>(), b);
}

TEST(BytesTest, MsgpackRoundTripStaysBinary) {
  serve::Bytes b{{0x00, 'a', 0x00, 0xfe}};
  serve::Json args = serve::Json::array({b, "text", 3});
  std::string encoded = serve::detail::EncodeMsgpack(args);
  serve::Json decoded = serve::detail::DecodeMsgpack(encoded);
  ASSERT_TRUE(decoded.is_array());
  ASSERT_EQ(decoded.size(), 3u);
  EXPECT_TRUE(decoded[0].is_binary());
  EXPECT_EQ(decoded[0].get<serve::Bytes>(), b);
  EXPECT_EQ(decoded[1], "text");
  EXPECT_EQ(decoded[2], 3);
}

TEST(BytesTest, FromStringCopiesCharacters) {
  serve::Json j = "ab\x01";
  EXPECT_EQ(j.get<serve::Bytes>(), (serve::Bytes{{'a', 'b', 0x01}}));
}

TEST(BytesTest, FromNumberThrowsTypeError) {
  serve::Json j = 42;
  EXPECT_THROW(j.get<serve::Bytes>(), serve::Json::type_error);
}

TEST(MsgpackTest, DecodeRejectsMalformedPayload) {
  // 0x92 announces a 2-element array but no elements follow.
  EXPECT_THROW(serve::detail::DecodeMsgpack(std::string("\x92", 1)), std::invalid_argument);
}

// A float that an arithmetic parameter cannot hold is a type error, not a conversion with
// undefined behaviour (found by tests/fuzz/fuzz_msgpack).
TEST(FromJsonTest, FloatsOutOfAnIntegerRangeAreTypeErrors) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(serve::detail::FromJson<int>(serve::Json(nan)), serve::Json::type_error);
  EXPECT_THROW(serve::detail::FromJson<int>(serve::Json(1e300)), serve::Json::type_error);
  EXPECT_THROW(serve::detail::FromJson<int>(serve::Json(2147483648.0)), serve::Json::type_error);
  EXPECT_THROW(serve::detail::FromJson<uint8_t>(serve::Json(-1.0)), serve::Json::type_error);
  EXPECT_THROW(serve::detail::FromJson<int64_t>(serve::Json(9.3e18)), serve::Json::type_error);
  EXPECT_THROW(serve::detail::FromJson<float>(serve::Json(1e300)), serve::Json::type_error);
  EXPECT_EQ(serve::detail::FromJson<int>(serve::Json(2147483647.5)), 2147483647);
  EXPECT_EQ(serve::detail::FromJson<int>(serve::Json(-2147483648.9)), -2147483647 - 1);
  EXPECT_EQ(serve::detail::FromJson<int>(serve::Json(-3.7)), -3);
  EXPECT_EQ(serve::detail::FromJson<uint8_t>(serve::Json(-0.5)), 0);
  EXPECT_EQ(serve::detail::FromJson<int64_t>(serve::Json(-9223372036854775808.0)),
            std::numeric_limits<int64_t>::min());
  EXPECT_TRUE(std::isinf(serve::detail::FromJson<float>(serve::Json(
      std::numeric_limits<double>::infinity()))));
  EXPECT_TRUE(std::isnan(serve::detail::FromJson<double>(serve::Json(nan))));
  EXPECT_EQ(serve::detail::FromJson<std::string>(serve::Json("x")), "x");
  // The crash input: msgpack float64 NaN (0xcb + 8 bytes) read as an int argument.
  serve::Json v = serve::detail::DecodeMsgpack(std::string("\xcb\xff\xff\x5f\x40\x00\x16\xaf\x2b", 9));
  EXPECT_THROW(serve::detail::FromJson<int>(v), serve::Json::type_error);
}

// Found by tests/fuzz/fuzz_msgpack: a float inside a container converted unchecked.
TEST(FromJsonTest, FloatsInsideContainersAreCheckedToo) {
  using serve::Json;
  using serve::detail::FromJson;
  // The fuzz input (corpus file regress-nested-float): a map whose value is a huge float.
  Json m = serve::detail::DecodeMsgpack(
      std::string("\x82\xa4\xe7%\xa4\xe7%\xa4\xe7%\xa4\xe7\xcb\xcb\xcb\xcb\xcb\xcb\x00\xd0\x36", 21));
  ASSERT_TRUE(m.is_object());
  EXPECT_THROW((FromJson<std::map<std::string, int>>(m)), Json::type_error);
  EXPECT_THROW(FromJson<std::vector<int>>(Json::parse("[1, 2, 1e300]")), Json::type_error);
  EXPECT_THROW(FromJson<std::vector<std::vector<uint8_t>>>(Json::parse("[[1], [-1.0]]")),
               Json::type_error);
  EXPECT_THROW((FromJson<std::pair<int, std::string>>(Json::parse("[1e20, \"x\"]"))),
               Json::type_error);
  EXPECT_THROW((FromJson<std::tuple<std::string, int64_t>>(Json::parse("[\"x\", 1e19]"))),
               Json::type_error);
  EXPECT_THROW((FromJson<std::map<int, int>>(Json::parse("[[1, 2], [3, 1e10]]"))),
               Json::type_error);
  EXPECT_THROW((FromJson<std::array<int, 2>>(Json::parse("[1, 1e10]"))), Json::type_error);
  // Values that fit convert as before.
  EXPECT_EQ((FromJson<std::map<std::string, int>>(Json::parse("{\"a\": 2.5}"))),
            (std::map<std::string, int>{{"a", 2}}));
  EXPECT_EQ(FromJson<std::vector<double>>(Json::parse("[1e300, 2]")),
            (std::vector<double>{1e300, 2}));
  EXPECT_EQ(FromJson<std::string>(Json("1e300")), "1e300");
}

// ---- HttpRequest / HttpResponse ---------------------------------------------------------------

TEST(HttpRequestTest, QueryParamsDecodeAndKeepRepeatedKeysInOrder) {
  serve::HttpRequest r;
  r.query_string = "a=1&b=hello+world&c=%41%62%2B&a=2&flag&&d=%zz&e=%4&k%3Dx=v";
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(r.query_params(), (std::vector<P>{{"a", "1"},
                                              {"b", "hello world"},
                                              {"c", "Ab+"},
                                              {"a", "2"},
                                              {"flag", ""},
                                              {"d", "%zz"},
                                              {"e", "%4"},
                                              {"k=x", "v"}}));
}

TEST(HttpRequestTest, QueryReturnsFirstValueOrFallback) {
  serve::HttpRequest r;
  r.query_string = "name=J%C3%BCrgen&name=second&empty=";
  EXPECT_EQ(r.query("name"), "J\xC3\xBCrgen");
  EXPECT_EQ(r.query("empty", "fb"), "");
  EXPECT_EQ(r.query("missing"), "");
  EXPECT_EQ(r.query("missing", "fb"), "fb");
}

TEST(HttpRequestTest, EmptyQueryStringHasNoParams) {
  serve::HttpRequest r;
  EXPECT_TRUE(r.query_params().empty());
}

TEST(HttpRequestTest, HeadersAreCaseInsensitive) {
  serve::HttpRequest r;
  r.headers["Content-Type"] = "application/json";
  r.headers["x-request-id"] = "abc";
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.header("CONTENT-TYPE"), "application/json");
  EXPECT_EQ(r.header("X-Request-ID"), "abc");
  EXPECT_EQ(r.header("x-missing", "none"), "none");
  r.headers["CONTENT-TYPE"] = "text/plain";  // same key: replaces
  EXPECT_EQ(r.headers.size(), 2u);
  EXPECT_EQ(r.header("Content-Type"), "text/plain");
}

TEST(HttpRequestTest, JsonParsesBody) {
  serve::HttpRequest r;
  r.body = R"({"a": [1, 2], "b": "x"})";
  serve::Json j = r.json();
  EXPECT_EQ(j, (serve::Json{{"a", {1, 2}}, {"b", "x"}}));
  EXPECT_EQ(r.text(), r.body);
}

TEST(HttpRequestTest, JsonThrowsInvalidArgumentOnBadBody) {
  serve::HttpRequest r;
  r.body = "{not json";
  EXPECT_THROW(r.json(), std::invalid_argument);
  r.body = "";
  EXPECT_THROW(r.json(), std::invalid_argument);
}

TEST(HttpResponseTest, TextSetsPlainContentType) {
  serve::HttpResponse r = serve::HttpResponse::text("hello", 404);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body, "hello");
  ASSERT_EQ(r.headers.count("Content-Type"), 1u);
  EXPECT_EQ(r.headers.at("content-type"), "text/plain; charset=utf-8");
}

TEST(HttpResponseTest, JsonSetsJsonContentTypeAndDumpsBody) {
  serve::HttpResponse r = serve::HttpResponse::json({{"k", 1}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers.at("Content-Type"), "application/json");
  EXPECT_EQ(serve::Json::parse(r.body), (serve::Json{{"k", 1}}));
}

TEST(HttpRequestTest, JsonRoundTrip) {
  serve::HttpRequest r;
  r.method = "POST";
  r.path = "/api/x";
  r.query_string = "a=1";
  r.route_prefix = "/api";
  r.headers["X-Custom"] = "v";
  r.body = std::string("bo\0dy", 5);
  serve::Json j = r;
  EXPECT_EQ(j.at("method"), "POST");
  EXPECT_EQ(j.at("path"), "/api/x");
  EXPECT_EQ(j.at("query_string"), "a=1");
  EXPECT_EQ(j.at("route_prefix"), "/api");
  EXPECT_EQ(j.at("headers"), (serve::Json{{"X-Custom", "v"}}));
  serve::HttpRequest back = j.get<serve::HttpRequest>();
  EXPECT_EQ(back.method, "POST");
  EXPECT_EQ(back.path, "/api/x");
  EXPECT_EQ(back.query_string, "a=1");
  EXPECT_EQ(back.route_prefix, "/api");
  EXPECT_EQ(back.body, std::string("bo\0dy", 5));
  EXPECT_EQ(back.header("x-custom"), "v");
}

TEST(HttpRequestTest, FromJsonDefaults) {
  serve::HttpRequest r = serve::Json::object().get<serve::HttpRequest>();
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/");
  EXPECT_EQ(r.query_string, "");
  EXPECT_EQ(r.body, "");
  EXPECT_TRUE(r.headers.empty());
}

TEST(HttpResponseTest, JsonRoundTrip) {
  serve::HttpResponse r = serve::HttpResponse::text("body", 503);
  r.headers["Retry-After"] = "1";
  serve::Json j = r;
  EXPECT_EQ(j.at("status"), 503);
  EXPECT_EQ(j.at("body"), "body");
  serve::HttpResponse back = j.get<serve::HttpResponse>();
  EXPECT_EQ(back.status, 503);
  EXPECT_EQ(back.body, "body");
  EXPECT_EQ(back.headers.size(), 2u);
  EXPECT_EQ(back.headers.at("retry-after"), "1");
  EXPECT_EQ(back.headers.at("content-type"), "text/plain; charset=utf-8");
  EXPECT_EQ(serve::Json::object().get<serve::HttpResponse>().status, 200);
}

// ---- DeploymentOptions ------------------------------------------------------------------------

TEST(DeploymentOptionsTest, MergeFromOverridesOnlySetFields) {
  serve::DeploymentOptions base;
  base.name = "A";
  base.num_replicas = 2;
  base.max_ongoing_requests = 10;
  base.ray_actor_options = CpuGpu(2.0, 1.0);

  serve::DeploymentOptions over;
  over.num_replicas = 5;
  over.health_check_period_s = 3.5;
  over.ray_actor_options = CpuGpu(0.5, std::nullopt);

  base.MergeFrom(over);
  EXPECT_EQ(base.name, "A");
  EXPECT_EQ(base.num_replicas, 5);
  EXPECT_EQ(base.max_ongoing_requests, 10);
  EXPECT_EQ(base.health_check_period_s, 3.5);
  EXPECT_FALSE(base.max_queued_requests.has_value());
  EXPECT_FALSE(base.user_config.has_value());
  // ray_actor_options is replaced as a whole dict.
  ASSERT_TRUE(base.ray_actor_options.has_value());
  EXPECT_EQ(base.ray_actor_options->num_cpus, 0.5);
  EXPECT_FALSE(base.ray_actor_options->num_gpus.has_value());
}

TEST(DeploymentOptionsTest, MergeFromEmptyKeepsEverything) {
  serve::DeploymentOptions base;
  base.name = "A";
  base.user_config = serve::Json{{"k", 1}};
  base.MergeFrom(serve::DeploymentOptions{});
  EXPECT_EQ(base.name, "A");
  EXPECT_EQ(base.user_config, (serve::Json{{"k", 1}}));
  EXPECT_EQ(serve::Json(base), (serve::Json{{"name", "A"}, {"user_config", {{"k", 1}}}}));
}

TEST(DeploymentOptionsTest, ToJsonEmitsOnlySetFields) {
  serve::DeploymentOptions o;
  EXPECT_EQ(serve::Json(o), serve::Json::object());
  o.name = "D";
  o.max_queued_requests = -1;
  o.graceful_shutdown_timeout_s = 1.5;
  o.ray_actor_options = CpuGpu(0.25, std::nullopt);
  EXPECT_EQ(serve::Json(o), (serve::Json{{"name", "D"},
                                         {"max_queued_requests", -1},
                                         {"graceful_shutdown_timeout_s", 1.5},
                                         {"ray_actor_options", {{"num_cpus", 0.25}}}}));
}

TEST(DeploymentOptionsTest, FromJsonRoundTrip) {
  serve::Json j = {{"name", "D"},
                   {"num_replicas", 3},
                   {"user_config", {{"t", 1}}},
                   {"health_check_timeout_s", 7.0},
                   {"ray_actor_options", {{"num_cpus", 2.0}, {"resources", {{"custom", 1.0}}}}}};
  serve::DeploymentOptions o = j.get<serve::DeploymentOptions>();
  EXPECT_EQ(o.name, "D");
  EXPECT_EQ(o.num_replicas, 3);
  EXPECT_EQ(o.user_config, (serve::Json{{"t", 1}}));
  EXPECT_EQ(o.health_check_timeout_s, 7.0);
  EXPECT_FALSE(o.max_ongoing_requests.has_value());
  ASSERT_TRUE(o.ray_actor_options.has_value());
  EXPECT_EQ(o.ray_actor_options->num_cpus, 2.0);
  EXPECT_EQ(o.ray_actor_options->resources, (std::map<std::string, double>{{"custom", 1.0}}));
  EXPECT_EQ(serve::Json(o), j);
}

TEST(DeploymentOptionsTest, FromJsonRejectsUnknownActorOption) {
  serve::Json j = {{"name", "D"}, {"ray_actor_options", {{"num_cpu", 1}}}};
  std::string msg = InvalidArgumentMessage([&] { (void)j.get<serve::DeploymentOptions>(); });
  EXPECT_THAT(msg, HasSubstr("ray_actor_options"));
  EXPECT_THAT(msg, HasSubstr("num_cpu"));
}

TEST(DeploymentOptionsTest, FromJsonAcceptsEveryAllowedActorOption) {
  serve::Json j = {{"ray_actor_options",
                    {{"num_cpus", 1}, {"num_gpus", 0}, {"memory", 100}, {"resources", serve::Json::object()},
                     {"runtime_env", serve::Json::object()}, {"accelerator_type", "A100"}}}};
  EXPECT_NO_THROW((void)j.get<serve::DeploymentOptions>());
}

TEST(DeploymentOptionsTest, FromJsonWrongTypeNamesField) {
  serve::Json j = {{"num_replicas", "x"}};
  std::string msg = InvalidArgumentMessage([&] { (void)j.get<serve::DeploymentOptions>(); });
  EXPECT_THAT(msg, HasSubstr("num_replicas"));
}

// ---- Method invokers --------------------------------------------------------------------------

class InstanceTest : public ::testing::Test {
 protected:
  void SetUp() override { inst_ = MakeInstance(serve::deployment<UnitCounter>().bind(10)); }
  std::unique_ptr<serve::detail::Instance> inst_;
};

TEST_F(InstanceTest, CallsWithJsonArrayArgs) {
  auto out = CallArgs(*inst_, "add", serve::Json::array({1, 2}));
  EXPECT_FALSE(out.http.has_value());
  EXPECT_EQ(out.value, 13);
  EXPECT_EQ(CallArgs(*inst_, "greet", serve::Json::array({"bob"})).value, "hi bob");
}

TEST_F(InstanceTest, VoidMethodReturnsNullAndMutatesInstance) {
  auto out = CallArgs(*inst_, "touch", serve::Json::array());
  EXPECT_TRUE(out.value.is_null());
  CallArgs(*inst_, "touch", serve::Json::array());
  EXPECT_EQ(CallArgs(*inst_, "touched", serve::Json::array()).value, 2);
}

TEST_F(InstanceTest, BytesArgumentAndResultStayBinary) {
  serve::Json args = serve::detail::DecodeMsgpack(
      serve::detail::EncodeMsgpack(serve::Json::array({serve::Bytes{{1, 0, 2}}})));
  auto out = CallArgs(*inst_, "reverse", args);
  ASSERT_TRUE(out.value.is_binary());
  EXPECT_EQ(out.value.get<serve::Bytes>(), (serve::Bytes{{2, 0, 1}}));
}

TEST_F(InstanceTest, WrongArityThrowsInvalidArgument) {
  std::string msg = InvalidArgumentMessage([&] { CallArgs(*inst_, "add", serve::Json::array({1})); });
  EXPECT_EQ(msg, "'add' takes 2 argument(s) but 1 were given");
  EXPECT_THROW(CallArgs(*inst_, "ping", serve::Json::array({1})), std::invalid_argument);
  EXPECT_THROW(CallArgs(*inst_, "add", serve::Json{{"a", 1}}), std::invalid_argument);
}

TEST_F(InstanceTest, HttpToMethodTakingRequest) {
  serve::HttpRequest req;
  req.method = "POST";
  req.path = "/p";
  req.query_string = "q=x%20y";
  auto out = CallHttp(*inst_, "echo_path", req);
  ASSERT_TRUE(out.http.has_value());
  EXPECT_EQ(out.http->status, 201);
  EXPECT_EQ(out.http->body, "POST /p x y");
  EXPECT_EQ(out.http->headers.at("content-type"), "text/plain; charset=utf-8");
}

TEST_F(InstanceTest, HttpToMethodWithoutArgs) {
  serve::HttpRequest req;
  auto out = CallHttp(*inst_, "ping", req);
  EXPECT_FALSE(out.http.has_value());
  EXPECT_EQ(out.value, "pong");
}

TEST_F(InstanceTest, HttpToMethodWithOtherArgsThrows) {
  serve::HttpRequest req;
  std::string msg = InvalidArgumentMessage([&] { CallHttp(*inst_, "add", req); });
  EXPECT_THAT(msg, HasSubstr("'add' cannot serve HTTP"));
  EXPECT_THROW(CallHttp(*inst_, "greet", req), std::invalid_argument);
}

TEST_F(InstanceTest, CallOperatorIsExposedAsDunderCall) {
  serve::HttpRequest req;
  req.path = "/root";
  EXPECT_EQ(CallHttp(*inst_, "__call__", req).value, "called /root");
}

TEST_F(InstanceTest, UnknownMethodThrowsWithRayMessage) {
  std::string msg = InvalidArgumentMessage([&] { CallArgs(*inst_, "x", serve::Json::array()); });
  EXPECT_EQ(msg, "Tried to call a method 'x' that does not exist.");
}

TEST_F(InstanceTest, ReconfigureWithoutMethodThrowsLogicError) {
  EXPECT_FALSE(inst_->HasReconfigure());
  EXPECT_THROW(inst_->Reconfigure(serve::Json{{"threshold", 1}}), std::logic_error);
  EXPECT_NO_THROW(inst_->CheckHealth());
}

TEST(InstanceReconfigureTest, ReconfigureCallsUserMethod) {
  // A string literal reaches the std::string constructor parameter.
  auto inst = MakeInstance(serve::deployment<UnitConfigurable>().bind("pre", 3));
  EXPECT_TRUE(inst->HasReconfigure());
  EXPECT_EQ(CallArgs(*inst, "threshold", serve::Json::array()).value, -1);
  inst->Reconfigure(serve::Json{{"threshold", 42}});
  EXPECT_EQ(CallArgs(*inst, "threshold", serve::Json::array()).value, 42);
  EXPECT_EQ(CallArgs(*inst, "describe", serve::Json::array()).value, "pre:3");
}

TEST(InstancePlainTest, ClassWithoutTraitsExposesOnlyCall) {
  auto app = serve::deployment<UnitPlainCallable>().bind();
  EXPECT_EQ(app.ToJson().at("ingress"), "UnitPlainCallable");
  auto inst = MakeInstance(app);
  EXPECT_EQ(CallArgs(*inst, "__call__", serve::Json::array({21})).value, 42);
  EXPECT_THROW(CallArgs(*inst, "other", serve::Json::array()), std::invalid_argument);
}

// ---- Deployment builder / Application ---------------------------------------------------------

TEST(ApplicationTest, ToJsonHasNameSetOptionsAndInitArgs) {
  serve::Application app = serve::deployment<UnitCounter>().name("Counter").num_replicas(2).bind(5);
  serve::Json j = app.ToJson();
  EXPECT_EQ(j.at("ingress"), "Counter");
  ASSERT_EQ(j.at("deployments").size(), 1u);
  const serve::Json& node = j.at("deployments").at(0);
  EXPECT_EQ(node.at("name"), "Counter");
  EXPECT_EQ(node.at("init_args"), serve::Json::array({5}));
  EXPECT_EQ(node.at("options"), (serve::Json{{"name", "Counter"}, {"num_replicas", 2}}));
  EXPECT_TRUE(node.at("factory").is_string());
  EXPECT_FALSE(node.at("factory").get<std::string>().empty());
}

TEST(ApplicationTest, DefaultNameComesFromSERVE_DEPLOYMENT) {
  serve::Json j = serve::deployment<UnitCounter>().bind(1).ToJson();
  EXPECT_EQ(j.at("ingress"), "UnitCounter");
  EXPECT_EQ(j.at("deployments").at(0).at("options"), (serve::Json{{"name", "UnitCounter"}}));
}

TEST(ApplicationTest, BuilderSettersAndOptionsOverride) {
  serve::DeploymentOptions over;
  over.max_ongoing_requests = 8;
  over.name = "Renamed";
  auto d = serve::deployment<UnitCounter>()
               .max_queued_requests(4)
               .user_config(serve::Json{{"u", true}})
               .health_check_period_s(2.5)
               .options(over);
  EXPECT_EQ(serve::Json(d.options()), (serve::Json{{"name", "Renamed"},
                                                   {"max_ongoing_requests", 8},
                                                   {"max_queued_requests", 4},
                                                   {"user_config", {{"u", true}}},
                                                   {"health_check_period_s", 2.5}}));
}

TEST(ApplicationTest, BuilderIsImmutable) {
  auto base = serve::deployment<UnitCounter>();
  auto named = base.name("Other");
  EXPECT_EQ(base.options().name, "UnitCounter");
  EXPECT_EQ(named.options().name, "Other");
}

TEST(ApplicationTest, FactoryConstructsFromEncodedInitArgs) {
  serve::Application app = serve::deployment<UnitCounter>().name("Counter").bind(100);
  auto inst = MakeInstance(app);
  ASSERT_NE(inst, nullptr);
  EXPECT_EQ(CallArgs(*inst, "add", serve::Json::array({1, 1})).value, 102);
}

TEST(ApplicationTest, FactoryRejectsWrongInitArity) {
  serve::Json j = serve::deployment<UnitCounter>().bind(1).ToJson();
  auto factory = serve::sdk::FindFactory(j["deployments"][0]["factory"].get<std::string>());
  ASSERT_NE(factory, nullptr);
  EXPECT_THROW(factory(serve::detail::EncodeMsgpack(serve::Json::array())), std::invalid_argument);
}

TEST(ApplicationTest, UnknownFactoryKeyIsNull) {
  EXPECT_EQ(serve::sdk::FindFactory("no-such-factory-key"), nullptr);
}

TEST(ApplicationTest, EmptyApplicationToJsonThrows) {
  EXPECT_THROW(serve::Application().ToJson(), std::invalid_argument);
}

TEST(FunctionDeploymentTest, NamedAfterFunction) {
  serve::Application app = serve::deployment<&unit_hello_fn>().bind();
  serve::Json j = app.ToJson();
  EXPECT_EQ(j.at("ingress"), "unit_hello_fn");
  auto inst = MakeInstance(app);
  EXPECT_EQ(CallArgs(*inst, "__call__", serve::Json::array({"Ann"})).value, "Hello Ann!");
}

TEST(FunctionDeploymentTest, NamespacedFunctionUsesBareName) {
  serve::Json j = serve::deployment<&unit_ns::unit_double_fn>().bind().ToJson();
  EXPECT_EQ(j.at("ingress"), "unit_double_fn");
}

TEST(FunctionDeploymentTest, ExplicitNameWins) {
  serve::DeploymentOptions o;
  o.name = "Custom";
  EXPECT_EQ(serve::deployment<&unit_hello_fn>(o).bind().ToJson().at("ingress"), "Custom");
  EXPECT_EQ(serve::deployment<&unit_hello_fn>().name("Later").bind().ToJson().at("ingress"),
            "Later");
}

// ---- App registry -----------------------------------------------------------------------------

TEST(BuildApplicationTest, UnknownNameListsRegisteredApps) {
  std::string msg = InvalidArgumentMessage(
      [] { serve::sdk::BuildApplication("nope", serve::Args()); });
  EXPECT_THAT(msg, HasSubstr("'nope'"));
  EXPECT_THAT(msg, HasSubstr("unit_plain_app"));
  EXPECT_THAT(msg, HasSubstr("unit_builder_app"));
}

TEST(BuildApplicationTest, PlainAppBuildsWithoutArgs) {
  serve::Json j = serve::sdk::BuildApplication("unit_plain_app", serve::Args());
  EXPECT_EQ(j.at("ingress"), "PlainCounter");
  EXPECT_EQ(j.at("deployments").at(0).at("init_args"), serve::Json::array({7}));
  const serve::sdk::AppEntry* entry = serve::sdk::FindApp("unit_plain_app");
  ASSERT_NE(entry, nullptr);
  EXPECT_FALSE(entry->takes_args);
}

TEST(BuildApplicationTest, ArgsToNonBuilderAppThrow) {
  serve::Args args(std::map<std::string, std::string>{{"k", "v"}});
  std::string msg = InvalidArgumentMessage(
      [&] { serve::sdk::BuildApplication("unit_plain_app", args); });
  EXPECT_THAT(msg, HasSubstr("unit_plain_app"));
}

TEST(BuildApplicationTest, BuilderReceivesArgs) {
  serve::Args args(std::map<std::string, std::string>{{"suffix", "x"}, {"prefix", "pp"}});
  serve::Json j = serve::sdk::BuildApplication("unit_builder_app", args);
  EXPECT_EQ(j.at("ingress"), "Built-x");
  EXPECT_EQ(j.at("deployments").at(0).at("init_args"), serve::Json::array({"pp", 2}));
  EXPECT_TRUE(serve::sdk::FindApp("unit_builder_app")->takes_args);
}

TEST(BuildApplicationTest, RuntimeRegisteredBuilder) {
  serve::detail::RegisterApp(
      "unit_runtime_app",
      [](const serve::Args& a) {
        return serve::deployment<UnitCounter>().name(a.get("n", "dflt")).bind(0);
      },
      true);
  EXPECT_EQ(serve::sdk::BuildApplication("unit_runtime_app", serve::Args()).at("ingress"), "dflt");
  serve::Args args(std::map<std::string, std::string>{{"n", "Given"}});
  EXPECT_EQ(serve::sdk::BuildApplication("unit_runtime_app", args).at("ingress"), "Given");
  auto names = serve::sdk::AppNames();
  EXPECT_THAT(names, ::testing::Contains("unit_runtime_app"));
}

TEST(BuildApplicationTest, BuilderExceptionPropagates) {
  serve::detail::RegisterApp(
      "unit_throwing_app",
      [](const serve::Args&) -> serve::Application { throw std::runtime_error("boom"); }, true);
  EXPECT_THROW(serve::sdk::BuildApplication("unit_throwing_app", serve::Args()), std::runtime_error);
}

TEST(ArgsTest, GetContainsAndFallback) {
  serve::Args a(std::map<std::string, std::string>{{"k", "v"}});
  EXPECT_EQ(a.get("k"), "v");
  EXPECT_EQ(a.get("z", "fb"), "fb");
  EXPECT_TRUE(a.contains("k"));
  EXPECT_FALSE(a.contains("z"));
}

// ---- Replica context --------------------------------------------------------------------------

// Probed during static initialisation, before any test can install a context, so the test below
// holds however often and in whatever order tests run in one process.
const bool g_context_threw_logic_error_before_set = [] {
  try {
    (void)serve::get_replica_context();
  } catch (const std::logic_error&) {
    return true;
  } catch (...) {
  }
  return false;
}();

TEST(ReplicaContextTest, ThrowsBeforeSetAndReturnsContextAfter) {
  EXPECT_TRUE(g_context_threw_logic_error_before_set);
  serve::sdk::SetReplicaContext(serve::ReplicaContext{"app1", "Dep", "rid-1", "rid-1"});
  const serve::ReplicaContext& ctx = serve::get_replica_context();
  EXPECT_EQ(ctx.app_name, "app1");
  EXPECT_EQ(ctx.deployment, "Dep");
  EXPECT_EQ(ctx.replica_id, "rid-1");
  EXPECT_EQ(ctx.replica_tag, "rid-1");
}

// ---- Autoscaling options ----------------------------------------------------------------------

namespace {

serve::AutoscalingConfig Bounds(int min, int max) {
  serve::AutoscalingConfig c;
  c.min_replicas = min;
  c.max_replicas = max;
  return c;
}

}  // namespace

TEST(AutoscalingOptionsTest, EmptyConfigEmitsEmptyMapping) {
  EXPECT_EQ(serve::Json(serve::AutoscalingConfig{}), serve::Json::object());
}

TEST(AutoscalingOptionsTest, ToJsonEmitsEverySetFieldUnderItsSchemaName) {
  serve::AutoscalingConfig c;
  c.min_replicas = 0;
  c.max_replicas = 4;
  c.initial_replicas = 2;
  c.target_ongoing_requests = 1.5;
  c.metrics_interval_s = 0.5;
  c.look_back_period_s = 2;
  c.upscale_delay_s = 0.5;
  c.downscale_delay_s = 2;
  c.downscale_to_zero_delay_s = 1;
  c.smoothing_factor = 1;
  c.upscale_smoothing_factor = 0.9;
  c.downscale_smoothing_factor = 0.8;
  c.upscaling_factor = 2;
  c.downscaling_factor = 0.5;
  c.aggregation_function = "max";
  c.policy = "mod:policy";
  serve::Json want = {{"min_replicas", 0},
                      {"max_replicas", 4},
                      {"initial_replicas", 2},
                      {"target_ongoing_requests", 1.5},
                      {"metrics_interval_s", 0.5},
                      {"look_back_period_s", 2.0},
                      {"upscale_delay_s", 0.5},
                      {"downscale_delay_s", 2.0},
                      {"downscale_to_zero_delay_s", 1.0},
                      {"smoothing_factor", 1.0},
                      {"upscale_smoothing_factor", 0.9},
                      {"downscale_smoothing_factor", 0.8},
                      {"upscaling_factor", 2.0},
                      {"downscaling_factor", 0.5},
                      {"aggregation_function", "max"},
                      {"policy", "mod:policy"}};
  EXPECT_EQ(serve::Json(c), want);
  EXPECT_EQ(want.get<serve::AutoscalingConfig>(), c);
}

TEST(AutoscalingOptionsTest, DeploymentOptionsEmitAutoscalingConfig) {
  serve::DeploymentOptions o;
  o.name = "Scaled";
  o.autoscaling_config = Bounds(1, 4);
  o.autoscaling_config->target_ongoing_requests = 1;
  EXPECT_EQ(serve::Json(o),
            (serve::Json{{"name", "Scaled"},
                         {"autoscaling_config",
                          {{"min_replicas", 1}, {"max_replicas", 4},
                           {"target_ongoing_requests", 1.0}}}}));
}

TEST(AutoscalingOptionsTest, NumReplicasAutoEmitsTheStringAuto) {
  serve::DeploymentOptions o;
  o.num_replicas_auto = true;
  EXPECT_EQ(serve::Json(o), (serve::Json{{"num_replicas", "auto"}}));
  o.autoscaling_config = Bounds(2, 8);  // overrides the "auto" defaults
  EXPECT_EQ(serve::Json(o),
            (serve::Json{{"num_replicas", "auto"},
                         {"autoscaling_config", {{"min_replicas", 2}, {"max_replicas", 8}}}}));
}

TEST(AutoscalingOptionsTest, FromJsonRoundTrip) {
  serve::Json j = {{"name", "D"},
                   {"num_replicas", "auto"},
                   {"max_ongoing_requests", 7},
                   {"autoscaling_config",
                    {{"min_replicas", 0}, {"max_replicas", 3}, {"upscale_delay_s", 0.25},
                     {"aggregation_function", "min"}}}};
  serve::DeploymentOptions o = j.get<serve::DeploymentOptions>();
  EXPECT_TRUE(o.num_replicas_auto);
  EXPECT_FALSE(o.num_replicas.has_value());
  ASSERT_TRUE(o.autoscaling_config.has_value());
  EXPECT_EQ(o.autoscaling_config->min_replicas, 0);
  EXPECT_EQ(o.autoscaling_config->max_replicas, 3);
  EXPECT_EQ(o.autoscaling_config->upscale_delay_s, 0.25);
  EXPECT_EQ(o.autoscaling_config->aggregation_function, "min");
  EXPECT_FALSE(o.autoscaling_config->target_ongoing_requests.has_value());
  EXPECT_EQ(serve::Json(o), j);

  serve::Json fixed = {{"num_replicas", 3}};
  serve::DeploymentOptions f = fixed.get<serve::DeploymentOptions>();
  EXPECT_EQ(f.num_replicas, 3);
  EXPECT_FALSE(f.num_replicas_auto);
  EXPECT_FALSE(f.autoscaling_config.has_value());
  EXPECT_EQ(serve::Json(f), fixed);
}

TEST(AutoscalingOptionsTest, FromJsonNullAutoscalingConfigIsUnset) {
  serve::Json j = {{"num_replicas", 2}, {"autoscaling_config", nullptr}};
  serve::DeploymentOptions o = j.get<serve::DeploymentOptions>();
  EXPECT_EQ(o.num_replicas, 2);
  EXPECT_FALSE(o.autoscaling_config.has_value());
}

TEST(AutoscalingOptionsTest, FromJsonReadsDeprecatedTargetName) {
  serve::Json j = {{"target_num_ongoing_requests_per_replica", 3}, {"unknown_field", true}};
  EXPECT_EQ(j.get<serve::AutoscalingConfig>().target_ongoing_requests, 3.0);
  serve::Json both = {{"target_num_ongoing_requests_per_replica", 3},
                      {"target_ongoing_requests", 4}};
  EXPECT_EQ(both.get<serve::AutoscalingConfig>().target_ongoing_requests, 4.0);
}

TEST(AutoscalingOptionsTest, FromJsonErrorsNameTheField) {
  std::string msg = InvalidArgumentMessage(
      [] { (void)serve::Json{{"num_replicas", "many"}}.get<serve::DeploymentOptions>(); });
  EXPECT_THAT(msg, HasSubstr("num_replicas"));
  EXPECT_THAT(msg, HasSubstr("auto"));

  msg = InvalidArgumentMessage([] {
    (void)serve::Json{{"autoscaling_config", {{"max_replicas", "lots"}}}}
        .get<serve::DeploymentOptions>();
  });
  EXPECT_THAT(msg, HasSubstr("autoscaling_config"));
  EXPECT_THAT(msg, HasSubstr("max_replicas"));

  msg = InvalidArgumentMessage(
      [] { (void)serve::Json{{"autoscaling_config", 5}}.get<serve::DeploymentOptions>(); });
  EXPECT_THAT(msg, HasSubstr("autoscaling_config must be a mapping"));

  msg = InvalidArgumentMessage([] {
    (void)serve::Json{{"num_replicas", 2}, {"autoscaling_config", {{"max_replicas", 3}}}}
        .get<serve::DeploymentOptions>();
  });
  EXPECT_THAT(msg, HasSubstr("not allowed when autoscaling_config is provided"));
}

TEST(AutoscalingOptionsTest, ToJsonRejectsConflictingReplicaCounts) {
  serve::DeploymentOptions fixed_and_auto;
  fixed_and_auto.num_replicas = 2;
  fixed_and_auto.num_replicas_auto = true;
  EXPECT_THAT(InvalidArgumentMessage([&] { (void)serve::Json(fixed_and_auto); }),
              HasSubstr("num_replicas"));

  serve::DeploymentOptions fixed_and_config;
  fixed_and_config.num_replicas = 2;
  fixed_and_config.autoscaling_config = Bounds(1, 2);
  EXPECT_THAT(InvalidArgumentMessage([&] { (void)serve::Json(fixed_and_config); }),
              HasSubstr("not allowed when autoscaling_config is provided"));
}

TEST(AutoscalingOptionsTest, MergeFixedCountClearsAutoscaling) {
  serve::DeploymentOptions base;
  base.num_replicas_auto = true;
  base.autoscaling_config = Bounds(1, 4);
  serve::DeploymentOptions over;
  over.num_replicas = 3;
  base.MergeFrom(over);
  EXPECT_EQ(base.num_replicas, 3);
  EXPECT_FALSE(base.num_replicas_auto);
  EXPECT_FALSE(base.autoscaling_config.has_value());
}

TEST(AutoscalingOptionsTest, MergeAutoscalingClearsFixedCountAndReplacesWhole) {
  serve::DeploymentOptions base;
  base.num_replicas = 3;
  serve::DeploymentOptions over;
  over.autoscaling_config = Bounds(1, 4);
  base.MergeFrom(over);
  EXPECT_FALSE(base.num_replicas.has_value());
  EXPECT_EQ(base.autoscaling_config, Bounds(1, 4));

  // A second config replaces the first as a whole: nothing of the old one is kept.
  serve::AutoscalingConfig only_target;
  only_target.target_ongoing_requests = 2;
  serve::DeploymentOptions again;
  again.autoscaling_config = only_target;
  base.MergeFrom(again);
  EXPECT_EQ(base.autoscaling_config, only_target);
}

TEST(AutoscalingOptionsTest, MergeAutoKeepsAutoscalingOverrides) {
  serve::DeploymentOptions base;
  base.num_replicas = 3;
  serve::DeploymentOptions over;
  over.num_replicas_auto = true;
  base.MergeFrom(over);
  EXPECT_TRUE(base.num_replicas_auto);
  EXPECT_FALSE(base.num_replicas.has_value());

  serve::DeploymentOptions with_config;
  with_config.autoscaling_config = Bounds(2, 5);
  base.MergeFrom(with_config);
  EXPECT_TRUE(base.num_replicas_auto);
  EXPECT_EQ(base.autoscaling_config, Bounds(2, 5));
}

TEST(AutoscalingOptionsTest, MergeWithoutReplicaCountKeepsIt) {
  serve::DeploymentOptions base;
  base.num_replicas_auto = true;
  base.autoscaling_config = Bounds(1, 4);
  serve::DeploymentOptions over;
  over.max_ongoing_requests = 9;
  base.MergeFrom(over);
  EXPECT_TRUE(base.num_replicas_auto);
  EXPECT_EQ(base.autoscaling_config, Bounds(1, 4));
  EXPECT_EQ(base.max_ongoing_requests, 9);
}

TEST(AutoscalingOptionsTest, BuilderSettersClearTheOtherReplicaCount) {
  auto fixed = serve::deployment<UnitCounter>().num_replicas(2);
  auto scaled = fixed.autoscaling_config(Bounds(1, 4));
  EXPECT_EQ(serve::Json(scaled.options()),
            (serve::Json{{"name", "UnitCounter"},
                         {"autoscaling_config", {{"min_replicas", 1}, {"max_replicas", 4}}}}));
  // Immutable: the source builder keeps its fixed count.
  EXPECT_EQ(fixed.options().num_replicas, 2);

  auto back = scaled.num_replicas(5);
  EXPECT_EQ(serve::Json(back.options()),
            (serve::Json{{"name", "UnitCounter"}, {"num_replicas", 5}}));

  auto auto_then_config = fixed.num_replicas_auto().autoscaling_config(Bounds(0, 3));
  EXPECT_EQ(serve::Json(auto_then_config.options()),
            (serve::Json{{"name", "UnitCounter"},
                         {"num_replicas", "auto"},
                         {"autoscaling_config", {{"min_replicas", 0}, {"max_replicas", 3}}}}));
  EXPECT_EQ(serve::Json(auto_then_config.num_replicas(1).options()),
            (serve::Json{{"name", "UnitCounter"}, {"num_replicas", 1}}));
}

TEST(AutoscalingOptionsTest, ApplicationGraphCarriesAutoscalingOptions) {
  serve::AutoscalingConfig c = Bounds(0, 2);
  c.downscale_to_zero_delay_s = 1;
  serve::Json j = serve::deployment<UnitCounter>()
                      .name("Scaled")
                      .max_ongoing_requests(3)
                      .autoscaling_config(c)
                      .bind(1)
                      .ToJson();
  EXPECT_EQ(j.at("deployments").at(0).at("options"),
            (serve::Json{{"name", "Scaled"},
                         {"max_ongoing_requests", 3},
                         {"autoscaling_config",
                          {{"min_replicas", 0}, {"max_replicas", 2},
                           {"downscale_to_zero_delay_s", 1.0}}}}));
}

TEST(AutoscalingOptionsTest, OptionsStructWithConflictFailsTheBuild) {
  serve::DeploymentOptions conflicting;
  conflicting.num_replicas = 2;
  conflicting.autoscaling_config = Bounds(1, 2);
  auto d = serve::deployment<UnitCounter>().options(conflicting);
  EXPECT_THAT(InvalidArgumentMessage([&] { (void)d.bind(1).ToJson(); }),
              HasSubstr("not allowed when autoscaling_config is provided"));
}
