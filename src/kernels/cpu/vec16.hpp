// 16-float vectors for the CPU kernels, through GCC/Clang vector extensions:
// one zmm on the AVX-512 build, two ymm on AVX2, four xmm on the generic one,
// from the same source. Include after common.hpp; internal linkage.
#pragma once

#include "common.hpp"

// The helpers below take and return 64-byte vectors; they are inlined
// (internal linkage), so the AVX-512 calling convention GCC warns about for
// the narrower builds never meets another translation unit.
#pragma GCC diagnostic ignored "-Wpsabi"

// On a function whose short element loops GCC would otherwise turn into
// memcpy / memset calls, which cost more than the copies on rows of a few
// columns.
#if defined(__GNUC__) && !defined(__clang__)
#define PASK_NO_MEMCALLS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define PASK_NO_MEMCALLS
#endif

namespace {

typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));
constexpr int64_t V = 16;  // floats in a vf

__attribute__((always_inline)) inline vf loadu(const float *p) {
    vf v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}
__attribute__((always_inline)) inline void storeu(float *p, const vf &v) { __builtin_memcpy(p, &v, sizeof v); }
__attribute__((always_inline)) inline vf splat(float x) { return vf{} + x; }

// The epilogue (common.hpp's finish) on 16 lanes: act(alpha*acc + bias +
// residual [+ beta*before]). relu / relu6 keep finish's NaN rule (a NaN fails
// both tests and stays NaN); the other activations go lane by lane through
// activation.hpp, as every CPU kernel does.
__attribute__((always_inline)) inline vf finish_vec(const vf &acc, const pask_cpu_epilogue &ep, const vf &before,
                                                    const vf &bias, const vf &residual) {
    vf v = splat(ep.alpha) * acc + bias + residual;
    if (ep.beta != 0.f) v += splat(ep.beta) * before;
    const vf zero{};
    switch (ep.activation) {
    case PASK_CPU_ACT_NONE:
        return v;
    case PASK_CPU_ACT_RELU:
        return v < zero ? zero : v;
    case PASK_CPU_ACT_RELU6: {
        const vf six = splat(6.f);
        const vf t = v > six ? six : v;
        return v < zero ? zero : t;
    }
    default:
        for (int i = 0; i < V; ++i) v[i] = apply_act(v[i], ep.activation, ep.act_params);
        return v;
    }
}

// y[0, n) = finish(acc, ...) with one bias b for the whole span (an NCHW
// plane's); before is y itself. acc holds whole vectors; a last partial one
// goes through a padded copy of y and the residual, so every column takes the
// vector epilogue.
PASK_NO_MEMCALLS void finish_row(const float *acc, int64_t n, float *y, const pask_cpu_epilogue &ep, float b,
                                 const float *res) {
    const vf bv = splat(b);
    int64_t i = 0;
    for (; i + V <= n; i += V) {
        const vf before = ep.beta != 0.f ? loadu(y + i) : vf{};
        const vf rv = res ? loadu(res + i) : vf{};
        storeu(y + i, finish_vec(loadu(acc + i), ep, before, bv, rv));
    }
    if (i < n) {  // short element loops, not memcpy calls: rows of a few columns end here every time
        const int64_t m = n - i;
        float yb[V] = {}, rb[V] = {};
        if (ep.beta != 0.f)
            for (int64_t k = 0; k < m; ++k) yb[k] = y[i + k];
        if (res)
            for (int64_t k = 0; k < m; ++k) rb[k] = res[i + k];
        const vf v = finish_vec(loadu(acc + i), ep, loadu(yb), bv, loadu(rb));
        for (int64_t k = 0; k < m; ++k) y[i + k] = v[k];
    }
}

}  // namespace
