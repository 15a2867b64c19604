// The cuDNN provider's solvers (see cudnn_provider.hpp).
#pragma once

#include "../../core/solver.hpp"

namespace pask::cudnn {

extern const Solver &conv2d_cudnn;      // precompiled engines, heuristics' first that finalises
extern const Solver &conv2d_cudnn_rtc;  // runtime-compiled fusion engines (conv + epilogue)
extern const Solver &gemm_cudnn;
extern const Solver &pool2d_cudnn;

}  // namespace pask::cudnn
