// The CUDA side of the batched matrix-vector product (matvec.h): one thread per output
// element, the same order of operations as MatVecCpu.
#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "matvec.h"

namespace matvec {
namespace {

__global__ void MatVecKernel(const float* a, const float* x, float* y, int rows, int cols,
                             int batch) {
  int r = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  int b = static_cast<int>(blockIdx.y);
  if (r >= rows || b >= batch) return;
  const float* row = a + static_cast<size_t>(r) * cols;
  const float* v = x + static_cast<size_t>(b) * cols;
  float sum = 0.0f;
  for (int c = 0; c < cols; ++c) sum = __fadd_rn(sum, __fmul_rn(row[c], v[c]));
  y[static_cast<size_t>(b) * rows + r] = sum;
}

std::string Error(const char* call, cudaError_t e) {
  return std::string(call) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

/// A device buffer freed on scope exit.
struct DeviceBuffer {
  float* ptr = nullptr;
  ~DeviceBuffer() {
    if (ptr != nullptr) cudaFree(ptr);
  }
};

}  // namespace

CudaDevices ProbeCuda() {
  CudaDevices d;
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    d.error = Error("cudaGetDeviceCount", e);
    return d;
  }
  if (n <= 0) {
    d.error = "cudaGetDeviceCount: no device";
    return d;
  }
  cudaDeviceProp prop{};
  if ((e = cudaGetDeviceProperties(&prop, 0)) != cudaSuccess) {
    d.error = Error("cudaGetDeviceProperties", e);
    return d;
  }
  d.count = n;
  d.name = prop.name;
  return d;
}

std::string MatVecCuda(const float* a, const float* x, float* y, int rows, int cols,
                       int batch) {
  size_t a_bytes = sizeof(float) * static_cast<size_t>(rows) * cols;
  size_t x_bytes = sizeof(float) * static_cast<size_t>(batch) * cols;
  size_t y_bytes = sizeof(float) * static_cast<size_t>(batch) * rows;
  DeviceBuffer da, dx, dy;
  cudaError_t e;
  if ((e = cudaMalloc(&da.ptr, a_bytes)) != cudaSuccess) return Error("cudaMalloc", e);
  if ((e = cudaMalloc(&dx.ptr, x_bytes)) != cudaSuccess) return Error("cudaMalloc", e);
  if ((e = cudaMalloc(&dy.ptr, y_bytes)) != cudaSuccess) return Error("cudaMalloc", e);
  if ((e = cudaMemcpy(da.ptr, a, a_bytes, cudaMemcpyHostToDevice)) != cudaSuccess) {
    return Error("cudaMemcpy", e);
  }
  if ((e = cudaMemcpy(dx.ptr, x, x_bytes, cudaMemcpyHostToDevice)) != cudaSuccess) {
    return Error("cudaMemcpy", e);
  }
  constexpr int kThreads = 128;
  dim3 grid(static_cast<unsigned>((rows + kThreads - 1) / kThreads), static_cast<unsigned>(batch));
  MatVecKernel<<<grid, kThreads>>>(da.ptr, dx.ptr, dy.ptr, rows, cols, batch);
  if ((e = cudaGetLastError()) != cudaSuccess) return Error("kernel launch", e);
  // Waits for the kernel (same stream) and reports its errors.
  if ((e = cudaMemcpy(y, dy.ptr, y_bytes, cudaMemcpyDeviceToHost)) != cudaSuccess) {
    return Error("cudaMemcpy", e);
  }
  return "";
}

}  // namespace matvec
