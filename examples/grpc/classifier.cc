// gRPC ingress ("Set Up a gRPC Service"): imageclassifier.ImageClassificationService served by
// the proxy's gRPC port. ImageClassifier calls ImageDownloader through a handle, then scores the
// image's bytes against a few brightness classes. See README.md for running it.
#include <serve/grpc.h>
#include <serve/serve.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "image_classifier.pb.h"

// Fetches an image's bytes (file:// URLs and plain paths).
class ImageDownloader {
 public:
  std::string download(std::string url) {
    if (url.rfind("file://", 0) == 0) url = url.substr(7);
    std::ifstream in(url, std::ios::binary);
    if (!in) throw std::invalid_argument("cannot read image '" + url + "'");
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
};
SERVE_DEPLOYMENT(ImageDownloader, SERVE_METHOD(&ImageDownloader::download));

class ImageClassifier {
 public:
  explicit ImageClassifier(serve::Handle<ImageDownloader> downloader)
      : downloader_(std::move(downloader)) {}

  serve::Task<imageclassifier::ImageClass> Predict(imageclassifier::ImageData image,
                                                   serve::GrpcContext& ctx) {
    if (image.url().empty()) {
      ctx.set_code(serve::GrpcStatusCode::kInvalidArgument);
      ctx.set_details("url is required");
      co_return imageclassifier::ImageClass{};
    }
    std::string bytes = co_await downloader_.call<&ImageDownloader::download>(image.url());
    serve::logger().info("classified " + image.filename());
    co_return Classify(bytes);
  }

  serve::Stream<imageclassifier::ImageClass> PredictStream(const imageclassifier::ImageData& image) {
    imageclassifier::ImageClass all =
        Classify(downloader_.call<&ImageDownloader::download>(image.url()).result());
    for (int i = 0; i < all.classes_size(); ++i) {
      imageclassifier::ImageClass one;
      one.add_classes(all.classes(i));
      one.add_probabilities(all.probabilities(i));
      co_yield one;
    }
  }

 private:
  // The "model": a softmax over how close the mean byte value is to each class's centre.
  static imageclassifier::ImageClass Classify(const std::string& bytes) {
    static const std::vector<std::pair<std::string, double>> kClasses = {
        {"dark", 32}, {"dim", 96}, {"bright", 160}, {"white", 224}};
    double mean = bytes.empty() ? 0
                                : std::accumulate(bytes.begin(), bytes.end(), 0.0,
                                                  [](double s, char c) {
                                                    return s + static_cast<unsigned char>(c);
                                                  }) / static_cast<double>(bytes.size());
    std::vector<double> score;
    for (const auto& [name, centre] : kClasses) score.push_back(std::exp(-std::abs(mean - centre) / 32));
    double total = std::accumulate(score.begin(), score.end(), 0.0);
    std::vector<size_t> order(kClasses.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return score[a] > score[b]; });
    imageclassifier::ImageClass out;
    for (size_t i : order) {
      out.add_classes(kClasses[i].first);
      out.add_probabilities(static_cast<float>(score[i] / total));
    }
    return out;
  }

  serve::Handle<ImageDownloader> downloader_;
};
SERVE_DEPLOYMENT(ImageClassifier, SERVE_GRPC_METHOD(&ImageClassifier::Predict),
                 SERVE_GRPC_METHOD(&ImageClassifier::PredictStream));

SERVE_APP(app, serve::deployment<ImageClassifier>().bind(serve::deployment<ImageDownloader>().bind()));
