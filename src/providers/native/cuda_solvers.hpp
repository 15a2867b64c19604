// The native provider's CUDA solvers: paskdnn's own kernels (src/kernels/cuda).
#pragma once

#include "../../core/solver.hpp"

namespace pask::native::cuda {

extern const Solver &conv2d_igemm;
extern const Solver &conv2d_igemm_fixed;
extern const Solver &conv2d_depthwise;
extern const Solver &gemm_tc;
extern const Solver &pool2d_direct;
extern const Solver &pool2d_global_avg;
extern const Solver &eltwise;
extern const Solver &cat;

}  // namespace pask::native::cuda
