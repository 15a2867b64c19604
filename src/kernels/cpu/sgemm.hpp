/*
 * Single-precision GEMM for the CPU kernel code objects (header-only).
 *
 *   C = act(alpha * op(A) @ op(B) + beta * C + bias_n[j] + bias_m[i] + residual[i, j])
 *
 * Row-major throughout. sgemm() is a BLIS/GotoBLAS-style blocked GEMM: B is
 * packed into KC x NC panels, A into MC x KC blocks (per-thread, 64-byte aligned
 * thread_local scratch), a register-blocked micro-kernel computes MR x NR tiles
 * and applies the epilogue while storing. sgemm_small() needs no packing and is
 * meant for skinny problems (M <= 8 or N <= 8, e.g. GEMV). sgemm_with() is
 * the same driver with the A operand given by a packer object (StridedA for a
 * matrix; conv_implicit_gemm.cpp packs a convolution's input as im2col rows).
 *
 * One source serves three ISA builds, picked by the compiler flags:
 *   AVX-512F   : 14 x 32 micro-kernel (zmm)
 *   AVX2 + FMA :  6 x 16 micro-kernel (ymm)
 *   otherwise  :  6 x 8  micro-kernel (GCC vector extensions, SSE2 on x86-64)
 * Everything lives in an inline namespace named after the ISA so translation
 * units built for different ISAs never clash; pask_cpu::sgemm still resolves.
 */
#ifndef PASK_CPU_SGEMM_HPP
#define PASK_CPU_SGEMM_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "activation.hpp"
#include "kernel_abi.h"
#include "scratch_alloc.hpp"

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#ifndef PASK_ISA_NS
#if defined(__AVX512F__)
#define PASK_ISA_NS isa_avx512
#elif defined(__AVX2__) && defined(__FMA__)
#define PASK_ISA_NS isa_avx2
#else
#define PASK_ISA_NS isa_generic
#endif
#endif

namespace pask_cpu {
inline namespace PASK_ISA_NS {

struct GemmEpilogue {
    float alpha = 1.f, beta = 0.f;   // out = act(alpha*acc + beta*C_before + bias + residual)
    int activation = 0;              // PASK_CPU_ACT_* (relu6 = min(max(x,0),6); others: activation.hpp)
    float act_params[2] = {0.f, 0.f};  // leaky_relu's slope; clamp's lo, hi
    const float *bias_n = nullptr;   // length N, added to every row (linear / NHWC conv bias)
    const float *bias_m = nullptr;   // length M, added to every column (NCHW conv bias)
    const float *residual = nullptr; // M x N row-major, row stride ld_residual
    int64_t ld_residual = 0;
};

namespace sgemm_detail {

/* ------------------------------------------------------------------------ */
/* Vector abstraction                                                        */
/* ------------------------------------------------------------------------ */
#if defined(__AVX512F__)
typedef __m512 V;
constexpr int VL = 16;
constexpr int MR = 14, NV = 2;                 // micro-tile 14 x 32
constexpr int64_t KC = 256, MC = 14 * 12, NC = 2048;
static inline V vzero() { return _mm512_setzero_ps(); }
static inline V vset1(float x) { return _mm512_set1_ps(x); }
static inline V vload(const float *p) { return _mm512_loadu_ps(p); }
static inline void vstore(float *p, V v) { _mm512_storeu_ps(p, v); }
static inline V vfma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
static inline V vadd(V a, V b) { return _mm512_add_ps(a, b); }
static inline V vmul(V a, V b) { return _mm512_mul_ps(a, b); }
// Masked forms: GCC 12's unmasked ones trip -Wmaybe-uninitialized (_mm512_undefined_ps).
static inline V vmax(V a, V b) { return _mm512_mask_max_ps(a, (__mmask16)0xFFFF, a, b); }
static inline V vmin(V a, V b) { return _mm512_mask_min_ps(a, (__mmask16)0xFFFF, a, b); }
static inline V vload_part(const float *p, int n) {
    return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), p);
}
static inline void vstore_part(float *p, V v, int n) { _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), v); }
static inline float vhsum(V v) {
    alignas(64) float t[16];
    _mm512_store_ps(t, v);
    __m128 s = _mm_add_ps(_mm_add_ps(_mm_load_ps(t), _mm_load_ps(t + 4)),
                          _mm_add_ps(_mm_load_ps(t + 8), _mm_load_ps(t + 12)));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#elif defined(__AVX2__) && defined(__FMA__)
typedef __m256 V;
constexpr int VL = 8;
constexpr int MR = 6, NV = 2;                  // micro-tile 6 x 16
constexpr int64_t KC = 256, MC = 6 * 24, NC = 2048;
static inline V vzero() { return _mm256_setzero_ps(); }
static inline V vset1(float x) { return _mm256_set1_ps(x); }
static inline V vload(const float *p) { return _mm256_loadu_ps(p); }
static inline void vstore(float *p, V v) { _mm256_storeu_ps(p, v); }
static inline V vfma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
static inline V vadd(V a, V b) { return _mm256_add_ps(a, b); }
static inline V vmul(V a, V b) { return _mm256_mul_ps(a, b); }
static inline V vmax(V a, V b) { return _mm256_max_ps(a, b); }
static inline V vmin(V a, V b) { return _mm256_min_ps(a, b); }
static inline V vload_part(const float *p, int n) {
    static const int32_t tbl[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    __m256i m = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(tbl + 8 - n));
    return _mm256_maskload_ps(p, m);
}
static inline void vstore_part(float *p, V v, int n) {
    static const int32_t tbl[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    _mm256_maskstore_ps(p, _mm256_loadu_si256(reinterpret_cast<const __m256i *>(tbl + 8 - n)), v);
}
static inline float vhsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#else
typedef float V __attribute__((vector_size(16)));
constexpr int VL = 4;
constexpr int MR = 6, NV = 2;                  // micro-tile 6 x 8
constexpr int64_t KC = 256, MC = 6 * 16, NC = 1024;
static inline V vzero() { return V{0.f, 0.f, 0.f, 0.f}; }
static inline V vset1(float x) { return V{x, x, x, x}; }
static inline V vload(const float *p) { V v; std::memcpy(&v, p, sizeof(V)); return v; }
static inline void vstore(float *p, V v) { std::memcpy(p, &v, sizeof(V)); }
static inline V vfma(V a, V b, V c) { return a * b + c; }
static inline V vadd(V a, V b) { return a + b; }
static inline V vmul(V a, V b) { return a * b; }
static inline V vmax(V a, V b) { return a > b ? a : b; }
static inline V vmin(V a, V b) { return a < b ? a : b; }
static inline V vload_part(const float *p, int n) {
    V v = vzero();
    for (int i = 0; i < n; ++i) v[i] = p[i];
    return v;
}
static inline void vstore_part(float *p, V v, int n) {
    for (int i = 0; i < n; ++i) p[i] = v[i];
}
static inline float vhsum(V v) { return (v[0] + v[2]) + (v[1] + v[3]); }
#endif

constexpr int NR = NV * VL;
constexpr int kOutOfMemory = 6;

/* ------------------------------------------------------------------------ */
/* Scratch                                                                   */
/* ------------------------------------------------------------------------ */
struct Buffer {
    float *p = nullptr;
    size_t cap = 0;  // floats
    Buffer() = default;
    Buffer(const Buffer &) = delete;
    Buffer &operator=(const Buffer &) = delete;
    ~Buffer() { std::free(p); }
    float *get(size_t n) {
        if (n <= cap && p) return p;
        size_t want = std::max(n, cap + cap / 2);
        size_t bytes = (want * sizeof(float) + 4095) & ~size_t(4095);
        void *q = pask_cpu_scratch_alloc(bytes, 4096);
        if (!q) {
            bytes = (n * sizeof(float) + 4095) & ~size_t(4095);
            q = pask_cpu_scratch_alloc(bytes, 4096);
            if (!q) return nullptr;
        }
        std::free(p);
        p = static_cast<float *>(q);
        cap = bytes / sizeof(float);
        return p;
    }
};
struct Scratch {
    Buffer a, b, t;  // packed A, packed B, small-path transposes
};
static inline Scratch &scratch() {
    static thread_local Scratch s;
    return s;
}

/* ------------------------------------------------------------------------ */
/* Epilogue                                                                  */
/* ------------------------------------------------------------------------ */
/* What one store pass does: x = alpha*acc; if load_c x += cmul*C;
 * if last: x += bias_n[j] + bias_m[i] + residual[i,j]; x = act(x). */
struct Stage {
    float alpha, cmul;
    bool load_c, last;
    int act;
    float act_p[2];
    const float *bias_n, *bias_m, *res;
    int64_t ld_res;
};

static inline Stage make_stage(const GemmEpilogue &ep, bool first, bool last) {
    Stage s;
    s.alpha = ep.alpha;
    s.load_c = !first || ep.beta != 0.f;
    s.cmul = first ? ep.beta : 1.f;
    s.last = last;
    s.act = ep.activation;
    s.act_p[0] = ep.act_params[0];
    s.act_p[1] = ep.act_params[1];
    s.bias_n = ep.bias_n;
    s.bias_m = ep.bias_m;
    s.res = ep.residual;
    s.ld_res = ep.ld_residual;
    return s;
}

/* NaN propagates through relu and relu6 (PyTorch's rule; common.hpp's
 * apply_act is the same): a NaN fails every comparison and falls through to x. */
static inline float act_scalar(float x, int act, const float *p) {
    if (act == PASK_CPU_ACT_RELU) return x < 0.f ? 0.f : x;
    if (act == PASK_CPU_ACT_RELU6) return x < 0.f ? 0.f : (x > 6.f ? 6.f : x);
    if (act >= PASK_CPU_ACT_LEAKY_RELU) return pask_cpu_act_param(x, act, p);  // activation.hpp
    if (act >= PASK_CPU_ACT_SIGMOID) return pask_cpu_act_ext(x, act);
    return x;
}
/* vmax/vmin return their SECOND operand when either is NaN (maxps/minps, and
 * the generic "a > b ? a : b"), so x goes second: vmax(0, NaN) = NaN, where
 * vmax(NaN, 0) would be 0. +inf -> inf (relu) / 6 (relu6), -inf -> 0. */
static inline V act_vec(V x, int act, const float *p) {
    if (act == PASK_CPU_ACT_RELU) return vmax(vzero(), x);
    if (act == PASK_CPU_ACT_RELU6) return vmin(vset1(6.f), vmax(vzero(), x));
    if (act == PASK_CPU_ACT_CLAMP) return vmin(vset1(p[1]), vmax(vset1(p[0]), x));  // x second: NaN stays
    if (act >= PASK_CPU_ACT_SIGMOID) {
        // sigmoid, silu, hardswish, ..., leaky_relu: lane by lane (activation.hpp)
        alignas(64) float t[VL];
        vstore(t, x);
        for (int l = 0; l < VL; ++l) t[l] = act_scalar(t[l], act, p);
        return vload(t);
    }
    return x;
}

/* Epilogue of one row segment: acc[0..n) -> c[0..n), row i, columns j0.. */
__attribute__((noinline)) static void epi_row(const float *acc, float *c, int64_t n, int64_t i, int64_t j0,
                           const Stage &st) {
    const V va = vset1(st.alpha), vc = vset1(st.cmul);
    const float bm = (st.last && st.bias_m) ? st.bias_m[i] : 0.f;
    const V vbm = vset1(bm);
    const float *bn = st.bias_n ? st.bias_n + j0 : nullptr;
    const float *rs = st.res ? st.res + i * st.ld_res + j0 : nullptr;
    int64_t j = 0;
    for (; j + VL <= n; j += VL) {
        V x = vmul(vload(acc + j), va);
        if (st.load_c) x = vfma(vload(c + j), vc, x);
        if (st.last) {
            if (bn) x = vadd(x, vload(bn + j));
            x = vadd(x, vbm);
            if (rs) x = vadd(x, vload(rs + j));
            x = act_vec(x, st.act, st.act_p);
        }
        vstore(c + j, x);
    }
    const int tail = (int)(n - j);  // < VL
    for (int q = 0; q < tail; ++q, ++j) {
        float x = st.alpha * acc[j];
        if (st.load_c) x += st.cmul * c[j];
        if (st.last) {
            if (bn) x += bn[j];
            x += bm;
            if (rs) x += rs[j];
            x = act_scalar(x, st.act, st.act_p);
        }
        c[j] = x;
    }
}

/* ------------------------------------------------------------------------ */
/* Micro-kernel: C[0..mr, 0..nvalid) (+)= Ap(mr x kc) * Bp(kc x NVv*VL)      */
/* Ap: a[p*MRv + r]; Bp: b[p*NVv*VL + c]                                     */
/* ------------------------------------------------------------------------ */
template <int MRv, int NVv>
static void ukernel(int64_t kc, const float *__restrict a, const float *__restrict b,
                    float *__restrict c, int64_t ldc, int nvalid, int64_t i0, int64_t j0,
                    const Stage &st) {
    V acc[MRv][NVv];
#pragma GCC unroll 16
    for (int r = 0; r < MRv; ++r) {
        // the tile of C is stored (and maybe read) right after the loop
#pragma GCC unroll 4
        for (int v = 0; v < NVv; ++v) acc[r][v] = vzero();
    }

    // The tile of C (and the residual, on the last K block) is touched only
    // after the loop; fetching it now overlaps its cache misses with the
    // FMAs (the rows are ldc apart: the hardware prefetcher does not follow).
    if (kc >= 32) {
        const int64_t last = (int64_t)nvalid - 1;
#pragma GCC unroll 16
        for (int r = 0; r < MRv; ++r) {
            __builtin_prefetch(c + r * ldc, 1, 3);
            __builtin_prefetch(c + r * ldc + last / 2, 1, 3);  // 3 lines when not aligned
            __builtin_prefetch(c + r * ldc + last, 1, 3);
        }
        if (st.last && st.res) {
            const float *rs = st.res + i0 * st.ld_res + j0;
            for (int r = 0; r < MRv; ++r) {
                __builtin_prefetch(rs + r * st.ld_res, 0, 3);
                __builtin_prefetch(rs + r * st.ld_res + last / 2, 0, 3);
                __builtin_prefetch(rs + r * st.ld_res + last, 0, 3);
            }
        }
    }

#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; ++p) {
        V bv[NVv];
        // B rows some iterations ahead: a pre-packed B streams from memory
        // (read once a call when M is small), which the loads alone wait on.
#pragma GCC unroll 4
        for (int v = 0; v < NVv; v += (64 / (int)sizeof(V) > 0 ? 64 / (int)sizeof(V) : 1))
            __builtin_prefetch(b + 16 * NVv * VL + v * VL, 0, 3);
#pragma GCC unroll 4
        for (int v = 0; v < NVv; ++v) bv[v] = vload(b + v * VL);
#pragma GCC unroll 16
        for (int r = 0; r < MRv; ++r) {
            const V ar = vset1(a[r]);
#pragma GCC unroll 4
            for (int v = 0; v < NVv; ++v) acc[r][v] = vfma(ar, bv[v], acc[r][v]);
        }
        a += MRv;
        b += NVv * VL;
    }

    if (nvalid == NVv * VL) {
        const V va = vset1(st.alpha), vc = vset1(st.cmul);
#pragma GCC unroll 16
        for (int r = 0; r < MRv; ++r) {
            float *cr = c + r * ldc;
            if (!st.last) {
#pragma GCC unroll 4
                for (int v = 0; v < NVv; ++v) {
                    V x = vmul(acc[r][v], va);
                    if (st.load_c) x = vfma(vload(cr + v * VL), vc, x);
                    vstore(cr + v * VL, x);
                }
            } else {
                const V vbm = vset1(st.bias_m ? st.bias_m[i0 + r] : 0.f);
                const float *bn = st.bias_n ? st.bias_n + j0 : nullptr;
                const float *rs = st.res ? st.res + (i0 + r) * st.ld_res + j0 : nullptr;
#pragma GCC unroll 4
                for (int v = 0; v < NVv; ++v) {
                    V x = vmul(acc[r][v], va);
                    if (st.load_c) x = vfma(vload(cr + v * VL), vc, x);
                    if (bn) x = vadd(x, vload(bn + v * VL));
                    x = vadd(x, vbm);
                    if (rs) x = vadd(x, vload(rs + v * VL));
                    x = act_vec(x, st.act, st.act_p);
                    vstore(cr + v * VL, x);
                }
            }
        }
    } else {
        alignas(64) float tmp[NVv * VL];
        for (int r = 0; r < MRv; ++r) {
            for (int v = 0; v < NVv; ++v) vstore(tmp + v * VL, acc[r][v]);
            epi_row(tmp, c + r * ldc, nvalid, i0 + r, j0, st);
        }
    }
}

typedef void (*ukernel_fn)(int64_t, const float *, const float *, float *, int64_t, int, int64_t,
                           int64_t, const Stage &);

template <int NVv, int... Ms>
struct UkTable {
    static constexpr ukernel_fn tbl[sizeof...(Ms)] = {&ukernel<Ms + 1, NVv>...};
};
template <int NVv, int... Ms>
constexpr ukernel_fn UkTable<NVv, Ms...>::tbl[sizeof...(Ms)];

template <int NVv, int... Ms>
static inline ukernel_fn pick_ukernel(int mr, std::integer_sequence<int, Ms...>) {
    return UkTable<NVv, Ms...>::tbl[mr - 1];
}

static inline ukernel_fn get_ukernel(int mr, int nv) {
    typedef std::make_integer_sequence<int, MR> Seq;
    if (nv == NV) return pick_ukernel<NV>(mr, Seq());
    return pick_ukernel<1>(mr, Seq());  // NV == 2 everywhere: nv is 1 or 2
}

/* ------------------------------------------------------------------------ */
/* Packing                                                                   */
/* ------------------------------------------------------------------------ */
#if defined(__AVX__)
/* 8x8 transpose: out[q][r] = src[r][q] for rows src[0..8) (8 floats each). */
static inline void transpose8(const float *const *src, int64_t off, __m256 out[8]) {
    __m256 r0 = _mm256_loadu_ps(src[0] + off), r1 = _mm256_loadu_ps(src[1] + off);
    __m256 r2 = _mm256_loadu_ps(src[2] + off), r3 = _mm256_loadu_ps(src[3] + off);
    __m256 r4 = _mm256_loadu_ps(src[4] + off), r5 = _mm256_loadu_ps(src[5] + off);
    __m256 r6 = _mm256_loadu_ps(src[6] + off), r7 = _mm256_loadu_ps(src[7] + off);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    out[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    out[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    out[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    out[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    out[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    out[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    out[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    out[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}
/* 4x4 transpose: out[q][r] = src[r][q]. */
static inline void transpose4(const float *const *src, int64_t off, __m128 out[4]) {
    __m128 r0 = _mm_loadu_ps(src[0] + off), r1 = _mm_loadu_ps(src[1] + off);
    __m128 r2 = _mm_loadu_ps(src[2] + off), r3 = _mm_loadu_ps(src[3] + off);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    out[0] = r0; out[1] = r1; out[2] = r2; out[3] = r3;
}
#endif

/* op(A)[i0.., p0..] -> mc x kc, in panels of MR rows (last panel: its rows). */
static void pack_a(bool trans_a, const float *A, int64_t lda, int64_t i0, int64_t p0, int64_t mc,
                   int64_t kc, float *__restrict dst) {
    for (int64_t ir = 0; ir < mc; ir += MR) {
        const int mr = (int)std::min<int64_t>(MR, mc - ir);
        float *d = dst + ir * kc;
        if (!trans_a) {
            const float *src = A + (i0 + ir) * lda + p0;
            int64_t p = 0;
#if defined(__AVX__)
            if (mr == MR && MR >= 8) {
                // row groups of 8: 0.., then MR-8.. (overlapping rows get equal values)
                const float *rows[MR];
                for (int r = 0; r < MR; ++r) rows[r] = src + r * lda;
                for (; p + 8 <= kc; p += 8) {
                    for (int g = 0; g < 2; ++g) {
                        const int r0 = g == 0 ? 0 : MR - 8;
                        __m256 t[8];
                        transpose8(rows + r0, p, t);
                        for (int q = 0; q < 8; ++q) _mm256_storeu_ps(d + (p + q) * MR + r0, t[q]);
                    }
                }
            } else if (mr == MR && MR >= 4) {
                const float *rows[MR];
                for (int r = 0; r < MR; ++r) rows[r] = src + r * lda;
                for (; p + 4 <= kc; p += 4) {
                    for (int r0 = 0;; r0 = std::min(r0 + 4, MR - 4)) {
                        __m128 t[4];
                        transpose4(rows + r0, p, t);
                        for (int q = 0; q < 4; ++q) _mm_storeu_ps(d + (p + q) * MR + r0, t[q]);
                        if (r0 == MR - 4) break;
                    }
                }
            }
#endif
            for (; p < kc; ++p)
                for (int r = 0; r < mr; ++r) d[p * mr + r] = src[r * lda + p];
        } else {
            const float *src = A + p0 * lda + i0 + ir;
            for (int64_t p = 0; p < kc; ++p) {
                const float *s = src + p * lda;
                float *dd = d + p * mr;
                for (int r = 0; r < mr; ++r) dd[r] = s[r];
            }
        }
    }
}

/* op(B)[p0.., j0..] -> kc x nc, in panels of NR columns (last panel: width
 * rounded up to VL, zero padded). */
static void pack_b(bool trans_b, const float *B, int64_t ldb, int64_t p0, int64_t j0, int64_t kc,
                   int64_t nc, float *__restrict dst) {
#if defined(__AVX__)
    alignas(64) static const float zrow[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
#endif
    for (int64_t jr = 0; jr < nc; jr += NR) {
        const int nw = (int)std::min<int64_t>(NR, nc - jr);
        const int w = (nw + VL - 1) / VL * VL;
        float *d = dst + jr * kc;
        if (!trans_b) {
            const float *src = B + p0 * ldb + j0 + jr;
            if (nw == NR) {
                for (int64_t p = 0; p < kc; ++p)
                    for (int v = 0; v < NV; ++v)
                        vstore(d + p * NR + v * VL, vload(src + p * ldb + v * VL));
            } else {
                for (int64_t p = 0; p < kc; ++p) {
                    const float *s = src + p * ldb;
                    float *dd = d + p * w;
                    int cc = 0;
                    for (; cc < nw; ++cc) dd[cc] = s[cc];
                    for (; cc < w; ++cc) dd[cc] = 0.f;
                }
            }
        } else {
            const float *src = B + (j0 + jr) * ldb + p0;
            int64_t p = 0;
#if defined(__AVX__)
            if (w % 8 == 0) {
                for (int c0 = 0; c0 < w; c0 += 8) {
                    // rows past nw read the zero row (at offset 0 every time)
                    const float *rows[8];
                    for (int r = 0; r < 8; ++r) rows[r] = (c0 + r < nw) ? src + (c0 + r) * ldb : zrow;
                    int64_t pp = 0;
                    for (; pp + 8 <= kc; pp += 8) {
                        const float *rp[8];
                        for (int r = 0; r < 8; ++r) rp[r] = rows[r] == zrow ? zrow : rows[r] + pp;
                        __m256 t[8];
                        transpose8(rp, 0, t);
                        for (int q = 0; q < 8; ++q) _mm256_storeu_ps(d + (pp + q) * w + c0, t[q]);
                    }
                    p = pp;
                }
            }
#endif
            for (; p < kc; ++p) {
                int cc = 0;
                for (; cc < nw; ++cc) d[p * w + cc] = src[cc * ldb + p];
                for (; cc < w; ++cc) d[p * w + cc] = 0.f;
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Blocked driver                                                            */
/* ------------------------------------------------------------------------ */
/* The A operand as the driver sees it: pack(i0, p0, mc, kc, dst) writes
 * op(A)[i0.., p0..] (mc x kc) in panels of MR rows, as pack_a does. A strided
 * matrix (StridedA) or a convolution's input read as its im2col matrix
 * without building it (conv_implicit_gemm.cpp). */
struct StridedA {
    bool trans;
    const float *A;
    int64_t lda;
    void pack(int64_t i0, int64_t p0, int64_t mc, int64_t kc, float *dst) const {
        pack_a(trans, A, lda, i0, p0, mc, kc, dst);
    }
};

/* The B operand: panel(pc, jc, kc, nc, scratch) gives op(B)[pc.., jc..]
 * (kc x nc) in pack_b's layout: packed into scratch now (StridedB), or found
 * in a copy packed once ahead (PrepackedB, see sgemm_pack_b). */
struct StridedB {
    static constexpr bool kScratch = true;
    bool trans;
    const float *B;
    int64_t ldb;
    const float *panel(int64_t pc, int64_t jc, int64_t kc, int64_t nc, float *scratch) const {
        pack_b(trans, B, ldb, pc, jc, kc, nc, scratch);
        return scratch;
    }
};

/* Floats of a row of op(B) packed in full: NR-wide panels, the last one
 * rounded up to VL. */
static inline int64_t packed_width(int64_t N) {
    const int64_t tail = N % NR;
    return N / NR * NR + (tail ? (tail + VL - 1) / VL * VL : 0);
}

/* op(B) packed whole by sgemm_pack_b: K block pc (kc deep) starts at
 * base + pc * packed_width(N); its panel of columns jc.. (jc a multiple of NR)
 * at + jc * kc. */
struct PrepackedB {
    static constexpr bool kScratch = false;
    const float *base;
    int64_t width;  // packed_width(N)
    const float *panel(int64_t pc, int64_t jc, int64_t kc, int64_t, float *) const {
        return base + pc * width + jc * kc;
    }
};

/* The K blocks: balanced, at most KC deep; with kc_align > 1 every block but
 * the last is a multiple of kc_align. */
static inline int64_t kc_block(int64_t K, int64_t kc_align) {
    const int64_t nk = (K + KC - 1) / KC;
    int64_t kc = (K + nk - 1) / nk;
    if (kc_align > 1) kc = std::min(K, (kc + kc_align - 1) / kc_align * kc_align);
    return kc;
}

struct GemmCtx {
    int64_t M, N, K;
    float *C; int64_t ldc;
    const GemmEpilogue *ep;
    int64_t tm, tn;         // task grid
    int64_t mt_tiles, nt_tiles;  // MR tiles / NR tiles in total
    int64_t kc_blk;
    int err;
};

/* Split `tiles` tiles into `parts` nearly equal parts; returns [b, e) of part t. */
static inline void split_range(int64_t tiles, int64_t parts, int64_t t, int64_t &b, int64_t &e) {
    const int64_t q = tiles / parts, r = tiles % parts;
    b = t * q + std::min(t, r);
    e = b + q + (t < r ? 1 : 0);
}

template <class PackA, class PackB>
static void gemm_block(GemmCtx &g, const PackA &pa, const PackB &pb, int64_t m0, int64_t m1, int64_t n0,
                       int64_t n1) {
    const int64_t K = g.K;
    const int64_t kcb = g.kc_blk;
    const int64_t nc_max = std::min<int64_t>(NC, n1 - n0);
    const int64_t mc_max = std::min<int64_t>(MC, m1 - m0);
    Scratch &s = scratch();
    const int64_t kcm = std::min(kcb, K);
    float *Bp = PackB::kScratch ? s.b.get((size_t)(kcm * ((nc_max + NR - 1) / NR * NR))) : nullptr;
    float *Ap = s.a.get((size_t)(kcm * ((mc_max + MR - 1) / MR * MR)));
    if ((PackB::kScratch && !Bp) || !Ap) {
        g.err = kOutOfMemory;
        return;
    }
    for (int64_t jc = n0; jc < n1; jc += NC) {
        const int64_t nc = std::min<int64_t>(NC, n1 - jc);
        for (int64_t pc = 0; pc < K; pc += kcb) {
            const int64_t kc = std::min(kcb, K - pc);
            const Stage st = make_stage(*g.ep, pc == 0, pc + kc == K);
            const float *Bk = pb.panel(pc, jc, kc, nc, Bp);
            for (int64_t ic = m0; ic < m1; ic += MC) {
                const int64_t mc = std::min<int64_t>(MC, m1 - ic);
                pa.pack(ic, pc, mc, kc, Ap);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    const int nw = (int)std::min<int64_t>(NR, nc - jr);
                    const int nv = (nw + VL - 1) / VL;
                    const float *bp = Bk + jr * kc;
                    const int64_t j = jc + jr;
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        const int mr = (int)std::min<int64_t>(MR, mc - ir);
                        const int64_t i = ic + ir;
                        get_ukernel(mr, nv)(kc, Ap + ir * kc, bp, g.C + i * g.ldc + j, g.ldc, nw,
                                            i, j, st);
                    }
                }
            }
        }
    }
}

template <class PackA, class PackB>
struct GemmJob {
    GemmCtx *g;
    const PackA *pa;
    const PackB *pb;
};

template <class PackA, class PackB>
static void gemm_task(void *arg, int64_t task, int /*thread*/) {
    const GemmJob<PackA, PackB> &job = *static_cast<const GemmJob<PackA, PackB> *>(arg);
    GemmCtx &g = *job.g;
    const int64_t ti = task / g.tn, tj = task % g.tn;
    int64_t mb, me, nb, ne;
    split_range(g.mt_tiles, g.tm, ti, mb, me);
    split_range(g.nt_tiles, g.tn, tj, nb, ne);
    const int64_t m0 = mb * MR, m1 = std::min(g.M, me * MR);
    const int64_t n0 = nb * NR, n1 = std::min(g.N, ne * NR);
    if (m0 >= m1 || n0 >= n1) return;
    gemm_block(g, *job.pa, *job.pb, m0, m1, n0, n1);
}

/* Only the epilogue (K == 0). */
static void epilogue_only(int64_t M, int64_t N, float *C, int64_t ldc, const GemmEpilogue &ep) {
    const Stage st = make_stage(ep, true, true);
    alignas(64) float zeros[256] = {};
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; j += 256)
            epi_row(zeros, C + i * ldc + j, std::min<int64_t>(256, N - j), i, j, st);
}

/* ------------------------------------------------------------------------ */
/* Small (unpacked) kernels                                                  */
/* ------------------------------------------------------------------------ */
struct SmallCtx {
    int64_t M, N, K;
    const float *A; int64_t sai, sap;  // A(i,p) = A[i*sai + p*sap]
    const float *B; int64_t sbp, sbj;  // B(p,j) = B[p*sbp + j*sbj]
    float *C; int64_t ldc;
    const GemmEpilogue *ep;
    int64_t blocks, tasks;
    int64_t cw;  // mode 4 column chunk
    int mode;
};

/* Mode A: B(p, j) contiguous in j; rows of C in blocks of RB, columns in
 * vectors. acc[r][v] += A(i0+r, p) * B(p, j0 + v*VL ..). */
template <int RB, int JV, bool PART>
static void small_rows(const SmallCtx &s, int64_t i0, int64_t j0, int nvalid) {
    V acc[RB][JV];
    for (int r = 0; r < RB; ++r)
        for (int v = 0; v < JV; ++v) acc[r][v] = vzero();
    const float *a = s.A + i0 * s.sai;
    const float *b = s.B + j0;
    for (int64_t p = 0; p < s.K; ++p) {
        V bv[JV];
        for (int v = 0; v < JV; ++v)
            bv[v] = PART ? vload_part(b + v * VL, nvalid - v * VL) : vload(b + v * VL);
        for (int r = 0; r < RB; ++r) {
            const V ar = vset1(a[r * s.sai]);
            for (int v = 0; v < JV; ++v) acc[r][v] = vfma(ar, bv[v], acc[r][v]);
        }
        a += s.sap;
        b += s.sbp;
    }
    const Stage st = make_stage(*s.ep, true, true);
    alignas(64) float tmp[JV * VL];
    for (int r = 0; r < RB; ++r) {
        for (int v = 0; v < JV; ++v) vstore(tmp + v * VL, acc[r][v]);
        epi_row(tmp, s.C + (i0 + r) * s.ldc + j0, nvalid, i0 + r, j0, st);
    }
}

#if defined(__AVX512F__)
constexpr int SR_RB = 8, SR_JV = 3;
constexpr int SD_RI = 4, SD_RJ = 4;
constexpr int SC_IV = 2, SC_J = 8;
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int SR_RB = 4, SR_JV = 3;
constexpr int SD_RI = 2, SD_RJ = 4;
constexpr int SC_IV = 1, SC_J = 8;
#else
constexpr int SR_RB = 4, SR_JV = 3;
constexpr int SD_RI = 2, SD_RJ = 4;
constexpr int SC_IV = 1, SC_J = 8;
#endif

template <int RB>
static void small_rows_block(const SmallCtx &s, int64_t i0, int64_t j0, int64_t j1) {
    int64_t j = j0;
    for (; j + SR_JV * VL <= j1; j += SR_JV * VL) small_rows<RB, SR_JV, false>(s, i0, j, SR_JV * VL);
    for (; j + VL <= j1; j += VL) small_rows<RB, 1, false>(s, i0, j, VL);
    if (j < j1) small_rows<RB, 1, true>(s, i0, j, (int)(j1 - j));
}

template <int RB>
static void small_rows_dispatch(const SmallCtx &s, int rb, int64_t i0, int64_t j0, int64_t j1) {
    if constexpr (RB > 1) {
        if (rb < RB) return small_rows_dispatch<RB - 1>(s, rb, i0, j0, j1);
    }
    small_rows_block<RB>(s, i0, j0, j1);
}

/* Mode B: A(i, p) and B(p, j) both contiguous in p: dot products. */
template <int RI, int RJ>
static void small_dot(const SmallCtx &s, int64_t i0, int64_t j0) {
    V acc[RI][RJ];
    for (int r = 0; r < RI; ++r)
        for (int c = 0; c < RJ; ++c) acc[r][c] = vzero();
    const float *a = s.A + i0 * s.sai;
    const float *b = s.B + j0 * s.sbj;
    const int64_t K = s.K;
    int64_t p = 0;
    for (; p + VL <= K; p += VL) {
        V av[RI];
        for (int r = 0; r < RI; ++r) av[r] = vload(a + r * s.sai + p);
        for (int c = 0; c < RJ; ++c) {
            const V bv = vload(b + c * s.sbj + p);
            for (int r = 0; r < RI; ++r) acc[r][c] = vfma(av[r], bv, acc[r][c]);
        }
    }
    if (p < K) {
        const int n = (int)(K - p);
        V av[RI];
        for (int r = 0; r < RI; ++r) av[r] = vload_part(a + r * s.sai + p, n);
        for (int c = 0; c < RJ; ++c) {
            const V bv = vload_part(b + c * s.sbj + p, n);
            for (int r = 0; r < RI; ++r) acc[r][c] = vfma(av[r], bv, acc[r][c]);
        }
    }
    const Stage st = make_stage(*s.ep, true, true);
    float tmp[RJ];
    for (int r = 0; r < RI; ++r) {
        for (int c = 0; c < RJ; ++c) tmp[c] = vhsum(acc[r][c]);
        epi_row(tmp, s.C + (i0 + r) * s.ldc + j0, RJ, i0 + r, j0, st);
    }
}

/* Mode B with one row of A (GEMV, e.g. a linear layer at batch 1): the rows
 * of B one after another, each with four accumulators, so that B is read as
 * one sequential stream (a linear layer's weights come from DRAM in a
 * network's steady state; interleaving several rows' streams read it at about
 * 60% of the bandwidth; a software prefetch 256-1024 floats ahead was slower). */
static void small_gemv_rows(const SmallCtx &s, int64_t j0, int64_t j1) {
    const Stage st = make_stage(*s.ep, true, true);
    const float *a = s.A;
    const int64_t K = s.K, K4 = K / (4 * VL) * (4 * VL), K1 = K / VL * VL;
    float tmp[8];
    for (int64_t jb = j0; jb < j1; jb += 8) {
        const int rj = (int)std::min<int64_t>(8, j1 - jb);
        for (int c = 0; c < rj; ++c) {
            const float *b = s.B + (jb + c) * s.sbj;
            V c0 = vzero(), c1 = vzero(), c2 = vzero(), c3 = vzero();
            int64_t p = 0;
            for (; p < K4; p += 4 * VL) {
                c0 = vfma(vload(a + p), vload(b + p), c0);
                c1 = vfma(vload(a + p + VL), vload(b + p + VL), c1);
                c2 = vfma(vload(a + p + 2 * VL), vload(b + p + 2 * VL), c2);
                c3 = vfma(vload(a + p + 3 * VL), vload(b + p + 3 * VL), c3);
            }
            for (; p < K1; p += VL) c0 = vfma(vload(a + p), vload(b + p), c0);
            if (p < K) c1 = vfma(vload_part(a + p, (int)(K - p)), vload_part(b + p, (int)(K - p)), c1);
            tmp[c] = vhsum(vadd(vadd(c0, c1), vadd(c2, c3)));
        }
        epi_row(tmp, s.C + jb, rj, 0, jb, st);
    }
}

template <int RI, int RJ>
static void small_dot_dispatch(const SmallCtx &s, int ri, int rj, int64_t i0, int64_t j0) {
    if constexpr (RI > 1) {
        if (ri < RI) return small_dot_dispatch<RI - 1, RJ>(s, ri, rj, i0, j0);
    }
    if constexpr (RJ > 1) {
        if (rj < RJ) return small_dot_dispatch<RI, RJ - 1>(s, ri, rj, i0, j0);
    }
    small_dot<RI, RJ>(s, i0, j0);
}

/* Mode C: A(i, p) contiguous in i (trans_a); vectors along i, columns of C
 * in blocks of up to SC_J. */
template <int IV, int J, bool PART>
static void small_cols(const SmallCtx &s, int64_t i0, int64_t j0, int mvalid) {
    V acc[IV][J];
    for (int v = 0; v < IV; ++v)
        for (int c = 0; c < J; ++c) acc[v][c] = vzero();
    const float *a = s.A + i0;
    const float *b = s.B + j0 * s.sbj;
    for (int64_t p = 0; p < s.K; ++p) {
        V av[IV];
        for (int v = 0; v < IV; ++v)
            av[v] = PART ? vload_part(a + v * VL, mvalid - v * VL) : vload(a + v * VL);
        for (int c = 0; c < J; ++c) {
            const V bv = vset1(b[c * s.sbj]);
            for (int v = 0; v < IV; ++v) acc[v][c] = vfma(av[v], bv, acc[v][c]);
        }
        a += s.sap;
        b += s.sbp;
    }
    const Stage st = make_stage(*s.ep, true, true);
    alignas(64) float tmp[J][IV * VL];
    for (int c = 0; c < J; ++c)
        for (int v = 0; v < IV; ++v) vstore(&tmp[c][v * VL], acc[v][c]);
    for (int r = 0; r < mvalid; ++r) {
        float row[J];
        for (int c = 0; c < J; ++c) row[c] = tmp[c][r];
        epi_row(row, s.C + (i0 + r) * s.ldc + j0, J, i0 + r, j0, st);
    }
}

template <int J>
static void small_cols_block(const SmallCtx &s, int64_t i0, int64_t i1, int64_t j0) {
    int64_t i = i0;
    for (; i + SC_IV * VL <= i1; i += SC_IV * VL) small_cols<SC_IV, J, false>(s, i, j0, SC_IV * VL);
    for (; i + VL <= i1; i += VL) small_cols<1, J, false>(s, i, j0, VL);
    if (i < i1) small_cols<1, J, true>(s, i, j0, (int)(i1 - i));
}

template <int J>
static void small_cols_dispatch(const SmallCtx &s, int jb, int64_t i0, int64_t i1, int64_t j0) {
    if constexpr (J > 1) {
        if (jb < J) return small_cols_dispatch<J - 1>(s, jb, i0, i1, j0);
    }
    small_cols_block<J>(s, i0, i1, j0);
}

/* Mode 4: M <= 4 rows, B(p, j) contiguous in j: stream B row by row over a
 * wide column chunk (accumulators in L1) so that B is read in long runs. */
constexpr int64_t SS_CW = 1024;
static void small_stream(const SmallCtx &s, int64_t j0, int64_t j1) {
    alignas(64) float acc[4][SS_CW];
    const int64_t w = std::min<int64_t>(j1 - j0, SS_CW), wv = w / VL * VL;
    const int M = (int)std::min<int64_t>(s.M, 4);
    for (int i = 0; i < M; ++i)
        for (int64_t j = 0; j < w; ++j) acc[i][j] = 0.f;
    for (int64_t p = 0; p < s.K; ++p) {
        const float *b = s.B + p * s.sbp + j0;
        for (int i = 0; i < M; ++i) {
            const float ai = s.A[i * s.sai + p * s.sap];
            const V av = vset1(ai);
            float *ac = acc[i];
            int64_t j = 0;
            for (; j < wv; j += VL) vstore(ac + j, vfma(av, vload(b + j), vload(ac + j)));
            for (; j < w; ++j) ac[j] += ai * b[j];
        }
    }
    const Stage st = make_stage(*s.ep, true, true);
    for (int i = 0; i < M; ++i) epi_row(acc[i], s.C + i * s.ldc + j0, w, i, j0, st);
}

/* Work of one task. The mode decides what a "block" is. */
static void small_range(const SmallCtx &s, int64_t b0, int64_t b1) {
    switch (s.mode) {
    case 0: {  // rows of C in blocks of SR_RB; split over column blocks of 16*VL
        const int64_t cw = 16 * VL;
        const int64_t j0 = b0 * cw, j1 = std::min(s.N, b1 * cw);
        if (j0 >= j1) return;
        for (int64_t i = 0; i < s.M; i += SR_RB) {
            const int rb = (int)std::min<int64_t>(SR_RB, s.M - i);
            small_rows_dispatch<SR_RB>(s, rb, i, j0, j1);
        }
        break;
    }
    case 1: {  // dot products, blocks along N (M small): each block SD_RJ columns
        const int64_t j0 = b0 * SD_RJ, j1 = std::min(s.N, b1 * SD_RJ);
        if (s.M == 1 && s.sap == 1 && s.sbp == 1) {
            small_gemv_rows(s, j0, j1);
            break;
        }
        if (s.M <= 2) {  // GEMV-like: more independent streams of B rows
            for (int64_t j = j0; j < j1; j += 8) {
                const int rj = (int)std::min<int64_t>(8, j1 - j);
                small_dot_dispatch<2, 8>(s, (int)s.M, rj, 0, j);
            }
            break;
        }
        for (int64_t j = j0; j < j1; j += SD_RJ) {
            const int rj = (int)std::min<int64_t>(SD_RJ, j1 - j);
            for (int64_t i = 0; i < s.M; i += SD_RI) {
                const int ri = (int)std::min<int64_t>(SD_RI, s.M - i);
                small_dot_dispatch<SD_RI, SD_RJ>(s, ri, rj, i, j);
            }
        }
        break;
    }
    case 2: {  // dot products, blocks along M (N small): each block SD_RI rows
        const int64_t i0 = b0 * SD_RI, i1 = std::min(s.M, b1 * SD_RI);
        for (int64_t i = i0; i < i1; i += SD_RI) {
            const int ri = (int)std::min<int64_t>(SD_RI, i1 - i);
            for (int64_t j = 0; j < s.N; j += SD_RJ) {
                const int rj = (int)std::min<int64_t>(SD_RJ, s.N - j);
                small_dot_dispatch<SD_RI, SD_RJ>(s, ri, rj, i, j);
            }
        }
        break;
    }
    case 4: {  // stream: blocks of s.cw columns
        for (int64_t b = b0; b < b1; ++b) {
            const int64_t j0 = b * s.cw, j1 = std::min(s.N, j0 + s.cw);
            if (j0 < j1) small_stream(s, j0, j1);
        }
        break;
    }
    default: {  // mode 3: vectors along M, blocks of SC_IV*VL rows
        const int64_t rw = SC_IV * VL;
        const int64_t i0 = b0 * rw, i1 = std::min(s.M, b1 * rw);
        if (i0 >= i1) return;
        for (int64_t j = 0; j < s.N; j += SC_J) {
            const int jb = (int)std::min<int64_t>(SC_J, s.N - j);
            small_cols_dispatch<SC_J>(s, jb, i0, i1, j);
        }
        break;
    }
    }
}

static void small_task(void *arg, int64_t task, int /*thread*/) {
    const SmallCtx &s = *static_cast<const SmallCtx *>(arg);
    int64_t b0, b1;
    split_range(s.blocks, s.tasks, task, b0, b1);
    if (b0 < b1) small_range(s, b0, b1);
}

}  // namespace sgemm_detail

/* ------------------------------------------------------------------------ */
/* Public API                                                                */
/* ------------------------------------------------------------------------ */
/* C (M x N) = epilogue(op(A) @ op(B)) with A and B given by packers (see
 * StridedA, StridedB, PrepackedB). kc_align: K blocks (but the last) are a
 * multiple of it, for a packer that copies in runs of that many (1: any); a
 * PrepackedB must have been packed with the same kc_align. */
template <class PackA, class PackB>
int sgemm_with(const pask_cpu_runtime *rt, const PackA &pa, const PackB &pb, int64_t M, int64_t N, int64_t K,
               float *C, int64_t ldc, const GemmEpilogue &ep, int64_t kc_align = 1) {
    using namespace sgemm_detail;
    if (M <= 0 || N <= 0) return 0;
    if (K <= 0) {
        epilogue_only(M, N, C, ldc, ep);
        return 0;
    }
    GemmCtx g;
    g.M = M; g.N = N; g.K = K;
    g.C = C; g.ldc = ldc;
    g.ep = &ep;
    g.err = 0;
    g.kc_blk = kc_block(K, kc_align);
    g.mt_tiles = (M + MR - 1) / MR;
    g.nt_tiles = (N + NR - 1) / NR;

    int nth = (rt && rt->parallel_for && rt->num_threads > 1) ? rt->num_threads : 1;
    const double flops = 2.0 * (double)M * (double)N * (double)K;
    if (flops < 4.0e6) nth = 1;
    // Task grid tm x tn: the largest task (padded to whole tiles) plus the
    // packing every task repeats, in multiply-add units. The runtime hands
    // tasks out dynamically, so a few tasks per thread (when that costs
    // little) keep both threads busy if one of them is slowed down.
    int64_t best_tm = 1, best_tn = 1;
    if (nth > 1) {
        double best_cost = -1.0;
        int64_t cand_tm[3] = {0, 0, 0}, cand_tn[3] = {0, 0, 0};
        double cand_cost[3] = {-1.0, -1.0, -1.0};
        for (int f = 0; f < 3; ++f) {
            const int64_t T = (int64_t)nth << f;
            if (f > 0 && flops / (double)T < 8.0e6) break;
            for (int64_t tm = 1; tm <= T; ++tm) {
                if (T % tm) continue;
                const int64_t tn = T / tm;
                if (tm > g.mt_tiles || tn > g.nt_tiles) continue;
                const double mt = (double)((g.mt_tiles + tm - 1) / tm * MR);
                const double nt = (double)((g.nt_tiles + tn - 1) / tn * NR);
                const double cost =
                    (double)(1 << f) * (mt * nt * (double)K + 16.0 * (mt + nt) * (double)K);
                if (cand_cost[f] < 0 || cost < cand_cost[f]) {
                    cand_cost[f] = cost; cand_tm[f] = tm; cand_tn[f] = tn;
                }
            }
            if (cand_cost[f] >= 0 && (best_cost < 0 || cand_cost[f] < best_cost))
                best_cost = cand_cost[f];
        }
        if (best_cost < 0) {  // no exact factorisation fits: split the longer dimension
            if (g.mt_tiles >= g.nt_tiles) best_tm = std::min<int64_t>(nth, g.mt_tiles);
            else best_tn = std::min<int64_t>(nth, g.nt_tiles);
        } else {
            for (int f = 2; f >= 0; --f)
                if (cand_cost[f] >= 0 && cand_cost[f] <= 1.03 * best_cost) {
                    best_tm = cand_tm[f]; best_tn = cand_tn[f];
                    break;
                }
        }
    }
    g.tm = best_tm; g.tn = best_tn;
    const int64_t ntasks = g.tm * g.tn;
    GemmJob<PackA, PackB> job{&g, &pa, &pb};
    if (ntasks <= 1) {
        gemm_task<PackA, PackB>(&job, 0, 0);
    } else {
        rt->parallel_for(rt->self, ntasks, &gemm_task<PackA, PackB>, &job);
    }
    return g.err;
}

inline int sgemm(const pask_cpu_runtime *rt, bool trans_a, bool trans_b, int64_t M, int64_t N,
                 int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                 int64_t ldc, const GemmEpilogue &ep) {
    const sgemm_detail::StridedA pa{trans_a, A, lda};
    const sgemm_detail::StridedB pb{trans_b, B, ldb};
    return sgemm_with(rt, pa, pb, M, N, K, C, ldc, ep);
}

/* Floats sgemm_pack_b writes for a K x N op(B). */
inline int64_t sgemm_packed_b_floats(int64_t K, int64_t N) { return K * sgemm_detail::packed_width(N); }

/* op(B) (K x N) packed whole, once, for sgemm_with's PrepackedB{dst,
 * packed_width(N)} with the same kc_align: every K block's panels as the
 * driver would pack them call by call. */
inline void sgemm_pack_b(bool trans_b, int64_t K, int64_t N, const float *B, int64_t ldb, int64_t kc_align,
                         float *dst) {
    using namespace sgemm_detail;
    if (K <= 0 || N <= 0) return;
    const int64_t kcb = kc_block(K, kc_align), width = packed_width(N);
    for (int64_t pc = 0; pc < K; pc += kcb) pack_b(trans_b, B, ldb, pc, 0, std::min(kcb, K - pc), N, dst + pc * width);
}

inline int sgemm_small(const pask_cpu_runtime *rt, bool trans_a, bool trans_b, int64_t M, int64_t N,
                       int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                       float *C, int64_t ldc, const GemmEpilogue &ep) {
    using namespace sgemm_detail;
    if (M <= 0 || N <= 0) return 0;
    if (K <= 0) {
        epilogue_only(M, N, C, ldc, ep);
        return 0;
    }
    SmallCtx s;
    s.M = M; s.N = N; s.K = K;
    s.A = A; s.sai = trans_a ? 1 : lda; s.sap = trans_a ? lda : 1;
    s.B = B; s.sbp = trans_b ? 1 : ldb; s.sbj = trans_b ? ldb : 1;
    s.C = C; s.ldc = ldc;
    s.ep = &ep;
    Scratch &scr = scratch();
    int nth = (rt && rt->parallel_for && rt->num_threads > 1) ? rt->num_threads : 1;
    const double work = (double)M * (double)N * (double)K + (double)N * (double)K;
    if (work < 200000.0) nth = 1;
    const int nth_small = nth;
    s.cw = 0;
    if (M <= N) {
        if (!trans_b && M <= 4) {
            s.mode = 4;
            const int64_t per = (N + nth_small - 1) / nth_small;
            s.cw = std::min<int64_t>(SS_CW, std::max<int64_t>(VL, (per + VL - 1) / VL * VL));
            s.blocks = (N + s.cw - 1) / s.cw;
        } else if (!trans_b) {
            s.mode = 0;
            s.blocks = (N + 16 * VL - 1) / (16 * VL);
        } else {
            if (trans_a) {  // copy op(A) (M x K, M small) contiguous in p
                float *t = scr.t.get((size_t)(M * K));
                if (!t) return kOutOfMemory;
                for (int64_t p = 0; p < K; ++p)
                    for (int64_t i = 0; i < M; ++i) t[i * K + p] = A[p * lda + i];
                s.A = t; s.sai = K; s.sap = 1;
            }
            s.mode = 1;
            s.blocks = (N + SD_RJ - 1) / SD_RJ;
        }
    } else {
        if (trans_a) {
            s.mode = 3;
            s.blocks = (M + SC_IV * VL - 1) / (SC_IV * VL);
        } else {
            if (!trans_b) {  // copy op(B) (K x N, N small) as N x K
                float *t = scr.t.get((size_t)(N * K));
                if (!t) return kOutOfMemory;
                for (int64_t p = 0; p < K; ++p)
                    for (int64_t j = 0; j < N; ++j) t[j * K + p] = B[p * ldb + j];
                s.B = t; s.sbj = K; s.sbp = 1;
            }
            s.mode = 2;
            s.blocks = (M + SD_RI - 1) / SD_RI;
        }
    }
    s.tasks = std::min<int64_t>(nth, s.blocks);
    if (s.tasks <= 1) {
        s.tasks = 1;
        small_task(&s, 0, 0);
    } else {
        rt->parallel_for(rt->self, s.tasks, &small_task, &s);
    }
    return 0;
}

}  // namespace PASK_ISA_NS
}  // namespace pask_cpu

#endif /* PASK_CPU_SGEMM_HPP */
