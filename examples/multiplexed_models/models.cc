// Model multiplexing on real models: one gradient-boosted model per customer (XGBoost, trained
// by train.py on scikit-learn's bundled data sets), loaded by id into a per-replica LRU of
// serve::Multiplexed. Requests name their model in the `serve_multiplexed_model_id` header;
// routers send them to a replica that already holds it.
//
//   POST / {"features": [[...], ...]}   -> {"model", "replica", "predictions", "hit", "loads"}
//   GET  /stats                         -> {"replica", "loads", "unloads", "models"}
//
// `predictions` has one entry per row: a probability (cancer), class probabilities (wine,
// iris) or a value (diabetes). `hit` says whether the model was loaded here already.

#include <xgboost/c_api.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <serve/multiplex.h>
#include <serve/serve.h>

namespace {

void Check(int rc, const char* what) {
  if (rc != 0) throw std::runtime_error(std::string(what) + ": " + XGBGetLastError());
}

// Boosters are created, loaded and freed one at a time (XGBoost documents thread safety for
// prediction, not for these).
std::mutex xgboost_lifecycle;

/// One XGBoost model loaded from its JSON file; Predict is serialized per model.
class Booster {
 public:
  explicit Booster(const std::string& path) {
    std::lock_guard lock(xgboost_lifecycle);
    Check(XGBoosterCreate(nullptr, 0, &handle_), "XGBoosterCreate");
    try {
      Check(XGBoosterLoadModel(handle_, path.c_str()), ("cannot load " + path).c_str());
      Check(XGBoosterSetParam(handle_, "nthread", "1"), "XGBoosterSetParam");
      bst_ulong n = 0;
      Check(XGBoosterGetNumFeature(handle_, &n), "XGBoosterGetNumFeature");
      num_features_ = static_cast<size_t>(n);
    } catch (...) {
      XGBoosterFree(handle_);
      throw;
    }
  }
  ~Booster() {
    std::lock_guard lock(xgboost_lifecycle);
    XGBoosterFree(handle_);
  }
  Booster(const Booster&) = delete;
  Booster& operator=(const Booster&) = delete;

  /// One output row per input row (1 value, or one per class).
  serve::Json Predict(const serve::Json& rows) {
    std::vector<float> x;
    size_t n = rows.size();
    for (const auto& row : rows) {
      if (!row.is_array() || row.size() != num_features_) {
        throw std::invalid_argument("each row needs " + std::to_string(num_features_) +
                                    " features");
      }
      for (const auto& v : row) x.push_back(v.get<float>());
    }
    std::lock_guard lock(mu_);
    DMatrixHandle m = nullptr;
    Check(XGDMatrixCreateFromMat(x.data(), n, num_features_, -1e30f, &m), "XGDMatrixCreateFromMat");
    bst_ulong len = 0;
    const float* out = nullptr;
    int rc = XGBoosterPredict(handle_, m, 0, 0, 0, &len, &out);
    if (rc != 0) {
      XGDMatrixFree(m);
      Check(rc, "XGBoosterPredict");
    }
    serve::Json result = serve::Json::array();
    size_t per_row = n == 0 ? 0 : len / n;
    for (size_t r = 0; r < n; ++r) {
      if (per_row == 1) {
        result.push_back(out[r]);
      } else {
        result.push_back(std::vector<float>(out + r * per_row, out + (r + 1) * per_row));
      }
    }
    XGDMatrixFree(m);
    return result;
  }

 private:
  BoosterHandle handle_ = nullptr;
  size_t num_features_ = 0;
  std::mutex mu_;
};

/// Model ids are file names in the models directory: letters, digits, '-' and '_' only.
bool ValidId(const std::string& id) {
  if (id.empty()) return false;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  }
  return true;
}

}  // namespace

class CustomerModels {
 public:
  /// `max_models`: models per replica (−1: unlimited). `load_delay_ms` stands in for fetching
  /// a large model (0 in the example; the benchmark sets it).
  CustomerModels(std::string models_dir, int max_models, int load_delay_ms)
      : dir_(std::move(models_dir)),
        delay_(load_delay_ms),
        models_(
            [this](const std::string& id) -> serve::Task<std::shared_ptr<Booster>> {
              if (delay_.count() > 0) co_await serve::sleep_for(delay_);
              co_return std::make_shared<Booster>(dir_ + "/" + id + ".json");
            },
            max_models,
            [](const std::string& id, Booster&) {
              serve::logger().info("evicting model " + id);
            }) {}

  serve::Task<serve::HttpResponse> operator()(serve::HttpRequest request) {
    std::string path = request.path.substr(std::min(request.path.size(),
                                                    request.route_prefix.size()));
    if (path.empty() || path[0] != '/') path = "/" + path;
    const std::string& replica = serve::get_replica_context().replica_id;
    if (path == "/stats") {
      co_return serve::HttpResponse::json({{"replica", replica},
                                           {"loads", models_.num_loads()},
                                           {"unloads", models_.num_unloads()},
                                           {"models", models_.model_ids()}});
    }
    std::string id = serve::get_multiplexed_model_id();
    if (!ValidId(id)) {
      co_return serve::HttpResponse::text(
          "set the serve_multiplexed_model_id header to a model id (cancer, wine, iris, "
          "diabetes)\n", 400);
    }
    serve::Json rows;
    try {
      rows = request.json().at("features");
    } catch (const std::exception& e) {
      co_return serve::HttpResponse::text(std::string("expected {\"features\": [[...]]}: ") +
                                          e.what() + "\n", 400);
    }
    auto held = models_.model_ids();
    bool hit = std::find(held.begin(), held.end(), id) != held.end();
    std::shared_ptr<Booster> model;
    try {
      model = co_await models_.get(id);
    } catch (const std::exception& e) {
      co_return serve::HttpResponse::text("no model '" + id + "': " + e.what() + "\n", 404);
    }
    serve::Json predictions;
    try {
      predictions = model->Predict(rows);
    } catch (const std::invalid_argument& e) {
      co_return serve::HttpResponse::text(std::string(e.what()) + "\n", 400);
    }
    co_return serve::HttpResponse::json({{"model", id},
                                         {"replica", replica},
                                         {"predictions", predictions},
                                         {"hit", hit},
                                         {"loads", models_.num_loads()}});
  }

 private:
  std::string dir_;
  std::chrono::milliseconds delay_;
  serve::Multiplexed<Booster> models_;
};
SERVE_DEPLOYMENT(CustomerModels);

serve::Application build(const serve::Args& args) {
  return serve::deployment<CustomerModels>(
             {.num_replicas = std::stoi(args.get("num_replicas", "2")),
              .max_ongoing_requests = std::stoi(args.get("max_ongoing_requests", "64"))})
      .bind(args.get("models_dir", MULTIPLEXED_MODELS_DIR),
            std::stoi(args.get("max_models", "2")), std::stoi(args.get("load_delay_ms", "0")));
}
SERVE_APP_BUILDER(build);
