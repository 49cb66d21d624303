#pragma once

// The computation of the GPU example: a batched matrix-vector product in float32,
// y_b = A · x_b for each vector x_b. Both implementations sum over the columns in increasing
// order with a separate multiply and add (no fused multiply-add: matvec_cpu.cc is compiled with
// -ffp-contract=off, the kernel uses __fmul_rn/__fadd_rn), so the CUDA kernel and the CPU
// fallback give bit-identical results.

#include <string>

namespace matvec {

/// y[b*rows + r] = Σ_c a[r*cols + c] · x[b*cols + c], for r < rows, b < batch.
void MatVecCpu(const float* a, const float* x, float* y, int rows, int cols, int batch);

#if MATVEC_WITH_CUDA
/// What the CUDA runtime sees in this process (after CUDA_VISIBLE_DEVICES).
struct CudaDevices {
  int count = 0;      ///< usable devices; 0 when the runtime reports an error
  std::string name;   ///< device 0's name
  std::string error;  ///< why count is 0 ("cudaGetDeviceCount: cudaErrorNoDevice ...")
};
CudaDevices ProbeCuda();

/// MatVecCpu on CUDA device 0 (copies in, one kernel launch, copies out). Returns "" on
/// success, else the failing call and its CUDA error.
std::string MatVecCuda(const float* a, const float* x, float* y, int rows, int cols, int batch);
#endif

}  // namespace matvec
