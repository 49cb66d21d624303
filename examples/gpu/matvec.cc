// The GPU example: a deployment that computes a batched matrix-vector product with a CUDA
// kernel when its replica sees a GPU, and on the CPU otherwise, with the same result
// (README.md). Each replica asks for a share of a GPU (ray_actor_options num_gpus); the
// scheduler assigns it device ids, which reach it as CUDA_VISIBLE_DEVICES and
// serve::get_replica_context().gpu_ids.
//   serve run examples/gpu/config.yaml --app-dir build/examples/gpu --num-gpus 2
//   curl -s localhost:8000/ -d '{"matrix": [[1, 2], [3, 4]], "vectors": [[1, 1], [0, 1]]}'
//   {"device":"cpu","results":[[3.0,7.0],[2.0,4.0]],...}
#include <serve/serve.h>

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "matvec.h"

namespace {

constexpr int kMaxDim = 4096;  // rows, columns and vectors per request

/// Row-major float copy of a JSON array of `n` equal-length arrays of numbers; sets `cols`.
std::vector<float> Rows(const serve::Json& j, const char* field, int& n, int& cols) {
  if (!j.is_array() || j.empty() || j.size() > kMaxDim) {
    throw std::invalid_argument(std::string(field) + ": must be a non-empty array of at most " +
                                std::to_string(kMaxDim) + " arrays");
  }
  n = static_cast<int>(j.size());
  cols = j[0].is_array() ? static_cast<int>(j[0].size()) : 0;
  if (cols == 0 || cols > kMaxDim) {
    throw std::invalid_argument(std::string(field) + ": rows must be non-empty arrays of at most " +
                                std::to_string(kMaxDim) + " numbers");
  }
  std::vector<float> out;
  out.reserve(static_cast<size_t>(n) * static_cast<size_t>(cols));
  for (const auto& row : j) {
    if (!row.is_array() || static_cast<int>(row.size()) != cols) {
      throw std::invalid_argument(std::string(field) + ": every row must have " +
                                  std::to_string(cols) + " numbers");
    }
    for (const auto& v : row) {
      if (!v.is_number()) throw std::invalid_argument(std::string(field) + ": not a number");
      out.push_back(v.get<float>());
    }
  }
  return out;
}

}  // namespace

class MatVec {
 public:
  MatVec() {
#if MATVEC_WITH_CUDA
    matvec::CudaDevices d = matvec::ProbeCuda();
    gpu_ = d.count > 0;
    gpu_name_ = d.name;
    cpu_reason_ = d.error;
#else
    cpu_reason_ = "built without CUDA (nvcc was not found at build time)";
#endif
    serve::logger().info(gpu_ ? "Computing on cuda:0 (" + gpu_name_ + ")"
                              : "Computing on the CPU: " + cpu_reason_);
  }

  // GET: which device this replica uses. POST {"matrix": [[...], ...], "vectors": [[...], ...]}:
  // {"results": [A·x for each x], "device": ...}. ?device=cpu forces the CPU path.
  serve::HttpResponse operator()(const serve::HttpRequest& request) {
    serve::Json out = Describe();
    if (request.method != "POST") return serve::HttpResponse::json(out);
    int rows = 0, cols = 0, batch = 0, vcols = 0;
    std::vector<float> a, x;
    try {
      serve::Json body = request.json();
      a = Rows(body.value("matrix", serve::Json()), "matrix", rows, cols);
      x = Rows(body.value("vectors", serve::Json()), "vectors", batch, vcols);
      if (vcols != cols) {
        throw std::invalid_argument("vectors: need " + std::to_string(cols) +
                                    " numbers each (the matrix's columns)");
      }
    } catch (const std::exception& e) {
      return serve::HttpResponse::json({{"error", e.what()}}, 400);
    }
    std::vector<float> y(static_cast<size_t>(batch) * static_cast<size_t>(rows));
    bool on_gpu = gpu_ && request.query("device") != "cpu";
#if MATVEC_WITH_CUDA
    if (on_gpu) {
      std::string err = matvec::MatVecCuda(a.data(), x.data(), y.data(), rows, cols, batch);
      if (!err.empty()) return serve::HttpResponse::json({{"error", err}}, 500);
    }
#endif
    if (!on_gpu) matvec::MatVecCpu(a.data(), x.data(), y.data(), rows, cols, batch);
    serve::Json results = serve::Json::array();
    for (int b = 0; b < batch; ++b) {
      auto first = y.begin() + static_cast<long>(b) * rows;
      results.push_back(std::vector<float>(first, first + rows));
    }
    out["device"] = on_gpu ? "cuda:0" : "cpu";
    out["results"] = std::move(results);
    return serve::HttpResponse::json(out);
  }

 private:
  /// The replica's placement and the device it computes on.
  serve::Json Describe() const {
    const serve::ReplicaContext& ctx = serve::get_replica_context();
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    serve::Json j = {{"device", gpu_ ? "cuda:0" : "cpu"},
                     {"built_with_cuda", MATVEC_WITH_CUDA != 0},
                     {"gpu_ids", ctx.gpu_ids},
                     {"cuda_visible_devices", visible ? serve::Json(visible) : serve::Json()},
                     {"replica_id", ctx.replica_id},
                     {"node_id", ctx.node_id}};
    if (gpu_) j["gpu_name"] = gpu_name_;
    if (!gpu_) j["cpu_reason"] = cpu_reason_;
    return j;
  }

  bool gpu_ = false;
  std::string gpu_name_;
  std::string cpu_reason_;
};
SERVE_DEPLOYMENT(MatVec);

// serve run matvec:build [replicas=3] [num_gpus=0.5] [num_cpus=0.5]: each replica reserves
// num_gpus of one device (fractions of a device share it) and num_cpus.
serve::Application build(const serve::Args& args) {
  return serve::deployment<MatVec>(
             {.num_replicas = std::stoi(args.get("replicas", "3")),
              .ray_actor_options = serve::ActorOptions{
                  .num_cpus = std::stod(args.get("num_cpus", "0.5")),
                  .num_gpus = std::stod(args.get("num_gpus", "0.5"))}})
      .bind();
}
SERVE_APP_BUILDER(build);
