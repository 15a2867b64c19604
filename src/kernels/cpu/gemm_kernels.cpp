/*
 * CPU GEMM code object: blocked and small (unpacked) single-precision GEMM.
 * Built once per ISA variant (generic / avx2 / avx512) from the same source.
 */
#include "kernel_abi.h"
#include "sgemm.hpp"

namespace {

inline pask_cpu::GemmEpilogue make_epilogue(const pask_cpu_gemm_args *args) {
    pask_cpu::GemmEpilogue ep;
    ep.alpha = args->ep.alpha;
    ep.beta = args->ep.beta;
    ep.activation = args->ep.activation;
    ep.act_params[0] = args->ep.act_params[0];
    ep.act_params[1] = args->ep.act_params[1];
    ep.bias_n = args->bias;
    return ep;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) uint32_t pask_cpu_abi_version(void) {
    return PASK_CPU_ABI_VERSION;
}

extern "C" __attribute__((visibility("default"))) int pask_gemm_blocked_f32(
    const pask_cpu_runtime *rt, const pask_cpu_gemm_args *args) {
    const pask_cpu::GemmEpilogue ep = make_epilogue(args);
    return pask_cpu::sgemm(rt, args->trans_a != 0, args->trans_b != 0, args->m, args->n, args->k,
                           args->a, args->lda, args->b, args->ldb, args->c, args->ldc, ep);
}

extern "C" __attribute__((visibility("default"))) int pask_gemm_small_f32(
    const pask_cpu_runtime *rt, const pask_cpu_gemm_args *args) {
    const pask_cpu::GemmEpilogue ep = make_epilogue(args);
    return pask_cpu::sgemm_small(rt, args->trans_a != 0, args->trans_b != 0, args->m, args->n,
                                 args->k, args->a, args->lda, args->b, args->ldb, args->c, args->ldc,
                                 ep);
}
