/*
 * Device helpers shared by the paskdnn CUDA kernels (conv_igemm.cu, gemm.cu,
 * conv_depthwise.cu, pool.cu). No CUDA header: conversions, cp.async and
 * tensor-core mma through inline PTX. Needs sm_80+.
 * Element type by -DPASK_DTYPE: 0 float32 (TF32 mma), 1 float16, 2 bfloat16.
 *
 * The same sources compile for AMD GPUs (hipcc, hiprtc): pask_hip_compat.cuh
 * sets PASK_HIP, and the few PTX pieces below have a portable HIP branch
 * (bit casts, synchronous 16-byte copies, plain FMA loops for the warp tile).
 * The CUDA branch is the unchanged PTX.
 */
#ifndef PASK_CUDA_MMA_CUH
#define PASK_CUDA_MMA_CUH

#include "pask_hip_compat.cuh"

#include "pask_cuda_abi.h"

#ifndef PASK_DTYPE
#define PASK_DTYPE 0
#endif

#define PASK_DEV static __device__ __forceinline__

/* Full unrolling of a loop that may leave early (break) or runs a run-time
 * count: nvcc unrolls it; clang (HIP) cannot and would warn, so there it is
 * left to the compiler. */
#if PASK_HIP
#define PASK_UNROLL_CUDA
#else
#define PASK_UNROLL_CUDA _Pragma("unroll")
#endif

/* The portable main loop (synchronous 16-byte copies, an FMA warp tile): always
 * on HIP; on CUDA only when asked (-DPASK_PORTABLE_MMA=1), so that it can be
 * checked numerically on an NVIDIA GPU (tools/check_portable_kernels_cuda.sh). */
#ifndef PASK_PORTABLE_MMA
#define PASK_PORTABLE_MMA PASK_HIP
#endif

#if PASK_DTYPE == 0
typedef float pask_t;
#else
typedef unsigned short pask_t;
#endif
#define PASK_ES ((int)sizeof(pask_t))
#define PASK_VEC (16 / PASK_ES) /* elements per 16-byte vector */

#if PASK_HIP
PASK_DEV float pask_bits_f(unsigned u) { return __builtin_bit_cast(float, u); }
PASK_DEV unsigned pask_f_bits(float f) { return __builtin_bit_cast(unsigned, f); }

PASK_DEV float pask_to_f32(float v) { return v; }
PASK_DEV float pask_to_f32(unsigned short v) {
#if PASK_DTYPE == 1
    return (float)__builtin_bit_cast(_Float16, v);
#else
    return pask_bits_f(((unsigned)v) << 16);
#endif
}
PASK_DEV pask_t pask_from_f32(float f) {
#if PASK_DTYPE == 0
    return f;
#elif PASK_DTYPE == 1
    return __builtin_bit_cast(unsigned short, (_Float16)f);
#else
    unsigned u = pask_f_bits(f); /* round to nearest even; NaN stays NaN */
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
    return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
#endif
}
#else
PASK_DEV float pask_bits_f(unsigned u) {
    float f;
    asm("mov.b32 %0, %1;" : "=f"(f) : "r"(u));
    return f;
}
PASK_DEV unsigned pask_f_bits(float f) {
    unsigned u;
    asm("mov.b32 %0, %1;" : "=r"(u) : "f"(f));
    return u;
}

PASK_DEV float pask_to_f32(float v) { return v; }
PASK_DEV float pask_to_f32(unsigned short v) {
#if PASK_DTYPE == 1
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v));
    return f;
#else
    return pask_bits_f(((unsigned)v) << 16);
#endif
}
PASK_DEV pask_t pask_from_f32(float f) {
#if PASK_DTYPE == 0
    return f;
#elif PASK_DTYPE == 1
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#else
    unsigned short h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#endif
}
#endif /* PASK_HIP */
PASK_DEV float pask_ld(const pask_t *p, pask_i64 i) { return pask_to_f32(p[i]); }

#if !PASK_HIP
PASK_DEV unsigned pask_tf32(float f) {
    unsigned u;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(u) : "f"(f));
    return u;
}
#endif

/* float32 at full precision (-DPASK_F32_FULL=1, a context's float32_precision
 * "highest"): each operand is split into two TF32 numbers, v = big + small
 * (small = the rounding error of big, itself rounded to TF32), and a product
 * is big_a*big_b + big_a*small_b + small_a*big_b on the tensor cores
 * ("3xTF32"; small*small lies below float32's rounding). Otherwise float32
 * runs as TF32, one mma per product. */
#ifndef PASK_F32_FULL
#define PASK_F32_FULL 0
#endif
#define PASK_SPLIT_TF32 (PASK_DTYPE == 0 && PASK_F32_FULL && !PASK_HIP)

#if PASK_SPLIT_TF32
/* raw: a float32's bits; big, small: its two TF32 parts (big may alias raw). */
PASK_DEV void pask_split_tf32(unsigned raw, unsigned &big, unsigned &small) {
    const float v = pask_bits_f(raw);
    const unsigned b = pask_tf32(v);
    small = pask_tf32(v - pask_bits_f(b));
    big = b;
}
#endif

/* sigmoid(v) = 1 / (1 + exp(-v)), the exponent never positive (no overflow);
 * NaN takes the second branch and stays NaN, -inf gives 0, +inf 1. */
PASK_DEV float pask_sigmoidf(float v) {
    if (v >= 0.f) return 1.f / (1.f + expf(-v));
    const float e = expf(v);
    return e / (1.f + e);
}

/* The one activation of every CUDA/HIP epilogue (float, fp16 and bf16 alike: they
 * convert to float first). NaN propagates, PyTorch's rule: each comparison is
 * false for NaN, so v falls through. Not fmaxf/fminf: CUDA's fmaxf(NaN, 0) is 0.
 * relu(+inf) = inf, relu6(+inf) = 6, -inf -> 0.
 * The others are torch.nn.functional's (include/paskdnn.h), in float, written
 * without cancellation: 1 + erf(t) = erfc(-t), 0.5 * (1 + tanh(u)) = sigmoid(2u).
 * At -inf, silu / hardswish / gelu / gelu_tanh give their limit -0 (not
 * -inf * 0 = NaN); at +inf, +inf. leaky_relu (p0 its slope) and clamp (to
 * [p0, p1]) take the parameters (act_p of the params structs). */
PASK_DEV float pask_act(float v, int act, float p0, float p1) {
    const float kNegHuge = -3.402823466e38f;  // -FLT_MAX: v < it only for -inf
    if (act == PASK_CUDA_ACT_RELU) v = v < 0.f ? 0.f : v;
    else if (act == PASK_CUDA_ACT_LEAKY_RELU) v = v < 0.f ? v * p0 : v;  // p0: negative slope
    else if (act == PASK_CUDA_ACT_CLAMP) v = v < p0 ? p0 : (v > p1 ? p1 : v);  // [p0, p1]
    else if (act == PASK_CUDA_ACT_RELU6) v = v < 0.f ? 0.f : (v > 6.f ? 6.f : v);
    else if (act == PASK_CUDA_ACT_SIGMOID) v = pask_sigmoidf(v);
    else if (act == PASK_CUDA_ACT_SILU) v = v < kNegHuge ? -0.f : v * pask_sigmoidf(v);
    else if (act == PASK_CUDA_ACT_HARDSWISH) {
        const float t = v + 3.f;
        v = t < 0.f ? -0.f : (t > 6.f ? v : v * t * (1.f / 6.f));
    } else if (act == PASK_CUDA_ACT_HARDSIGMOID) {
        const float t = v + 3.f;
        v = t < 0.f ? 0.f : (t > 6.f ? 1.f : t * (1.f / 6.f));
    } else if (act == PASK_CUDA_ACT_GELU) {
        v = v < kNegHuge ? -0.f : 0.5f * v * erfcf(v * -0.70710678118654752f);
    } else if (act == PASK_CUDA_ACT_GELU_TANH) {
        const float u = 0.79788456080286535588f * (v + 0.044715f * v * v * v);  // sqrt(2/pi)
        v = v < kNegHuge ? -0.f : v * pask_sigmoidf(2.f * u);
    }
    return v;
}

#if PASK_PORTABLE_MMA
/* No asynchronous global->LDS copy here: a plain 16-byte copy (zero-filled past
 * `bytes`). The main loop's __syncthreads still orders every stage's writes
 * before its reads and after the previous reads of the same stage. */
PASK_DEV void pask_cp16(void *sdst, const void *gsrc, int bytes) {
    unsigned *d = (unsigned *)sdst;
    if (bytes == 16) {
        const unsigned *s = (const unsigned *)gsrc;
        d[0] = s[0];
        d[1] = s[1];
        d[2] = s[2];
        d[3] = s[3];
        return;
    }
    unsigned char *db = (unsigned char *)sdst;
    const unsigned char *sb = (const unsigned char *)gsrc;
    for (int i = 0; i < 16; ++i) db[i] = i < bytes ? sb[i] : (unsigned char)0;
}
/* One element of a scalar gather (zero when bytes == 0). */
PASK_DEV void pask_cp_elem(pask_t *sdst, const pask_t *gsrc, bool ok) { *sdst = ok ? *gsrc : pask_from_f32(0.f); }
PASK_DEV void pask_cp_commit() {}
template <int N> PASK_DEV void pask_cp_wait() {}
#else
PASK_DEV unsigned pask_smem_addr(const void *p) {
    unsigned r;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
    return r;
}
/* 16-byte async copy; bytes < 16 zero-fills the rest (0 = all zeros, src unread). */
PASK_DEV void pask_cp16(void *sdst, const void *gsrc, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(pask_smem_addr(sdst)), "l"(gsrc), "r"(bytes));
}
/* One element of a scalar gather into shared memory, zero when !ok (src unread).
 * float32: a 4-byte cp.async, so the gather joins the pipeline instead of
 * stalling on each load; 16-bit elements (below cp.async's 4 bytes): a plain load. */
PASK_DEV void pask_cp_elem(pask_t *sdst, const pask_t *gsrc, bool ok) {
#if PASK_DTYPE == 0
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(pask_smem_addr(sdst)), "l"(gsrc), "r"(ok ? 4 : 0));
#else
    *sdst = ok ? *gsrc : pask_from_f32(0.f);
#endif
}
PASK_DEV void pask_cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> PASK_DEV void pask_cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

#endif /* PASK_PORTABLE_MMA */

#if !PASK_HIP
/* D += A * B on one 16x8 tile; k = 16 (16-bit types) or 8 (tf32). */
PASK_DEV void pask_mma(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
#if PASK_DTYPE == 0
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif PASK_DTYPE == 1
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

#endif /* !PASK_HIP */

/*
 * Shared-memory tiles. One K step of a tile is 64 bytes: BK = 32 (16-bit) or
 * 16 (float32) elements, i.e. two mma k-steps.
 *  "RK" layout (k contiguous): R rows of 80 bytes (64 data + 16 pad) = 20 words.
 *  "KR" layout (row contiguous): BK rows of (R + 8) elements.
 */
#define PASK_BK (64 / PASK_ES)
#define PASK_ROWW 20

#if PASK_PORTABLE_MMA
/* One element of a tile as float: row `row`, k index `k`. */
template <bool KR, int R> PASK_DEV float pask_elem(const unsigned *s, int row, int k) {
#if PASK_DTYPE == 0
    return !KR ? ((const float *)s)[row * PASK_ROWW + k] : ((const float *)s)[k * (R + 8) + row];
#else
    const unsigned short *h = (const unsigned short *)s;
    return pask_to_f32(!KR ? h[row * 2 * PASK_ROWW + k] : h[k * (R + 8) + row]);
#endif
}

/* The same accumulator elements per lane as the mma.sync path (lane = 4g + t
 * owns rows g and g + 8, columns 2t and 2t + 1 of each 16x8 tile), computed
 * with plain FMAs over the stage's BK values, so the epilogues are shared. */
template <int MI, int NI, bool AKR, bool BKR, int BM, int BN>
PASK_DEV void pask_warp_mma(float (&acc)[MI][NI][4], const unsigned *sA, const unsigned *sB, int am0, int bn0, int lane) {
    const int g = lane >> 2, t = lane & 3;
    for (int k = 0; k < PASK_BK; ++k) {
        float a[MI][2], b[NI][2];
#pragma unroll
        for (int mi = 0; mi < MI; ++mi) {
            a[mi][0] = pask_elem<AKR, BM>(sA, am0 + mi * 16 + g, k);
            a[mi][1] = pask_elem<AKR, BM>(sA, am0 + mi * 16 + g + 8, k);
        }
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) {
            b[ni][0] = pask_elem<BKR, BN>(sB, bn0 + ni * 8 + 2 * t, k);
            b[ni][1] = pask_elem<BKR, BN>(sB, bn0 + ni * 8 + 2 * t + 1, k);
        }
#pragma unroll
        for (int mi = 0; mi < MI; ++mi)
#pragma unroll
            for (int ni = 0; ni < NI; ++ni) {
                acc[mi][ni][0] += a[mi][0] * b[ni][0];
                acc[mi][ni][1] += a[mi][0] * b[ni][1];
                acc[mi][ni][2] += a[mi][1] * b[ni][0];
                acc[mi][ni][3] += a[mi][1] * b[ni][1];
            }
    }
}
#else
template <bool KR, int R> PASK_DEV unsigned pask_frag(const unsigned *s, int row, int k) {
#if PASK_SPLIT_TF32
    return !KR ? s[row * PASK_ROWW + k] : s[k * (R + 8) + row]; /* split in pask_warp_mma */
#elif PASK_DTYPE == 0
    float v = !KR ? ((const float *)s)[row * PASK_ROWW + k] : ((const float *)s)[k * (R + 8) + row];
    return pask_tf32(v);
#else
    if (!KR) return s[row * PASK_ROWW + (k >> 1)];
    const unsigned short *h = (const unsigned short *)s;
    return (unsigned)h[k * (R + 8) + row] | ((unsigned)h[(k + 1) * (R + 8) + row] << 16);
#endif
}

/* Four 8x8 matrices of 16-byte rows from shared memory (row addresses from lanes
 * 8i..8i+7 for matrix i); lane l gets the 32-bit word (l % 4) of row l / 4 of each. */
PASK_DEV void pask_ldmatrix_x4(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* acc[MI][NI] += A(rows am0.., BK) * B(rows bn0.., BK)^T over one smem stage.
 * RK tiles (k contiguous, 80-byte rows: conflict-free) are read with ldmatrix:
 * one x4 per 16-row A fragment and per two 8-row B fragments. KR tiles (GEMM
 * transposes) are read a 32-bit word per register. */
template <int MI, int NI, bool AKR, bool BKR, int BM, int BN>
PASK_DEV void pask_warp_mma(float (&acc)[MI][NI][4], const unsigned *sA, const unsigned *sB, int am0, int bn0, int lane) {
    static_assert(NI % 2 == 0, "B fragments are loaded in pairs");
    const int g = lane >> 2, t = lane & 3;
#if PASK_DTYPE == 0
    const int KS = 8, KO = 4, kt0 = t;
#else
    const int KS = 16, KO = 8, kt0 = 2 * t;
#endif
    /* ldmatrix row addresses: A matrices (rows 0-7 | 8-15) x (k 0 | KO);
       B matrices (k 0 | KO) x (rows 0-7 | 8-15) */
    const int mat = lane >> 3;
    const unsigned a_lane = pask_smem_addr(sA) + (unsigned)((am0 + (lane & 7) + (mat & 1) * 8) * PASK_ROWW * 4 +
                                                            (mat >> 1) * KO * PASK_ES);
    const unsigned b_lane = pask_smem_addr(sB) + (unsigned)((bn0 + (lane & 7) + (mat >> 1) * 8) * PASK_ROWW * 4 +
                                                            (mat & 1) * KO * PASK_ES);
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
        unsigned a[MI][4], b[NI][2];
        const int k = ks * KS + kt0;
#pragma unroll
        for (int mi = 0; mi < MI; ++mi) {
            if (!AKR) {
                pask_ldmatrix_x4(a[mi], a_lane + (unsigned)(mi * 16 * PASK_ROWW * 4 + ks * KS * PASK_ES));
#if PASK_DTYPE == 0 && !PASK_SPLIT_TF32
#pragma unroll
                for (int j = 0; j < 4; ++j) a[mi][j] = pask_tf32(pask_bits_f(a[mi][j]));
#endif
            } else {
                const int r = am0 + mi * 16 + g;
                a[mi][0] = pask_frag<AKR, BM>(sA, r, k);
                a[mi][1] = pask_frag<AKR, BM>(sA, r + 8, k);
                a[mi][2] = pask_frag<AKR, BM>(sA, r, k + KO);
                a[mi][3] = pask_frag<AKR, BM>(sA, r + 8, k + KO);
            }
        }
#pragma unroll
        for (int ni = 0; ni < NI; ni += 2) {
            if (!BKR) {
                unsigned r4[4];
                pask_ldmatrix_x4(r4, b_lane + (unsigned)(ni * 8 * PASK_ROWW * 4 + ks * KS * PASK_ES));
#if PASK_DTYPE == 0 && !PASK_SPLIT_TF32
#pragma unroll
                for (int j = 0; j < 4; ++j) r4[j] = pask_tf32(pask_bits_f(r4[j]));
#endif
                b[ni][0] = r4[0];
                b[ni][1] = r4[1];
                b[ni + 1][0] = r4[2];
                b[ni + 1][1] = r4[3];
            } else {
#pragma unroll
                for (int nj = ni; nj < ni + 2; ++nj) {
                    const int r = bn0 + nj * 8 + g;
                    b[nj][0] = pask_frag<BKR, BN>(sB, r, k);
                    b[nj][1] = pask_frag<BKR, BN>(sB, r, k + KO);
                }
            }
        }
#if PASK_SPLIT_TF32
        unsigned as[MI][4], bs[NI][2];
#pragma unroll
        for (int mi = 0; mi < MI; ++mi)
#pragma unroll
            for (int j = 0; j < 4; ++j) pask_split_tf32(a[mi][j], a[mi][j], as[mi][j]);
#pragma unroll
        for (int ni = 0; ni < NI; ++ni)
#pragma unroll
            for (int j = 0; j < 2; ++j) pask_split_tf32(b[ni][j], b[ni][j], bs[ni][j]);
#pragma unroll
        for (int mi = 0; mi < MI; ++mi)
#pragma unroll
            for (int ni = 0; ni < NI; ++ni) { /* the small terms first */
                pask_mma(acc[mi][ni], as[mi], b[ni]);
                pask_mma(acc[mi][ni], a[mi], bs[ni]);
                pask_mma(acc[mi][ni], a[mi], b[ni]);
            }
#else
#pragma unroll
        for (int mi = 0; mi < MI; ++mi)
#pragma unroll
            for (int ni = 0; ni < NI; ++ni) pask_mma(acc[mi][ni], a[mi], b[ni]);
#endif
    }
}
#endif /* PASK_PORTABLE_MMA */

/* The block's main loop, shared by the conv and GEMM kernels: acc (zeroed here)
 * accumulates K in BK-wide tiles through a STAGES-deep cp.async pipeline;
 * load_tile(stage, kt) issues the copies of tile kt into shared-memory stage,
 * and is called for kt = 0, 1, 2, ... in that order (loaders may keep state). */
template <int STAGES, int MI, int NI, bool AKR, bool BKR, int BM, int BN, int WARPS_M, int WM, int WN, int STAGE_WORDS,
          int A_WORDS, typename LoadTile>
PASK_DEV void pask_mainloop(float (&acc)[MI][NI][4], const unsigned *smem, int KT, int tid, LoadTile &&load_tile) {
#pragma unroll
    for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < NI; ++ni)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[mi][ni][j] = 0.f;
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < KT) load_tile(s, s);
        pask_cp_commit();
    }
    const int warp = tid >> 5, lane = tid & 31;
    const int wm = warp % WARPS_M, wn = warp / WARPS_M;
    for (int kt = 0; kt < KT; ++kt) {
        pask_cp_wait<STAGES - 2>();
        __syncthreads();
        const int nk = kt + STAGES - 1;
        if (nk < KT) load_tile(nk % STAGES, nk);
        pask_cp_commit();
        const unsigned *sA = smem + (kt % STAGES) * STAGE_WORDS;
        pask_warp_mma<MI, NI, AKR, BKR, BM, BN>(acc, sA, sA + A_WORDS, wm * WM, wn * WN, lane);
    }
    pask_cp_wait<0>();
}

#define PASK_RK_ELEMS (80 / PASK_ES) /* elements per RK row */

/* 16 bytes of elements (PASK_VEC of them) in registers: one vector load or store. */
struct __align__(16) pask_v16 {
    unsigned u[4];
};

PASK_DEV float pask_v16_get(const pask_v16 &v, int j) {
#if PASK_DTYPE == 0
    return pask_bits_f(v.u[j]);
#else
    return pask_to_f32((unsigned short)(v.u[j >> 1] >> ((j & 1) * 16)));
#endif
}

PASK_DEV void pask_v16_put(pask_v16 &v, int j, float f) {
#if PASK_DTYPE == 0
    v.u[j] = pask_f_bits(f);
#else
    const unsigned h = (unsigned)pask_from_f32(f), sh = (unsigned)(j & 1) * 16u;
    v.u[j >> 1] = (v.u[j >> 1] & ~(0xffffu << sh)) | (h << sh);
#endif
}

/* Two floats, one 8-byte shared-memory store (float2 without the CUDA headers). */
struct __align__(8) pask_f2 {
    float x, y;
};

/* The sum of v over the 32 lanes of a warp, in every lane. */
PASK_DEV float pask_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float t;
#if PASK_HIP
        t = PASK_SHFL_XOR(v, o);
#else
        asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 31, 0xffffffff;" : "=f"(t) : "f"(v), "r"(o));
#endif
        v += t;
    }
    return v;
}

#endif /* PASK_CUDA_MMA_CUH */
