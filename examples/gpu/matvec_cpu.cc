// The CPU side of the batched matrix-vector product (matvec.h). Compiled with
// -ffp-contract=off so that the compiler never fuses the multiply and the add.
#include <cstddef>

#include "matvec.h"

namespace matvec {

void MatVecCpu(const float* a, const float* x, float* y, int rows, int cols, int batch) {
  for (int b = 0; b < batch; ++b) {
    const float* v = x + static_cast<size_t>(b) * static_cast<size_t>(cols);
    for (int r = 0; r < rows; ++r) {
      const float* row = a + static_cast<size_t>(r) * static_cast<size_t>(cols);
      float sum = 0.0f;
      for (int c = 0; c < cols; ++c) sum = sum + row[c] * v[c];
      y[static_cast<size_t>(b) * static_cast<size_t>(rows) + static_cast<size_t>(r)] = sum;
    }
  }
}

}  // namespace matvec
