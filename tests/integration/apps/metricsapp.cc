// The application of test_metrics.py: a deployment that records custom metrics with
// serve/metrics.h and fails with a user exception when asked (?fail=1).
#include <serve/serve.h>

#include <stdexcept>
#include <string>

class Scored {
 public:
  Scored()
      : requests_("metricsapp_requests", "Requests seen by Scored, by model.", {"model"}),
        score_("metricsapp_score_ms", "Scores Scored computed.", {1, 10, 100, 1000}),
        last_("metricsapp_last_score", "The last score.") {
    requests_.set_default_tags({{"model", "default"}});
  }

  std::string operator()(const serve::HttpRequest& req) {
    std::string model = req.query("model");
    if (model.empty()) {
      requests_.inc();
    } else {
      requests_.inc(1, {{"model", model}});
    }
    double score = static_cast<double>(req.path.size() * 7 % 50);
    score_.observe(score);
    last_.set(score);
    if (req.query("fail") == "1") throw std::runtime_error("asked to fail");
    return "score " + std::to_string(static_cast<int>(score));
  }

 private:
  serve::metrics::Counter requests_;
  serve::metrics::Histogram score_;
  serve::metrics::Gauge last_;
};
SERVE_DEPLOYMENT(Scored);
SERVE_APP(scored, serve::deployment<Scored>().num_replicas(2).bind());
