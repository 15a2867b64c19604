// The native provider's HIP solvers: paskdnn's own kernels (src/kernels/cuda,
// compiled for AMD GPUs by hiprtc through their portable PASK_HIP path).
#pragma once

#include "../../core/solver.hpp"

namespace pask::native::hip {

extern const Solver &conv2d_igemm;
extern const Solver &conv2d_depthwise;
extern const Solver &gemm;
extern const Solver &pool2d_direct;
extern const Solver &pool2d_global_avg;
extern const Solver &eltwise;
extern const Solver &cat;

}  // namespace pask::native::hip
