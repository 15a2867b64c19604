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
// The build's native vector (one zmm, ymm or xmm) and how many of them a vf
// takes. Code that keeps many sums in registers (16 of them on AVX2 and SSE,
// 32 on AVX-512) works on vnat: the depthwise kernels, the NHWC max pool and
// finish_row below.
#if defined(__AVX512F__)
typedef float vnat __attribute__((vector_size(64)));
#elif defined(__AVX__)
typedef float vnat __attribute__((vector_size(32)));
#else
typedef float vnat __attribute__((vector_size(16)));
#endif
constexpr int kVfRegs = int(sizeof(vf) / sizeof(vnat));
constexpr int64_t VN = int64_t(sizeof(vnat) / sizeof(float));  // floats in a vnat
union vf_parts {
    vf v;
    vnat p[kVfRegs];
};

// f on each native part of a and b. GCC (12) lowers a comparison or a
// select (?:) of vectors wider than the machine's lane by lane, in scalar code
// (16 compares, blends and stores a vf on AVX2); on native parts they are one
// vcmpps and one vblendvps each.
template <class F>
__attribute__((always_inline)) inline vf by_parts(const vf &a, const vf &b, F f) {
    vf_parts x{a}, y{b};
    for (int i = 0; i < kVfRegs; ++i) x.p[i] = f(x.p[i], y.p[i]);
    return x.v;
}
// Loads, stores and broadcasts of any of the vector types (vf, vnat).
template <class VT>
__attribute__((always_inline)) inline VT vload(const float *p) {
    VT v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}
template <class VT>
__attribute__((always_inline)) inline void vstore(float *p, const VT &v) {
    __builtin_memcpy(p, &v, sizeof v);
}
template <class VT>
__attribute__((always_inline)) inline VT vsplat(float x) {
    return VT{} + x;
}
__attribute__((always_inline)) inline vf loadu(const float *p) { return vload<vf>(p); }
__attribute__((always_inline)) inline void storeu(float *p, const vf &v) { vstore(p, v); }
__attribute__((always_inline)) inline vf splat(float x) { return vsplat<vf>(x); }

// b where a < b, else a (a NaN a stays): relu's floor
template <class VT>
__attribute__((always_inline)) inline VT floor_at(const VT &a, const VT &b) {
    if constexpr (sizeof(VT) == sizeof(vnat))
        return a < b ? b : a;
    else
        return by_parts(a, b, [](vnat x, vnat y) { return x < y ? y : x; });
}
// b where a > b, else a (a NaN a stays): relu6's ceiling
template <class VT>
__attribute__((always_inline)) inline VT ceil_at(const VT &a, const VT &b) {
    if constexpr (sizeof(VT) == sizeof(vnat))
        return a > b ? b : a;
    else
        return by_parts(a, b, [](vnat x, vnat y) { return x > y ? y : x; });
}

// The epilogue (common.hpp's finish) on 16 lanes: act(alpha*acc + bias +
// residual [+ beta*before]). relu / relu6 keep finish's NaN rule (a NaN fails
// both tests and stays NaN); the other activations go lane by lane through
// activation.hpp, as every CPU kernel does.
template <class VT>
__attribute__((always_inline)) inline VT finish_vec(const VT &acc, const pask_cpu_epilogue &ep, const VT &before,
                                                    const VT &bias, const VT &residual) {
    VT v = vsplat<VT>(ep.alpha) * acc + bias + residual;
    if (ep.beta != 0.f) v += vsplat<VT>(ep.beta) * before;
    const VT zero{};
    switch (ep.activation) {
    case PASK_CPU_ACT_NONE:
        return v;
    case PASK_CPU_ACT_RELU:
        return floor_at(v, zero);
    case PASK_CPU_ACT_RELU6:
        return floor_at(ceil_at(v, vsplat<VT>(6.f)), zero);
    default:
        for (int i = 0; i < int(sizeof(VT) / sizeof(float)); ++i) v[i] = apply_act(v[i], ep.activation, ep.act_params);
        return v;
    }
}

// y[0, n) = finish(acc, ...) with one bias b for the whole span (an NCHW
// plane's); before is y itself. acc holds whole vectors; a last partial one
// goes through a padded copy of y and the residual, so every column takes the
// vector epilogue.
PASK_NO_MEMCALLS inline void finish_row(const float *acc, int64_t n, float *y, const pask_cpu_epilogue &ep, float b,
                                        const float *res) {
    // on native vectors (see vnat): a vf's epilogue spills on AVX2
    const vnat bv = vsplat<vnat>(b);
    int64_t i = 0;
    for (; i + VN <= n; i += VN) {
        const vnat before = ep.beta != 0.f ? vload<vnat>(y + i) : vnat{};
        const vnat rv = res ? vload<vnat>(res + i) : vnat{};
        vstore(y + i, finish_vec(vload<vnat>(acc + i), ep, before, bv, rv));
    }
    if (i < n) {  // short element loops, not memcpy calls: rows of a few columns end here every time
        const int64_t m = n - i;
        float yb[VN] = {}, rb[VN] = {};
        if (ep.beta != 0.f)
            for (int64_t k = 0; k < m; ++k) yb[k] = y[i + k];
        if (res)
            for (int64_t k = 0; k < m; ++k) rb[k] = res[i + k];
        const vnat v = finish_vec(vload<vnat>(acc + i), ep, vload<vnat>(yb), bv, vload<vnat>(rb));
        for (int64_t k = 0; k < m; ++k) y[i + k] = v[k];
    }
}

}  // namespace
