// Entry points for tests/test_hip_kernels_on_cpu.py: one kernel source
// (-DPASK_EMU_SOURCE='"conv_igemm.cu"', -DPASK_DTYPE=d) run on the CPU through
// its HIP path, with the launch geometry the HIP solvers use
// (src/providers/native/hip_solvers.cpp: the 64x64 tile for igemm and gemm).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "gpu_on_cpu.hpp"

#include PASK_EMU_SOURCE

#define EXPORT extern "C" __attribute__((visibility("default")))

// The epilogue's activation parameters (leaky_relu's slope, clamp's bounds) for
// the conv and gemm entries below; 0 until set.
static float g_act_p[2] = {0.f, 0.f};
EXPORT void emu_set_act_params(float p0, float p1) {
    g_act_p[0] = p0;
    g_act_p[1] = p1;
}

#ifdef PASK_EMU_CONV
// d: n, c, h, w, o, kh, kw, oh, ow, stride_h, stride_w, pad_top, pad_left,
//    dil_h, dil_w, groups, layout, weight_layout, activation
// splits > 1 (igemm): split-K into that many slices of K tiles, then the reduce kernel;
// depthwise: the entry (below).
static pask_cuda_conv2d_params emu_conv_params(const int64_t *d, float alpha, float beta, const void *x,
                                               const void *w, const void *bias, const void *residual, void *y) {
    pask_cuda_conv2d_params q{};
    q.n = d[0]; q.c = d[1]; q.h = d[2]; q.w = d[3]; q.o = d[4]; q.kh = d[5]; q.kw = d[6]; q.oh = d[7]; q.ow = d[8];
    q.stride_h = d[9]; q.stride_w = d[10]; q.pad_top = d[11]; q.pad_left = d[12]; q.dil_h = d[13]; q.dil_w = d[14];
    q.groups = d[15]; q.layout = int(d[16]); q.weight_layout = int(d[17]); q.activation = int(d[18]);
    q.x = x; q.weight = w; q.bias = bias; q.residual = residual; q.y = y; q.alpha = alpha; q.beta = beta;
    q.act_p[0] = g_act_p[0]; q.act_p[1] = g_act_p[1];
    return q;
}

#ifndef PASK_EMU_DEPTHWISE
// The igemm kernel with the HIP solvers' 64x64 tile (big: the CUDA solvers' 128x128
// tile on 256 threads), split K into `splits` slices, then the reduce kernel.
static void emu_igemm(pask_cuda_conv2d_params q, int splits, int big = 0) {
    unsigned grid[3], block[3], smem = 0;
    q.splits = splits;
    std::vector<float> partial(splits > 1 ? size_t(splits) * size_t(q.n * q.oh * q.ow * q.o) : 0, -1e30f);
    q.partial = partial.data();
    pask_cuda_mma_geom_(q.n * q.oh * q.ow, q.o / q.groups, q.groups, big, splits, grid, block, &smem);
    pask_emu_launch(pask_conv2d_igemm, q, grid, block);
    if (splits > 1) {
        pask_cuda_splitk_reduce_launch(q.n * q.oh * q.ow * q.o, grid, block, &smem);
        pask_emu_launch(pask_conv2d_igemm_splitk_reduce, q, grid, block);
    }
}
#endif

EXPORT void emu_conv2d(const int64_t *d, float alpha, float beta, const void *x, const void *w, const void *bias,
                       const void *residual, void *y, int splits) {
    pask_cuda_conv2d_params q = emu_conv_params(d, alpha, beta, x, w, bias, residual, y);
#ifdef PASK_EMU_DEPTHWISE
    unsigned grid[3], block[3], smem = 0;
    // splits: the vectorised NHWC entry with that many outputs per thread (1, 4); 0 the scalar one
    const int es = int(sizeof(pask_t));
    if (splits == 1 || splits == 4) {
        pask_cuda_conv2d_depthwise_vec_launch(&q, es, splits, grid, block, &smem);
        // the entry the CUDA solver would take, by its name
        const std::string entry = pask_cuda_depthwise_vec_entry(&q, es, splits);
        const bool staged = entry.find("nhwc3_") != std::string::npos;
        if (staged != (smem > 0) || smem > sizeof(pask_smem)) std::abort();  // the launch and the entry disagree
        if (staged)
            pask_emu_launch(splits == 4 ? pask_conv2d_depthwise_nhwc3_vec4 : pask_conv2d_depthwise_nhwc3_vec, q, grid, block);
        else
            pask_emu_launch(splits == 4 ? pask_conv2d_depthwise_nhwc_vec4 : pask_conv2d_depthwise_nhwc_vec, q, grid, block);
        return;
    }
    pask_cuda_conv2d_depthwise_launch(&q, grid, block, &smem);
    pask_emu_launch(pask_conv2d_depthwise, q, grid, block);
#else
    emu_igemm(q, splits);
#endif
}

#ifndef PASK_EMU_DEPTHWISE
// As emu_conv2d (igemm, unsplit) with the 128x128 tile of the CUDA launches:
// the same source's other tile configuration, which AMD's 64 KB of LDS rules out.
EXPORT void emu_conv2d_tile128(const int64_t *d, float alpha, float beta, const void *x, const void *w,
                               const void *bias, const void *residual, void *y) {
    emu_igemm(emu_conv_params(d, alpha, beta, x, w, bias, residual, y), 1, 1);
}
#endif
#endif

#if defined(PASK_EMU_CONV) && !defined(PASK_EMU_DEPTHWISE)
// The transposed NCHW path of ConvIgemm::run (src/providers/native/cuda_solvers.cpp):
// x NCHW -> NHWC and the OIHW weight -> OHWI through pask_transpose, then the
// igemm kernel with y_nchw = 1 (y, residual NCHW); d as emu_conv2d's, layouts NCHW.
EXPORT void emu_conv2d_nchw_transposed(const int64_t *d, float alpha, float beta, const void *x, const void *w,
                                       const void *bias, const void *residual, void *y, int splits) {
    pask_cuda_conv2d_params q = emu_conv_params(d, alpha, beta, x, w, bias, residual, y);
    const int64_t cg = q.c / q.groups;
    std::vector<pask_t> xt(size_t(q.n * q.c * q.h * q.w)), wt(size_t(q.o * cg * q.kh * q.kw));
    unsigned grid[3], block[3], smem = 0;
    pask_cuda_transpose_params t{q.n, q.c, q.h * q.w, x, xt.data()};
    pask_cuda_transpose_launch(&t, int(sizeof(pask_t)), grid, block, &smem);
    pask_emu_launch(pask_transpose, t, grid, block);
    t = pask_cuda_transpose_params{q.o, cg, q.kh * q.kw, w, wt.data()};
    pask_cuda_transpose_launch(&t, int(sizeof(pask_t)), grid, block, &smem);
    pask_emu_launch(pask_transpose, t, grid, block);
    q.x = xt.data(); q.weight = wt.data();
    q.layout = q.weight_layout = PASK_CUDA_LAYOUT_NHWC;
    q.y_nchw = 1;
    emu_igemm(q, splits);
}
#endif

#ifdef PASK_EMU_GEMM
// d: m, n, k, lda, ldb, ldc, trans_a, trans_b, activation
static pask_cuda_gemm_params emu_gemm_params(const int64_t *d, float alpha, float beta, const void *a, const void *b,
                                             const void *bias, void *c) {
    pask_cuda_gemm_params q{};
    q.m = d[0]; q.n = d[1]; q.k = d[2]; q.lda = d[3]; q.ldb = d[4]; q.ldc = d[5];
    q.trans_a = int(d[6]); q.trans_b = int(d[7]); q.activation = int(d[8]);
    q.a = a; q.b = b; q.bias = bias; q.c = c; q.alpha = alpha; q.beta = beta;
    q.act_p[0] = g_act_p[0]; q.act_p[1] = g_act_p[1];
    return q;
}

EXPORT void emu_gemm(const int64_t *d, float alpha, float beta, const void *a, const void *b, const void *bias,
                     void *c, int splits) {
    pask_cuda_gemm_params q = emu_gemm_params(d, alpha, beta, a, b, bias, c);
    unsigned grid[3], block[3], smem = 0;
    q.splits = splits;
    std::vector<float> partial(splits > 1 ? size_t(splits) * size_t(q.m * q.n) : 0, -1e30f);
    q.partial = partial.data();
    pask_cuda_mma_geom_(q.m, q.n, 1, 0, splits, grid, block, &smem);
    pask_emu_launch(pask_gemm, q, grid, block);
    if (splits > 1) {
        pask_cuda_splitk_reduce_launch(q.m * q.n, grid, block, &smem);
        pask_emu_launch(pask_gemm_splitk_reduce, q, grid, block);
    }
}

// The few-rows entries (pask_gemm_small_m, _bt by trans_b) with their launch
// geometry, K split over `splits` slices (grid y) then the reduce kernel.
EXPORT void emu_gemm_small_m(const int64_t *d, float alpha, float beta, const void *a, const void *b,
                             const void *bias, void *c, int splits) {
    pask_cuda_gemm_params q = emu_gemm_params(d, alpha, beta, a, b, bias, c);
    unsigned grid[3], block[3], smem = 0;
    pask_cuda_gemm_small_m_launch(&q, int(sizeof(pask_t)), 0, grid, block, &smem);
    q.splits = splits;
    grid[1] = unsigned(splits);
    std::vector<float> partial(splits > 1 ? size_t(splits) * size_t(q.m * q.n) : 0, -1e30f);
    q.partial = partial.data();
    pask_emu_launch(q.trans_b ? pask_gemm_small_m_bt : pask_gemm_small_m, q, grid, block);
    if (splits > 1) {
        pask_cuda_splitk_reduce_launch(q.m * q.n, grid, block, &smem);
        pask_emu_launch(pask_gemm_splitk_reduce, q, grid, block);
    }
}
#endif

#ifdef PASK_EMU_ELTWISE
// d: n, c, h, w, layout, activation, m_stride[4], a_stride[4]; p: the activation's parameters
EXPORT void emu_eltwise(const int64_t *d, const float *p, const void *x, const void *m, const void *a, void *y) {
    pask_cuda_eltwise_params q{};
    q.act_p[0] = p[0];
    q.act_p[1] = p[1];
    q.n = d[0]; q.c = d[1]; q.h = d[2]; q.w = d[3]; q.layout = int(d[4]); q.activation = int(d[5]);
    for (int i = 0; i < 4; ++i) q.m_stride[i] = d[6 + i], q.a_stride[i] = d[10 + i];
    q.x = x; q.m = m; q.a = a; q.y = y;
    unsigned grid[3], block[3], smem = 0;
    pask_cuda_eltwise_launch(&q, grid, block, &smem);
    pask_emu_launch(pask_eltwise, q, grid, block);
}

// d: n, h, w, layout, count; cs: count channels; xs: count pointers. Launched
// in groups of PASK_CUDA_CAT_GROUP as the solver does.
EXPORT void emu_cat(const int64_t *d, const int64_t *cs, const void *const *xs, void *y) {
    int64_t total = 0;
    for (int64_t i = 0; i < d[4]; ++i) total += cs[i];
    int64_t base = 0;
    for (int64_t g = 0; g < d[4]; g += PASK_CUDA_CAT_GROUP) {
        pask_cuda_cat_params q{};
        q.n = d[0]; q.h = d[1]; q.w = d[2]; q.layout = int(d[3]); q.c_total = total; q.c_base = base; q.y = y;
        q.count = int(d[4] - g < PASK_CUDA_CAT_GROUP ? d[4] - g : PASK_CUDA_CAT_GROUP);
        for (int i = 0; i < q.count; ++i) q.cs[i] = cs[g + i], q.xs[i] = xs[g + i], q.c_group += cs[g + i];
        unsigned grid[3], block[3], smem = 0;
        pask_cuda_cat_launch(&q, grid, block, &smem);
        pask_emu_launch(pask_cat, q, grid, block);
        base += q.c_group;
    }
}
#endif

#ifdef PASK_EMU_POOL
// d: n, c, h, w, oh, ow, kh, kw, stride_h, stride_w, pad_top, pad_left, pad_bottom,
//    pad_right, dil_h, dil_w, divisor_override, mode, count_include_pad, layout
EXPORT void emu_pool2d(const int64_t *d, int global, const void *x, void *y) {
    pask_cuda_pool2d_params q{};
    q.n = d[0]; q.c = d[1]; q.h = d[2]; q.w = d[3]; q.oh = d[4]; q.ow = d[5]; q.kh = d[6]; q.kw = d[7];
    q.stride_h = d[8]; q.stride_w = d[9]; q.pad_top = d[10]; q.pad_left = d[11]; q.pad_bottom = d[12];
    q.pad_right = d[13]; q.dil_h = d[14]; q.dil_w = d[15]; q.divisor_override = d[16]; q.mode = int(d[17]);
    q.count_include_pad = int(d[18]); q.layout = int(d[19]); q.x = x; q.y = y;
    unsigned grid[3], block[3], smem = 0;
    if (global) {
        pask_cuda_pool2d_global_avg_launch(&q, grid, block, &smem);
        pask_emu_launch(pask_pool2d_global_avg, q, grid, block);
    } else {
        pask_cuda_pool2d_launch(&q, grid, block, &smem);
        pask_emu_launch(pask_pool2d, q, grid, block);
    }
}
#endif
