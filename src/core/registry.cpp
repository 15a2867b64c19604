#include "registry.hpp"

#include "../providers/native/cpu_solvers.hpp"
#include "../providers/native/cuda_solvers.hpp"
#include "../providers/cudnn/cudnn_solvers.hpp"
#include "../providers/miopen/miopen_solvers.hpp"
#include "../providers/native/hip_solvers.hpp"

namespace pask {

// The solver table. Ids are append-only and never reused: recorded hints,
// persisted load costs and traces refer to them. To retire a solver, delete its
// row and leave a comment with its id ("// 9 removed: ...").
const std::vector<const Solver *> &all_solvers() {
    static const std::vector<const Solver *> table = {
        &native::cpu::conv2d_direct,       // 1  conv2d.direct       any conv, reference-grade loops
        &native::cpu::conv2d_im2col_gemm,  // 2  conv2d.im2col_gemm  any conv, im2col + blocked GEMM
        &native::cpu::conv2d_gemm_1x1,     // 3  conv2d.gemm_1x1     1x1, stride 1, no padding: one GEMM
        &native::cpu::conv2d_depthwise,    // 4  conv2d.depthwise    groups == C, O multiple of C
        &native::cpu::gemm_blocked,        // 5  gemm.blocked        packed, register-blocked GEMM
        &native::cpu::gemm_small,          // 6  gemm.small          unpacked, for M or N <= 8 (GEMV)
        &native::cpu::pool2d_direct,       // 7  pool2d.direct       max/avg, every parameter
        &native::cpu::pool2d_global_avg,   // 8  pool2d.global_avg   average over the whole plane
        &native::cuda::conv2d_igemm,       // 9  conv2d.cuda_igemm        any conv, implicit GEMM on tensor cores
        &native::cuda::conv2d_igemm_fixed, // 10 conv2d.cuda_igemm_fixed  same, window geometry compiled in (NVRTC)
        &native::cuda::conv2d_depthwise,   // 11 conv2d.cuda_depthwise    groups == C
        &native::cuda::gemm_tc,            // 12 gemm.cuda_tc             tensor-core GEMM
        &native::cuda::pool2d_direct,      // 13 pool2d.cuda_direct       max/avg, every parameter
        &native::cuda::pool2d_global_avg,  // 14 pool2d.cuda_global_avg   average over the whole plane
        &cudnn::conv2d_cudnn,              // 15 conv2d.cudnn             cuDNN graph API, precompiled engines
        &cudnn::conv2d_cudnn_rtc,          // 16 conv2d.cudnn_rtc         cuDNN runtime-compiled fusion (conv + epilogue)
        &cudnn::gemm_cudnn,                // 17 gemm.cudnn               cuDNN matmul graph
        &cudnn::pool2d_cudnn,              // 18 pool2d.cudnn             cudnnPoolingForward
        &native::hip::conv2d_igemm,        // 19 conv2d.hip_igemm         any conv, implicit GEMM (portable FMA path, hiprtc)
        &native::hip::conv2d_depthwise,    // 20 conv2d.hip_depthwise     groups == C
        &native::hip::gemm,                // 21 gemm.hip                 tiled GEMM (portable FMA path)
        &native::hip::pool2d_direct,       // 22 pool2d.hip_direct        max/avg, every parameter
        &native::hip::pool2d_global_avg,   // 23 pool2d.hip_global_avg    average over the whole plane
        &miopen::conv2d_miopen,            // 24 conv2d.miopen            MIOpen immediate mode, first-ranked solution
        &miopen::conv2d_miopen_alt,        // 25 conv2d.miopen_alt        MIOpen immediate mode, second-ranked solution
        &miopen::pool2d_miopen,            // 26 pool2d.miopen            miopenPoolingForward
        &cudnn::conv2d_cudnn_h1,           // 27 conv2d.cudnn_h1          the heuristics' 2nd precompiled configuration
        &cudnn::conv2d_cudnn_h2,           // 28 conv2d.cudnn_h2          ... 3rd
        &cudnn::gemm_cudnn_h1,             // 29 gemm.cudnn_h1            matmul, 2nd configuration
    };
    return table;
}

const Solver *find_solver(const std::string &name) {
    for (const Solver *s : all_solvers())
        if (name == s->name()) return s;
    return nullptr;
}

}  // namespace pask
