// The metrics core: exported names, text merging across processes, the agent's store.

#include <gtest/gtest.h>

#include <stdexcept>

#include "metrics/export.h"
#include "metrics/registry.h"

namespace serve::metrics {
namespace {

TEST(MetricsRegistry, ExportsRayNamesWithTotalOnCounters) {
  prometheus::Registry registry;
  CounterFamily requests("serve_test_requests", "Requests.", {"route"}, registry);
  GaugeFamily queued("serve_test_queued", "Queued.", {}, registry);
  HistogramFamily latency("serve_test_latency_ms", "Latency.", {"route"}, {1, 10}, registry);
  requests.With({"/a"}).Increment(3);
  queued.With({}).Set(2);
  latency.With({"/a"}).Observe(5);
  std::string text = Serialize(registry);
  EXPECT_NE(text.find("# TYPE ray_serve_test_requests_total counter"), std::string::npos) << text;
  EXPECT_NE(text.find("ray_serve_test_requests_total{route=\"/a\"} 3"), std::string::npos) << text;
  EXPECT_NE(text.find("ray_serve_test_queued 2"), std::string::npos) << text;
  EXPECT_NE(text.find("ray_serve_test_latency_ms_bucket{route=\"/a\",le=\"10\"} 1"),
            std::string::npos)
      << text;
  EXPECT_THROW(requests.With({"/a", "extra"}), std::invalid_argument);
}

TEST(MetricsRegistry, RemoveDropsOneSeries) {
  prometheus::Registry registry;
  GaugeFamily healthy("serve_test_healthy", "Healthy.", {"replica"}, registry);
  healthy.With({"a"}).Set(1);
  healthy.With({"b"}).Set(1);
  healthy.Remove({"a"});
  std::string text = Serialize(registry);
  EXPECT_EQ(text.find("replica=\"a\""), std::string::npos) << text;
  EXPECT_NE(text.find("replica=\"b\""), std::string::npos) << text;
}

TEST(MetricsText, MergeKeepsOneHeaderPerFamily) {
  std::string a =
      "# HELP ray_x_total X.\n# TYPE ray_x_total counter\nray_x_total{p=\"1\"} 1\n"
      "# HELP ray_y Y.\n# TYPE ray_y gauge\nray_y 3\n";
  std::string b = "# HELP ray_x_total X.\n# TYPE ray_x_total counter\nray_x_total{p=\"2\"} 5\n";
  std::string merged = MergeText({a, b});
  EXPECT_EQ(merged,
            "# HELP ray_x_total X.\n# TYPE ray_x_total counter\nray_x_total{p=\"1\"} 1\n"
            "ray_x_total{p=\"2\"} 5\n# HELP ray_y Y.\n# TYPE ray_y gauge\nray_y 3\n");
}

TEST(MetricsText, MergeKeepsHistogramSamplesTogether) {
  std::string a =
      "# HELP ray_h H.\n# TYPE ray_h histogram\nray_h_count{p=\"1\"} 1\nray_h_sum{p=\"1\"} 2\n";
  std::string b =
      "# HELP ray_h H.\n# TYPE ray_h histogram\nray_h_count{p=\"2\"} 4\nray_h_sum{p=\"2\"} 8\n";
  std::string merged = MergeText({a, b});
  EXPECT_EQ(merged.find("# TYPE ray_h"), merged.rfind("# TYPE ray_h"));
  EXPECT_NE(merged.find("ray_h_sum{p=\"2\"} 8"), std::string::npos);
}

TEST(MetricsStore, DropsProcessesThatStopPushing) {
  NodeStore store(10);
  auto t0 = NodeStore::Clock::now();
  store.Put(1, "replica:a", "# TYPE ray_a gauge\nray_a{r=\"a\"} 1\n", t0);
  store.Put(2, "replica:b", "# TYPE ray_a gauge\nray_a{r=\"b\"} 1\n", t0 + std::chrono::seconds(8));
  std::string both = store.Text("", t0 + std::chrono::seconds(9));
  EXPECT_NE(both.find("r=\"a\""), std::string::npos);
  EXPECT_NE(both.find("r=\"b\""), std::string::npos);
  std::string later = store.Text("", t0 + std::chrono::seconds(12));
  EXPECT_EQ(later.find("r=\"a\""), std::string::npos) << later;
  EXPECT_NE(later.find("r=\"b\""), std::string::npos) << later;
  EXPECT_EQ(store.size(), 1u);
}

TEST(MetricsBuckets, ParsesAndRejectsBadLists) {
  EXPECT_EQ(ParseBuckets("1,2.5,10", "X"), (std::vector<double>{1, 2.5, 10}));
  EXPECT_THROW(ParseBuckets("1,abc", "X"), std::invalid_argument);
  EXPECT_THROW(ParseBuckets("5,2", "X"), std::invalid_argument);
  EXPECT_THROW(ParseBuckets("0,2", "X"), std::invalid_argument);
  try {
    ParseBuckets("1,x", "RAY_SERVE_REQUEST_LATENCY_BUCKETS_MS");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("RAY_SERVE_REQUEST_LATENCY_BUCKETS_MS"), std::string::npos);
  }
  EXPECT_EQ(RequestLatencyBucketsMs().front(), 1);
  EXPECT_EQ(RequestLatencyBucketsMs().back(), 600000);
}

}  // namespace
}  // namespace serve::metrics
