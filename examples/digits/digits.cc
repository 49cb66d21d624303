// Dynamic request batching on a real model: a digit classifier (an MLP trained by train.py with
// scikit-learn on its bundled 8x8 digits) served with serve::Batcher; each batch is one OpenBLAS
// GEMM per layer.
//   serve run digits:build                       # batching on: max_batch_size 32
//   curl -X POST localhost:8000/ -d '{"pixels": [0, 0, 5, 13, ...64 values 0..16]}'
//   curl localhost:8000/stats                    # the batch sizes the model saw
//   curl localhost:8000/accuracy                 # the held-out split through the served model
// Builder args: model=PATH (default: the file built next to this library), batching=false
// (the same model called once per request), max_batch_size=N, batch_wait_timeout_s=S,
// max_ongoing_requests=N. user_config {batching, max_batch_size, batch_wait_timeout_s} applies
// live through reconfigure().
#include <serve/batching.h>
#include <serve/serve.h>

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef DIGITS_MODEL_PATH
#define DIGITS_MODEL_PATH "digits_model.json"
#endif

namespace {

using Pixels = std::vector<float>;

// A dense ReLU network; Predict runs a whole batch as one GEMM per layer.
class Mlp {
 public:
  explicit Mlp(const serve::Json& doc) : scale_(doc.at("input_scale").get<float>()) {
    for (const auto& l : doc.at("layers")) {
      Layer layer;
      layer.in = static_cast<int>(l.at("w").size());
      layer.out = static_cast<int>(l.at("b").size());
      for (const auto& row : l.at("w")) {
        for (const auto& v : row) layer.w.push_back(v.get<float>());
      }
      for (const auto& v : l.at("b")) layer.b.push_back(v.get<float>());
      layers_.push_back(std::move(layer));
    }
    for (const auto& c : doc.at("classes")) classes_.push_back(c.get<int>());
    if (layers_.empty()) throw std::invalid_argument("model has no layers");
  }
  int inputs() const { return layers_.front().in; }

  // `x`: n rows of inputs() raw pixel values. Returns the class of each row.
  std::vector<int> Predict(const std::vector<float>& x, int n) const {
    std::vector<float> a(x.size());
    std::transform(x.begin(), x.end(), a.begin(), [this](float v) { return v * scale_; });
    for (std::size_t k = 0; k < layers_.size(); ++k) {
      const Layer& l = layers_[k];
      std::vector<float> z(static_cast<std::size_t>(n) * l.out);
      for (int r = 0; r < n; ++r) std::copy(l.b.begin(), l.b.end(), z.begin() + r * l.out);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, l.out, l.in, 1.0f, a.data(), l.in,
                  l.w.data(), l.out, 1.0f, z.data(), l.out);
      if (k + 1 < layers_.size()) {
        for (float& v : z) v = std::max(v, 0.0f);
      }
      a = std::move(z);
    }
    const int out = layers_.back().out;
    std::vector<int> labels(n);
    for (int r = 0; r < n; ++r) {
      const float* row = a.data() + static_cast<std::size_t>(r) * out;
      labels[r] = classes_[std::max_element(row, row + out) - row];
    }
    return labels;
  }

 private:
  struct Layer {
    int in = 0, out = 0;
    std::vector<float> w;  // in x out, row-major
    std::vector<float> b;
  };
  float scale_;
  std::vector<Layer> layers_;
  std::vector<int> classes_;
};

serve::Json LoadJson(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open model file " + path + " (run train.py)");
  return serve::Json::parse(f);
}

}  // namespace

class Digits {
 public:
  explicit Digits(std::string model_path)
      : doc_(LoadJson(model_path)),
        mlp_(doc_),
        batch_([this](std::vector<Pixels> xs) { return PredictBatch(xs); },
               {.max_batch_size = 32, .batch_wait_timeout_s = std::chrono::milliseconds(0)}) {}

  void reconfigure(const serve::Json& config) {
    batching_ = config.value("batching", true);
    batch_.set_max_batch_size(config.value("max_batch_size", 32));
    batch_.set_batch_wait_timeout(
        std::chrono::duration<double>(config.value("batch_wait_timeout_s", 0.0)));
  }

  // POST / {"pixels": [64 values 0..16]} -> {"digit": d}; GET /stats, POST /stats/reset,
  // GET /accuracy.
  serve::Task<serve::HttpResponse> operator()(serve::HttpRequest request) {
    std::string path = request.path.substr(std::min(request.path.size(),
                                                    request.route_prefix.size()));
    if (path.empty() || path[0] != '/') path = "/" + path;
    if (path == "/stats") co_return serve::HttpResponse::json(Stats());
    if (path == "/stats/reset") {
      std::lock_guard lock(mu_);
      sizes_.clear();
      co_return serve::HttpResponse::json({{"reset", true}});
    }
    if (path == "/accuracy") co_return serve::HttpResponse::json(Accuracy());
    Pixels pixels;
    try {
      pixels = request.json().at("pixels").get<Pixels>();
    } catch (const std::exception& e) {
      co_return serve::HttpResponse::text(std::string("expected {\"pixels\": [...]}: ") + e.what(),
                                          400);
    }
    if (static_cast<int>(pixels.size()) != mlp_.inputs()) {
      co_return serve::HttpResponse::text(
          "expected " + std::to_string(mlp_.inputs()) + " pixels, got " +
              std::to_string(pixels.size()), 400);
    }
    int digit;
    if (batching_) {
      digit = co_await batch_(std::move(pixels));
    } else {
      std::vector<Pixels> one;
      one.push_back(std::move(pixels));
      digit = PredictBatch(one)[0];
    }
    co_return serve::HttpResponse::json({{"digit", digit}});
  }

 private:
  std::vector<int> PredictBatch(const std::vector<Pixels>& xs) {
    std::vector<float> x;
    x.reserve(xs.size() * mlp_.inputs());
    for (const auto& p : xs) x.insert(x.end(), p.begin(), p.end());
    auto labels = mlp_.Predict(x, static_cast<int>(xs.size()));
    std::lock_guard lock(mu_);
    if (sizes_.size() < 100000) sizes_.push_back(static_cast<int>(xs.size()));
    return labels;
  }

  serve::Json Stats() {
    std::lock_guard lock(mu_);
    int requests = 0;
    for (int s : sizes_) requests += s;
    return {{"batch_sizes", sizes_},
            {"batches", sizes_.size()},
            {"requests", requests},
            {"batching", batching_.load()},
            {"max_batch_size", batch_.max_batch_size()},
            {"batch_wait_timeout_s", batch_.batch_wait_timeout_s()}};
  }

  // The held-out split as one batch, straight through the model.
  serve::Json Accuracy() const {
    const auto& test = doc_.at("test");
    std::vector<float> x;
    for (const auto& row : test.at("x")) {
      for (const auto& v : row) x.push_back(v.get<float>());
    }
    const auto& y = test.at("y");
    auto labels = mlp_.Predict(x, static_cast<int>(y.size()));
    int correct = 0;
    for (std::size_t i = 0; i < labels.size(); ++i) correct += labels[i] == y[i].get<int>();
    double accuracy = labels.empty() ? 0.0 : static_cast<double>(correct) / labels.size();
    return {{"accuracy", accuracy},
            {"n", labels.size()},
            {"trainer_accuracy", doc_.value("trainer_accuracy", 0.0)}};
  }

  serve::Json doc_;
  Mlp mlp_;
  serve::Batcher<Pixels, int> batch_;
  std::atomic<bool> batching_{true};
  std::mutex mu_;
  std::vector<int> sizes_;  // size of every batch run, in order
};
SERVE_DEPLOYMENT(Digits);

serve::Application build(const serve::Args& args) {
  std::string batching = args.get("batching", "true");
  return serve::deployment<Digits>(
             {.max_ongoing_requests = std::stoi(args.get("max_ongoing_requests", "128")),
              .user_config = serve::Json{
                  {"batching", batching == "true" || batching == "1"},
                  {"max_batch_size", std::stoi(args.get("max_batch_size", "32"))},
                  {"batch_wait_timeout_s", std::stod(args.get("batch_wait_timeout_s", "0"))}}})
      .bind(args.get("model", DIGITS_MODEL_PATH));
}
SERVE_APP_BUILDER(build);
