/*
 * The interface between the paskdnn core (host C++) and its CUDA kernels.
 * Included by the host and by the kernel sources, which are compiled by nvcc
 * (prebuilt cubins) or NVRTC (at run time, into the user cache). No CUDA
 * header is needed by either side.
 *
 * Every kernel entry is   extern "C" __global__ void ENTRY(const PARAMS p)
 * with PARAMS one of the structs below passed by value. The element type is
 * fixed at compile time: -DPASK_DTYPE=0 float32 (TF32 tensor cores),
 * 1 float16, 2 bfloat16; accumulation is float32. Pointers are device
 * pointers; bias/residual are NULL when absent and have the tensors' dtype.
 * Epilogue on every output element:
 *     y = act(alpha * acc + beta * y_before + bias[o] + residual)
 * (y_before is read only when beta != 0).
 *
 * Launch geometry is computed on the host by the pask_cuda_*_launch functions
 * at the bottom of this header (host only).
 */
#ifndef PASK_CUDA_ABI_H
#define PASK_CUDA_ABI_H

#if defined(__CUDACC_RTC__) || defined(__HIPCC_RTC__)
typedef long long pask_i64;
#else
#include <stdint.h>
typedef int64_t pask_i64;
#endif

#define PASK_CUDA_DTYPE_F32 0
#define PASK_CUDA_DTYPE_F16 1
#define PASK_CUDA_DTYPE_BF16 2

#define PASK_CUDA_LAYOUT_NCHW 0 /* weights: OIHW */
#define PASK_CUDA_LAYOUT_NHWC 1 /* weights: OHWI */

/* pask_gemm_small_m / _bt serve m up to this many rows */
#define PASK_CUDA_SMALL_M 8

#define PASK_CUDA_ACT_NONE 0
#define PASK_CUDA_ACT_RELU 1
#define PASK_CUDA_ACT_RELU6 2
#define PASK_CUDA_ACT_SIGMOID 3
#define PASK_CUDA_ACT_SILU 4
#define PASK_CUDA_ACT_HARDSWISH 5
#define PASK_CUDA_ACT_HARDSIGMOID 6
#define PASK_CUDA_ACT_GELU 7
#define PASK_CUDA_ACT_GELU_TANH 8
#define PASK_CUDA_ACT_LEAKY_RELU 9 /* act_p[0] = negative_slope */
#define PASK_CUDA_ACT_CLAMP 10     /* act_p = lo, hi */

typedef struct pask_cuda_conv2d_params {
    pask_i64 n, c, h, w;       /* input, logical */
    pask_i64 o, kh, kw;        /* weight {o, c/groups, kh, kw} */
    pask_i64 oh, ow;
    pask_i64 stride_h, stride_w;
    pask_i64 pad_top, pad_left;
    pask_i64 dil_h, dil_w;
    pask_i64 groups;
    int layout;                /* x, y, residual */
    int weight_layout;
    const void *x;
    const void *weight;        /* (renamed from w: clashed with the width w above) */
    const void *bias;
    const void *residual;
    void *y;
    float alpha, beta;
    int activation;
    float act_p[2];            /* LEAKY_RELU's slope; CLAMP's lo, hi */
    int splits;                /* split-K slices; <= 1: none (the kernel writes y) */
    float *partial;            /* splits > 1: splits * (n*oh*ow) * o float32 partial sums
                                  (pask_conv2d_igemm_splitk_reduce sums them into y) */
    int y_nchw;                /* igemm: 1 = y and residual are NCHW while x and weight are
                                  NHWC / OHWI (NCHW input transposed first, pask_transpose) */
} pask_cuda_conv2d_params;

/* pask_transpose: dst[b][j][i] = src[b][i][j] for b < batch, i < rows, j < cols
 * (NCHW -> NHWC: rows = C, cols = H*W; OIHW -> OHWI: batch = O, rows = C/groups,
 * cols = KH*KW). */
typedef struct pask_cuda_transpose_params {
    pask_i64 batch, rows, cols;
    const void *src;
    void *dst;
} pask_cuda_transpose_params;

typedef struct pask_cuda_gemm_params {
    /* row-major C[m x n] = op(A)[m x k] @ op(B)[k x n] (+ bias[n]) */
    pask_i64 m, n, k;
    pask_i64 lda, ldb, ldc;
    int trans_a, trans_b;
    const void *a;
    const void *b;
    const void *bias;
    void *c;
    float alpha, beta;
    int activation;
    float act_p[2];            /* LEAKY_RELU's slope; CLAMP's lo, hi */
    int splits;                /* split-K slices; <= 1: none (the kernel writes c) */
    float *partial;            /* splits > 1: splits * m * n float32 partial sums
                                  (pask_gemm_splitk_reduce sums them into c) */
} pask_cuda_gemm_params;

typedef struct pask_cuda_pool2d_params {
    pask_i64 n, c, h, w;
    pask_i64 oh, ow;
    pask_i64 kh, kw;
    pask_i64 stride_h, stride_w;
    pask_i64 pad_top, pad_left, pad_bottom, pad_right;
    pask_i64 dil_h, dil_w;
    pask_i64 divisor_override; /* 0 = none */
    int mode;                  /* 0 max, 1 avg */
    int count_include_pad;
    int layout;
    int pad_;
    const void *x;
    void *y;
} pask_cuda_pool2d_params;

/* y = act(x * m + a), m and a (NULL: none) broadcast to x {n, c, h, w}:
 * m_stride / a_stride are their element strides along (n, c, h, w) in
 * logical order, 0 along a broadcast dim. y may be x. */
typedef struct pask_cuda_eltwise_params {
    pask_i64 n, c, h, w;
    pask_i64 m_stride[4];
    pask_i64 a_stride[4];
    int layout;
    int activation;
    float act_p[2];
    const void *x;
    const void *m;
    const void *a;
    void *y;
} pask_cuda_eltwise_params;

/* Inputs one cat launch copies; the host launches once per group of this many. */
#define PASK_CUDA_CAT_GROUP 24

/* One group of a cat: inputs xs[0..count) of cs[i] channels land at output
 * channels c_base + (cs[0] + ... + cs[i-1]); y has c_total channels. */
typedef struct pask_cuda_cat_params {
    pask_i64 n, h, w, c_total, c_base, c_group;
    pask_i64 cs[PASK_CUDA_CAT_GROUP];
    const void *xs[PASK_CUDA_CAT_GROUP];
    int count;
    int layout;
    void *y;
} pask_cuda_cat_params;

/* The vectorised NHWC depthwise entries' 3x3 path (stride 1 or 2 both ways, no
 * dilation) stages the weights of all C channels in shared memory, tap-major
 * (C * 9 elements, at most 48 KB: no opt-in needed): entries
 * pask_conv2d_depthwise_nhwc3_vec / _vec4, launched where this holds, with that
 * much dynamic shared memory (pask_cuda_depthwise_vec_entry,
 * pask_cuda_conv2d_depthwise_vec_launch). */
#define PASK_CUDA_DW3_SMEM_MAX 49152
#define PASK_CUDA_DW3_STAGED(kh, kw, sh, sw, dh, dw, c, es)                                                       \
    ((kh) == 3 && (kw) == 3 && (sh) == (sw) && ((sh) == 1 || (sh) == 2) && (dh) == 1 && (dw) == 1 &&              \
     (pask_i64)(c) * 9 * (es) <= PASK_CUDA_DW3_SMEM_MAX)

#if !defined(__CUDACC_RTC__) && !defined(__CUDACC__) && !defined(__HIP__)
/* ---- host-only launch geometry (kernel entries take the params struct by value) ----
 * Dynamic shared memory: igemm conv and gemm may ask for more than 48 KB (81920 bytes for
 * the 128x128 tile). Before such a launch the host must raise the function's limit once:
 *   cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES (= 8), 81920)
 * (PASK_CUDA_MAX_DYNAMIC_SMEM below; sm_80+ allow it). Pool uses none; the depthwise
 * vector entries at most PASK_CUDA_DW3_SMEM_MAX.
 * The tensor-core kernels pick their tile from block[0]: 256 threads = 128x128 tile,
 * 128 threads = 64x64 tile; only the geometry returned here is valid. */
#define PASK_CUDA_MAX_DYNAMIC_SMEM 81920u /* largest shared_bytes any launch function returns */

static inline pask_i64 pask_cuda_cdiv_(pask_i64 a, pask_i64 b) { return (a + b - 1) / b; }

/* grid for a (rows, cols) tile grid: x over rows, the cols tiles folded into y and z. */
/* Split-K slices for a grid of `ctas` output tiles over `kt` K tiles on a GPU
 * with `sms` multiprocessors (0 = do not split): a grid that leaves SMs idle is
 * split along K until it has about two CTAs per SM, each slice keeping at least
 * 6 K tiles, at most 32 slices; every slice gets at least one K tile. */
static inline int pask_cuda_splitk_(pask_i64 ctas, pask_i64 kt, int sms) {
    pask_i64 s, by_k, per;
    if (sms <= 0 || ctas <= 0 || ctas >= sms) return 1;
    s = (2 * (pask_i64)sms) / ctas;
    by_k = kt / 6;
    if (s > by_k) s = by_k;
    if (s > 32) s = 32;
    if (s < 2) return 1;
    per = pask_cuda_cdiv_(kt, s);
    return (int)pask_cuda_cdiv_(kt, per);
}

/* Grid of the mma kernels: x = row tiles; y, z = (column tiles x groups x
 * splits), linearised. big = the 128x128 tile (256 threads), else 64x64 (128). */
static inline void pask_cuda_mma_geom_(pask_i64 rows, pask_i64 cols, pask_i64 groups, int big, int splits,
                                       unsigned grid[3], unsigned block[3], unsigned *shared_bytes) {
    pask_i64 bm = big ? 128 : 64, bn = bm;
    pask_i64 total = pask_cuda_cdiv_(cols, bn) * groups * (splits > 1 ? splits : 1), gy;
    gy = total < 65535 ? total : 65535;
    if (gy < 1) gy = 1;
    grid[0] = (unsigned)pask_cuda_cdiv_(rows, bm);
    grid[1] = (unsigned)gy;
    grid[2] = (unsigned)pask_cuda_cdiv_(total, gy);
    block[0] = big ? 256u : 128u;
    block[1] = block[2] = 1u;
    /* stages * (BM + BN) rows * 80 bytes: 4 * 256 * 80 = 81920, 4 * 128 * 80 = 40960 */
    *shared_bytes = big ? 81920u : 40960u;
}

/* Sets p->splits (see pask_cuda_splitk_; sms = 0: none) and the launch of
 * pask_conv2d_igemm. elem_bytes: 4 (float32) or 2. When p->splits > 1 the
 * caller provides p->partial (pask_cuda_conv2d_igemm_partial_bytes) and runs
 * pask_conv2d_igemm_splitk_reduce (pask_cuda_splitk_reduce_launch) after it. */
static inline void pask_cuda_conv2d_igemm_launch(pask_cuda_conv2d_params *p, int elem_bytes, int sms, unsigned grid[3],
                                                 unsigned block[3], unsigned *shared_bytes) {
    pask_i64 M = p->n * p->oh * p->ow, og = p->o / p->groups;
    pask_i64 tiles_big = pask_cuda_cdiv_(M, 128) * pask_cuda_cdiv_(og, 128) * p->groups;
    int big = tiles_big >= 264; /* enough 128x128 tiles to fill ~2 waves of an H100 */
    pask_i64 tiles = big ? tiles_big : pask_cuda_cdiv_(M, 64) * pask_cuda_cdiv_(og, 64) * p->groups;
    pask_i64 kt = pask_cuda_cdiv_((p->c / p->groups) * p->kh * p->kw, 64 / elem_bytes);
    p->splits = pask_cuda_splitk_(tiles, kt, sms);
    pask_cuda_mma_geom_(M, og, p->groups, big, p->splits, grid, block, shared_bytes);
}

/* 32x32 tiles through shared memory (32 x 33 elements, at most 4224 bytes),
 * 256 threads; grid z = batch (at most 65535). */
static inline void pask_cuda_transpose_launch(const pask_cuda_transpose_params *t, int elem_bytes, unsigned grid[3],
                                              unsigned block[3], unsigned *shared_bytes) {
    grid[0] = (unsigned)pask_cuda_cdiv_(t->cols, 32);
    grid[1] = (unsigned)pask_cuda_cdiv_(t->rows, 32);
    grid[2] = (unsigned)t->batch;
    block[0] = 256u;
    block[1] = block[2] = 1u;
    *shared_bytes = (unsigned)(32 * 33 * elem_bytes);
}

/* NCHW input on the transposed path (x and weight transposed into scratch,
 * the kernel's 16-byte loads, y written NCHW): channels per group whole
 * 16-byte vectors, groups and batch within the transpose's grid, and a GEMM
 * large enough (M * K >= 2^22) that the element gather, not the two extra
 * passes, would dominate (H100: VGG-16's 3x3 layers at 56x56 and 28x28 ran
 * 4.7-6.7x cuDNN's time on the gather). */
static inline int pask_cuda_conv2d_nchw_transposed_ok(const pask_cuda_conv2d_params *p, int elem_bytes) {
    const pask_i64 cg = p->c / p->groups, vec = 16 / elem_bytes;
    return p->layout == PASK_CUDA_LAYOUT_NCHW && p->weight_layout == PASK_CUDA_LAYOUT_NCHW && cg % vec == 0 &&
           p->n <= 65535 && p->o <= 65535 && p->n * p->oh * p->ow * cg * p->kh * p->kw >= ((pask_i64)1 << 22);
}

static inline pask_i64 pask_cuda_conv2d_igemm_partial_bytes(const pask_cuda_conv2d_params *p) {
    return p->splits > 1 ? (pask_i64)p->splits * p->n * p->oh * p->ow * p->o * 4 : 0;
}

/* As pask_cuda_conv2d_igemm_launch, for pask_gemm / pask_gemm_splitk_reduce. */
static inline void pask_cuda_gemm_launch(pask_cuda_gemm_params *p, int elem_bytes, int sms, unsigned grid[3],
                                         unsigned block[3], unsigned *shared_bytes) {
    pask_i64 tiles_big = pask_cuda_cdiv_(p->m, 128) * pask_cuda_cdiv_(p->n, 128);
    int big = tiles_big >= 264;
    pask_i64 tiles = big ? tiles_big : pask_cuda_cdiv_(p->m, 64) * pask_cuda_cdiv_(p->n, 64);
    p->splits = pask_cuda_splitk_(tiles, pask_cuda_cdiv_(p->k, 64 / elem_bytes), sms);
    pask_cuda_mma_geom_(p->m, p->n, 1, big, p->splits, grid, block, shared_bytes);
}

/* The few-rows entries: m <= PASK_CUDA_SMALL_M, B 16-byte aligned with ldb a
 * multiple of a 16-byte vector; B not transposed (pask_gemm_small_m): n a
 * multiple of the vector; transposed (pask_gemm_small_m_bt): k a multiple of
 * the vector and A not transposed, 16-byte aligned, lda a multiple too. */
static inline int pask_cuda_gemm_small_m_ok(const pask_cuda_gemm_params *p, int elem_bytes) {
    const pask_i64 vec = 16 / elem_bytes;
    if (p->m < 1 || p->m > PASK_CUDA_SMALL_M || ((uintptr_t)p->b & 15u) != 0 || p->ldb % vec != 0) return 0;
    if (!p->trans_b) return p->n % vec == 0;
    return p->k % vec == 0 && !p->trans_a && p->lda % vec == 0 && ((uintptr_t)p->a & 15u) == 0;
}

/* Sets p->splits (K slices over grid y; sms = 0: none) and the launch of the
 * few-rows entry: about two 256-thread blocks per SM, a slice keeping at
 * least 32 rows of B (not transposed: 4 per warp) or a vector per lane
 * (transposed), at most 128 slices. Split K runs pask_gemm_splitk_reduce after it. */
static inline void pask_cuda_gemm_small_m_launch(pask_cuda_gemm_params *p, int elem_bytes, int sms, unsigned grid[3],
                                                 unsigned block[3], unsigned *shared_bytes) {
    const pask_i64 vec = 16 / elem_bytes;
    const pask_i64 gx = p->trans_b ? pask_cuda_cdiv_(p->n, 8) : pask_cuda_cdiv_(pask_cuda_cdiv_(p->n, vec), 32);
    const pask_i64 by_k = p->trans_b ? p->k / (vec * 32) : p->k / 32;
    pask_i64 s = sms > 0 ? pask_cuda_cdiv_(2 * (pask_i64)sms, gx) : 1;
    if (s > by_k) s = by_k;
    if (s > 128) s = 128;
    if (s < 1) s = 1;
    p->splits = (int)s;
    grid[0] = (unsigned)gx;
    grid[1] = (unsigned)s;
    grid[2] = 1u;
    block[0] = 256u;
    block[1] = block[2] = 1u;
    /* not transposed: the 8 warps' sums, [8][32][vec] float32 */
    *shared_bytes = p->trans_b ? 0u : (unsigned)(8 * 32 * vec * 4);
}

static inline pask_i64 pask_cuda_gemm_partial_bytes(const pask_cuda_gemm_params *p) {
    return p->splits > 1 ? (pask_i64)p->splits * p->m * p->n * 4 : 0;
}

static inline void pask_cuda_elementwise_geom_(pask_i64 work, unsigned grid[3], unsigned block[3],
                                               unsigned *shared_bytes) {
    pask_i64 b = pask_cuda_cdiv_(work, 256);
    if (b < 1) b = 1;
    if (b > 65535) b = 65535;
    grid[0] = (unsigned)b;
    grid[1] = grid[2] = 1u;
    block[0] = 256u;
    block[1] = block[2] = 1u;
    *shared_bytes = 0u;
}

/* The split-K reduction kernels: one thread per output element (grid-stride). */
static inline void pask_cuda_splitk_reduce_launch(pask_i64 outputs, unsigned grid[3], unsigned block[3],
                                                  unsigned *shared_bytes) {
    pask_cuda_elementwise_geom_(outputs, grid, block, shared_bytes);
}

static inline void pask_cuda_conv2d_depthwise_launch(const pask_cuda_conv2d_params *p, unsigned grid[3],
                                                     unsigned block[3], unsigned *shared_bytes) {
    pask_cuda_elementwise_geom_(p->n * p->o * p->oh * p->ow, grid, block, shared_bytes);
}

/* The vectorised NHWC depthwise entries (pask_conv2d_depthwise_nhwc_vec, _vec4):
 * NHWC, one output channel per input channel, channels a multiple of a 16-byte
 * vector (16 / elem_bytes), x, y and residual 16-byte aligned. */
static inline int pask_cuda_depthwise_vec_ok(const pask_cuda_conv2d_params *p, int elem_bytes) {
    const pask_i64 vec = 16 / elem_bytes;
    return p->layout == PASK_CUDA_LAYOUT_NHWC && p->groups == p->c && p->o == p->c && p->c % vec == 0 &&
           ((uintptr_t)p->x & 15u) == 0 && ((uintptr_t)p->y & 15u) == 0 && ((uintptr_t)p->residual & 15u) == 0;
}

/* Outputs per thread along a row (the entry: 4 = _vec4, else 1): 4 once that
 * still leaves 16384 threads or more (batched layers), 1 otherwise. */
static inline int pask_cuda_depthwise_vec_pixels(const pask_cuda_conv2d_params *p, int elem_bytes) {
    const pask_i64 cv = p->c / (16 / elem_bytes);
    return p->n * p->oh * pask_cuda_cdiv_(p->ow, 4) * cv >= 16384 ? 4 : 1;
}

/* The entry a vector launch takes: the staged 3x3 one where PASK_CUDA_DW3_STAGED
 * holds, else the generic one; pixels as pask_cuda_depthwise_vec_pixels. */
static inline const char *pask_cuda_depthwise_vec_entry(const pask_cuda_conv2d_params *p, int elem_bytes, int pixels) {
    if (PASK_CUDA_DW3_STAGED(p->kh, p->kw, p->stride_h, p->stride_w, p->dil_h, p->dil_w, p->c, elem_bytes))
        return pixels == 4 ? "pask_conv2d_depthwise_nhwc3_vec4" : "pask_conv2d_depthwise_nhwc3_vec";
    return pixels == 4 ? "pask_conv2d_depthwise_nhwc_vec4" : "pask_conv2d_depthwise_nhwc_vec";
}

static inline void pask_cuda_conv2d_depthwise_vec_launch(const pask_cuda_conv2d_params *p, int elem_bytes, int pixels,
                                                         unsigned grid[3], unsigned block[3], unsigned *shared_bytes) {
    pask_cuda_elementwise_geom_(p->n * p->oh * pask_cuda_cdiv_(p->ow, pixels) * (p->c / (16 / elem_bytes)), grid, block,
                                shared_bytes);
    if (PASK_CUDA_DW3_STAGED(p->kh, p->kw, p->stride_h, p->stride_w, p->dil_h, p->dil_w, p->c, elem_bytes))
        *shared_bytes = (unsigned)(p->c * 9 * elem_bytes);
}

static inline void pask_cuda_pool2d_launch(const pask_cuda_pool2d_params *p, unsigned grid[3], unsigned block[3],
                                           unsigned *shared_bytes) {
    pask_cuda_elementwise_geom_(p->n * p->c * p->oh * p->ow, grid, block, shared_bytes);
}

static inline void pask_cuda_pool2d_global_avg_launch(const pask_cuda_pool2d_params *p, unsigned grid[3],
                                                      unsigned block[3], unsigned *shared_bytes) {
    /* NCHW: a warp per (n, c); NHWC: a thread per (n, c) */
    pask_i64 work = p->layout == PASK_CUDA_LAYOUT_NHWC ? p->n * p->c : p->n * p->c * 32;
    pask_cuda_elementwise_geom_(work, grid, block, shared_bytes);
}
static inline void pask_cuda_eltwise_launch(const pask_cuda_eltwise_params *p, unsigned grid[3], unsigned block[3],
                                            unsigned *shared_bytes) {
    pask_cuda_elementwise_geom_(p->n * p->c * p->h * p->w, grid, block, shared_bytes);
}

static inline void pask_cuda_cat_launch(const pask_cuda_cat_params *p, unsigned grid[3], unsigned block[3],
                                        unsigned *shared_bytes) {
    pask_cuda_elementwise_geom_(p->n * p->c_group * p->h * p->w, grid, block, shared_bytes);
}
#endif /* host only */

#endif /* PASK_CUDA_ABI_H */
