// serve/metrics.h: custom metrics, their tag rules and the replica's automatic tags.

#include <serve/metrics.h>

#include <gtest/gtest.h>

#include <stdexcept>

#include "sdk/host.h"

namespace serve {
namespace {

std::string ErrorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(SdkMetrics, CounterWithDefaultAndPerCallTags) {
  metrics::Counter c("sdk_test_requests", "Requests by model.", {"model"});
  c.set_default_tags({{"model", "default"}});
  c.inc();
  c.inc(2, {{"model", "resnet"}});
  std::string text = sdk::MetricsText();
  EXPECT_NE(text.find("# HELP ray_sdk_test_requests_total Requests by model."), std::string::npos)
      << text;
  EXPECT_NE(text.find("ray_sdk_test_requests_total{model=\"default\"} 1"), std::string::npos)
      << text;
  EXPECT_NE(text.find("ray_sdk_test_requests_total{model=\"resnet\"} 2"), std::string::npos)
      << text;
}

TEST(SdkMetrics, InvalidTagUseNamesTheTag) {
  metrics::Counter c("sdk_test_tagged", "", {"model", "version"});
  std::string unknown = ErrorOf([&] { c.inc(1, {{"model", "a"}, {"version", "1"}, {"colour", "x"}}); });
  EXPECT_NE(unknown.find("unknown tag key 'colour'"), std::string::npos) << unknown;
  std::string missing = ErrorOf([&] { c.inc(1, {{"model", "a"}}); });
  EXPECT_NE(missing.find("missing value for tag key 'version'"), std::string::npos) << missing;
  std::string defaults = ErrorOf([&] { c.set_default_tags({{"colour", "x"}}); });
  EXPECT_NE(defaults.find("'colour'"), std::string::npos) << defaults;
  std::string reserved = ErrorOf([] { metrics::Gauge g("sdk_test_reserved", "", {"replica"}); });
  EXPECT_NE(reserved.find("'replica' is reserved"), std::string::npos) << reserved;
  std::string bad_name = ErrorOf([] { metrics::Gauge g("bad-name"); });
  EXPECT_NE(bad_name.find("'bad-name'"), std::string::npos) << bad_name;
  std::string bad_value = ErrorOf([&] { c.inc(-1, {{"model", "a"}, {"version", "1"}}); });
  EXPECT_NE(bad_value.find("> 0"), std::string::npos) << bad_value;
  std::string clash = ErrorOf([] {
    metrics::Gauge g("sdk_test_clash");
    metrics::Histogram h("sdk_test_clash", "", {1, 2});
  });
  EXPECT_NE(clash.find("sdk_test_clash"), std::string::npos) << clash;
  std::string buckets = ErrorOf([] { metrics::Histogram h("sdk_test_buckets", "", {2, 1}); });
  EXPECT_NE(buckets.find("strictly increasing"), std::string::npos) << buckets;
}

TEST(SdkMetrics, ReplicaAndRequestTagsAreAutomatic) {
  sdk::SetReplicaContext({"app1", "Dep", "Dep#abc", "Dep#abc"});
  metrics::Histogram h("sdk_test_latency_ms", "Latency.", {5, 50});
  metrics::Gauge g("sdk_test_gauge");
  sdk::RequestContext ctx;
  ctx.route = "/api";
  {
    sdk::ScopedRequestContext scope(&ctx);
    h.observe(7);
  }
  g.set(4);
  std::string text = sdk::MetricsText();
  EXPECT_NE(text.find("ray_sdk_test_latency_ms_count{application=\"app1\",deployment=\"Dep\","
                      "replica=\"Dep#abc\",route=\"/api\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("ray_sdk_test_gauge{application=\"app1\",deployment=\"Dep\",replica=\"Dep#abc\"} 4"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace serve
