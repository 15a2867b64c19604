// The native provider's CPU solvers. Each one is a stateless const object whose
// kernels live in host code objects under src/kernels/cpu/.
#pragma once

#include "../../core/solver.hpp"

namespace pask::native::cpu {

extern const Solver &conv2d_direct;
extern const Solver &conv2d_im2col_gemm;
extern const Solver &conv2d_gemm_1x1;
extern const Solver &conv2d_depthwise;
extern const Solver &conv2d_few_channels;
extern const Solver &conv2d_implicit_gemm_nhwc;
extern const Solver &conv2d_indirect_gemm_nhwc;
extern const Solver &gemm_blocked;
extern const Solver &gemm_small;
extern const Solver &pool2d_direct;
extern const Solver &pool2d_global_avg;
extern const Solver &eltwise;
extern const Solver &cat;

}  // namespace pask::native::cpu
