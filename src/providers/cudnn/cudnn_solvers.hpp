// The cuDNN provider's solvers (see cudnn_provider.hpp).
#pragma once

#include "../../core/solver.hpp"

namespace pask::cudnn {

extern const Solver &conv2d_cudnn;      // precompiled engines, heuristics' first that finalises
extern const Solver &conv2d_cudnn_rtc;  // runtime-compiled fusion engines (conv + epilogue)
extern const Solver &gemm_cudnn;
extern const Solver &pool2d_cudnn;
// the heuristics' second and third precompiled configurations: alternatives
// the device-timed runs can pick over the first
extern const Solver &conv2d_cudnn_h1;
extern const Solver &conv2d_cudnn_h2;
extern const Solver &gemm_cudnn_h1;
extern const Solver &gemm_cudnn_rtc;  // runtime-compiled fusion engines (matmul + epilogue)

}  // namespace pask::cudnn
