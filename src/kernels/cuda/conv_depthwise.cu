/*
 * paskdnn: depthwise 2-D convolution (groups == C, O = C * multiplier) on the
 * CUDA cores, both layouts, fused epilogue. Entry: pask_conv2d_depthwise, one
 * thread per output element, grid-stride (1-D grid, pask_cuda_conv2d_depthwise_launch);
 * the vectorised NHWC entries below serve the common case (one channel per group).
 * Weight {O, 1, KH, KW}: OIHW and OHWI address alike. Optional PASK_FIXED_* as in conv_igemm.cu.
 */
#include "pask_cuda_mma.cuh"

#include "pask_cuda_geometry.cuh"

extern "C" __global__ void __launch_bounds__(256) pask_conv2d_depthwise(const pask_cuda_conv2d_params p) {
    const int KH = PASK_KH, KW = PASK_KW, SH = PASK_SH, SW = PASK_SW, PT = PASK_PT, PL = PASK_PL, DH = PASK_DH,
              DW = PASK_DW;
    const int H = (int)p.h, W = (int)p.w, C = (int)p.c, O = (int)p.o, OH = (int)p.oh, OW = (int)p.ow;
    const int mult = O / C;
    const bool nhwc = p.layout == PASK_CUDA_LAYOUT_NHWC;
    const pask_t *__restrict__ x = (const pask_t *)p.x;
    const pask_t *__restrict__ wt = (const pask_t *)p.weight;
    const pask_t *__restrict__ bias = (const pask_t *)p.bias;
    const pask_t *__restrict__ res = (const pask_t *)p.residual;
    pask_t *__restrict__ y = (pask_t *)p.y;
    const float alpha = p.alpha, beta = p.beta;
    const int act = p.activation;
    const pask_i64 total = p.n * (pask_i64)O * OH * OW;
    for (pask_i64 i = (pask_i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (pask_i64)gridDim.x * blockDim.x) {
        int o, oh, ow;
        pask_i64 nimg, t = i;
        if (nhwc) {
            o = (int)(t % O); t /= O;
            ow = (int)(t % OW); t /= OW;
            oh = (int)(t % OH); nimg = t / OH;
        } else {
            ow = (int)(t % OW); t /= OW;
            oh = (int)(t % OH); t /= OH;
            o = (int)(t % O); nimg = t / O;
        }
        const int c = o / mult;
        const pask_i64 xbase = nhwc ? nimg * H * W * C + c : (nimg * C + c) * H * W;
        const pask_i64 xs = nhwc ? C : 1;
        const pask_t *wo = wt + (pask_i64)o * KH * KW;
        const int ih0 = oh * SH - PT, iw0 = ow * SW - PL;
        float acc = 0.f;
        for (int r = 0; r < KH; ++r) {
            const int ih = ih0 + r * DH;
            if ((unsigned)ih >= (unsigned)H) continue;
            const pask_i64 rb = xbase + (pask_i64)ih * W * xs;
#pragma unroll 3
            for (int s = 0; s < KW; ++s) {
                const int iw = iw0 + s * DW;
                if ((unsigned)iw >= (unsigned)W) continue;
                acc += pask_ld(x, rb + iw * xs) * pask_ld(wo, r * KW + s);
            }
        }
        float v = alpha * acc;
        if (beta != 0.f) v += beta * pask_ld(y, i);
        if (bias) v += pask_ld(bias, o);
        if (res) v += pask_ld(res, i);
        y[i] = pask_from_f32(pask_act(v, act, p.act_p[0], p.act_p[1]));
    }
}

/*
 * The vector entries' epilogue: a thread's PIX outputs along row oh from
 * column ow0, channels c0 .. c0 + PASK_VEC - 1 (16-byte vectors of y and the
 * residual): alpha * acc + bias (+ beta * y) (+ residual), then the activation.
 */
template <int PIX>
PASK_DEV void pask_dw_store_vec(const pask_cuda_conv2d_params &p, const float (&acc)[PIX][PASK_VEC], pask_i64 nimg,
                                int oh, int ow0, int c0) {
    const int C = (int)p.c, OH = (int)p.oh, OW = (int)p.ow;
    const pask_t *__restrict__ bias = (const pask_t *)p.bias;
    const pask_t *__restrict__ res = (const pask_t *)p.residual;
    pask_t *__restrict__ y = (pask_t *)p.y;
    float bv[PASK_VEC];
#pragma unroll
    for (int j = 0; j < PASK_VEC; ++j) bv[j] = bias ? pask_ld(bias, c0 + j) : 0.f;
PASK_UNROLL_CUDA
    for (int q = 0; q < PIX; ++q) {
        if (ow0 + q >= OW) break;
        const pask_i64 at = ((nimg * OH + oh) * OW + ow0 + q) * C + c0;
        pask_v16 before = {{0u, 0u, 0u, 0u}}, rv = {{0u, 0u, 0u, 0u}}, out = {{0u, 0u, 0u, 0u}};
        if (p.beta != 0.f) before = *(const pask_v16 *)(y + at);
        if (res) rv = *(const pask_v16 *)(res + at);
#pragma unroll
        for (int j = 0; j < PASK_VEC; ++j) {
            float v = p.alpha * acc[q][j] + bv[j];
            if (p.beta != 0.f) v += p.beta * pask_v16_get(before, j);
            if (res) v += pask_v16_get(rv, j);
            pask_v16_put(out, j, pask_act(v, p.activation, p.act_p[0], p.act_p[1]));
        }
        *(pask_v16 *)(y + at) = out;
    }
}

/*
 * NHWC with one output channel per input channel (O == C), C a multiple of
 * PASK_VEC and x, y, residual 16-byte aligned (pask_cuda_depthwise_vec_ok):
 * each thread computes PASK_VEC adjacent channels (one 16-byte load per tap)
 * of PIX outputs along a row, reusing each tap's weights across them.
 * Entries: pask_conv2d_depthwise_nhwc_vec (PIX 1), _vec4 (PIX 4); geometry
 * pask_cuda_conv2d_depthwise_vec_launch. The 3x3 window is unrolled.
 */
template <int FK, int PIX>
PASK_DEV void pask_dw_nhwc_vec(const pask_cuda_conv2d_params &p) {
    const int KH = FK ? FK : (int)p.kh, KW = FK ? FK : (int)p.kw;
    const int SH = PASK_SH, SW = PASK_SW, PT = PASK_PT, PL = PASK_PL, DH = PASK_DH, DW = PASK_DW;
    const int H = (int)p.h, W = (int)p.w, C = (int)p.c, OH = (int)p.oh, OW = (int)p.ow;
    const int CV = C / PASK_VEC, OWB = (OW + PIX - 1) / PIX;
    const pask_t *__restrict__ x = (const pask_t *)p.x;
    const pask_t *__restrict__ wt = (const pask_t *)p.weight;
    const pask_i64 total = p.n * (pask_i64)OH * OWB * CV;
    for (pask_i64 i = (pask_i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (pask_i64)gridDim.x * blockDim.x) {
        pask_i64 t = i;
        const int cv = (int)(t % CV);
        t /= CV;
        const int owb = (int)(t % OWB);
        t /= OWB;
        const int oh = (int)(t % OH);
        const pask_i64 nimg = t / OH;
        const int c0 = cv * PASK_VEC, ow0 = owb * PIX;
        const pask_t *xb = x + nimg * H * W * C + c0;
        const pask_t *wb = wt + (pask_i64)c0 * KH * KW;
        float acc[PIX][PASK_VEC];
#pragma unroll
        for (int q = 0; q < PIX; ++q)
#pragma unroll
            for (int j = 0; j < PASK_VEC; ++j) acc[q][j] = 0.f;
        const int ih0 = oh * SH - PT;
        for (int r = 0; r < KH; ++r) {
            const int ih = ih0 + r * DH;
            if ((unsigned)ih >= (unsigned)H) continue;
            const pask_t *xr = xb + (pask_i64)ih * W * C;
PASK_UNROLL_CUDA
            for (int s = 0; s < KW; ++s) {
                float wv[PASK_VEC];
#pragma unroll
                for (int j = 0; j < PASK_VEC; ++j) wv[j] = pask_ld(wb, j * KH * KW + r * KW + s);
#pragma unroll
                for (int q = 0; q < PIX; ++q) {
                    const int iw = (ow0 + q) * SW - PL + s * DW;
                    if (ow0 + q >= OW || (unsigned)iw >= (unsigned)W) continue;
                    const pask_v16 xv = *(const pask_v16 *)(xr + (pask_i64)iw * C);
#pragma unroll
                    for (int j = 0; j < PASK_VEC; ++j) acc[q][j] += pask_v16_get(xv, j) * wv[j];
                }
            }
        }
        pask_dw_store_vec<PIX>(p, acc, nimg, oh, ow0, c0);
    }
}

/*
 * The 3x3 window at stride S (1 or 2), no dilation (PASK_CUDA_DW3_STAGED): the
 * block first stages the weights of all C channels in shared memory, tap-major
 * (sw[tap * C + c]), so that a tap's PASK_VEC channels are one 16-byte read.
 * Each input row's (PIX - 1) * S + 3 columns are read and converted once and
 * serve every output and tap that uses them (the generic path above reads a
 * column per output and tap, and a weight per channel and tap). Only a row's
 * three taps are held in registers, not the window's nine.
 */
template <int S, int PIX>
PASK_DEV void pask_dw3_nhwc_vec(const pask_cuda_conv2d_params &p, const pask_t *sw) {
    constexpr int NCOL = (PIX - 1) * S + 3;
    const int PT = PASK_PT, PL = PASK_PL;
    const int H = (int)p.h, W = (int)p.w, C = (int)p.c, OH = (int)p.oh, OW = (int)p.ow;
    const int CV = C / PASK_VEC, OWB = (OW + PIX - 1) / PIX;
    const pask_t *__restrict__ x = (const pask_t *)p.x;
    const pask_i64 total = p.n * (pask_i64)OH * OWB * CV;
    const bool narrow = total <= 0x7fffffff;  // index arithmetic in 32 bits (64-bit division is emulated)
    for (pask_i64 i = (pask_i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (pask_i64)gridDim.x * blockDim.x) {
        int cv, owb, oh;
        pask_i64 nimg;
        if (narrow) {
            unsigned t = (unsigned)i;
            cv = (int)(t % (unsigned)CV); t /= (unsigned)CV;
            owb = (int)(t % (unsigned)OWB); t /= (unsigned)OWB;
            oh = (int)(t % (unsigned)OH); nimg = (pask_i64)(t / (unsigned)OH);
        } else {
            pask_i64 t = i;
            cv = (int)(t % CV); t /= CV;
            owb = (int)(t % OWB); t /= OWB;
            oh = (int)(t % OH); nimg = t / OH;
        }
        const int c0 = cv * PASK_VEC, ow0 = owb * PIX;
        const pask_t *xb = x + nimg * H * W * C + c0;
        float acc[PIX][PASK_VEC];
#pragma unroll
        for (int q = 0; q < PIX; ++q)
#pragma unroll
            for (int j = 0; j < PASK_VEC; ++j) acc[q][j] = 0.f;
        const int ih0 = oh * S - PT, iw0 = ow0 * S - PL;
#pragma unroll
        for (int r = 0; r < 3; ++r) {
            const int ih = ih0 + r;
            if ((unsigned)ih >= (unsigned)H) continue;
            float wr[3][PASK_VEC];  // this row's taps
#pragma unroll
            for (int s = 0; s < 3; ++s) {
                const pask_v16 wv = *(const pask_v16 *)(sw + (r * 3 + s) * C + c0);
#pragma unroll
                for (int j = 0; j < PASK_VEC; ++j) wr[s][j] = pask_v16_get(wv, j);
            }
            const pask_t *xr = xb + (pask_i64)ih * W * C;
#pragma unroll
            for (int col = 0; col < NCOL; ++col) {
                const int iw = iw0 + col;
                if ((unsigned)iw >= (unsigned)W) continue;
                const pask_v16 xv = *(const pask_v16 *)(xr + (pask_i64)iw * C);
                float xf[PASK_VEC];
#pragma unroll
                for (int j = 0; j < PASK_VEC; ++j) xf[j] = pask_v16_get(xv, j);
#pragma unroll
                for (int s = 0; s < 3; ++s) {
                    // output q reads column q * S + s
                    if (col - s < 0 || (col - s) % S != 0 || (col - s) / S >= PIX) continue;
#pragma unroll
                    for (int j = 0; j < PASK_VEC; ++j) acc[(col - s) / S][j] += xf[j] * wr[s][j];
                }
            }
        }
        pask_dw_store_vec<PIX>(p, acc, nimg, oh, ow0, c0);
    }
}

// The generic vector entries (pask_cuda_depthwise_vec_entry names the one a
// launch takes): the 3x3 window unrolled.
template <int PIX>
PASK_DEV void pask_dw_nhwc_vec_any(const pask_cuda_conv2d_params &p) {
    if (PASK_KH == 3 && PASK_KW == 3) return pask_dw_nhwc_vec<3, PIX>(p);
    pask_dw_nhwc_vec<0, PIX>(p);
}

extern "C" __global__ void __launch_bounds__(256) pask_conv2d_depthwise_nhwc_vec(const pask_cuda_conv2d_params p) {
    pask_dw_nhwc_vec_any<1>(p);
}

extern "C" __global__ void __launch_bounds__(256) pask_conv2d_depthwise_nhwc_vec4(const pask_cuda_conv2d_params p) {
    pask_dw_nhwc_vec_any<4>(p);
}

// The staged 3x3 entries, launched only where PASK_CUDA_DW3_STAGED holds, with
// C * 9 elements of dynamic shared memory (pask_cuda_conv2d_depthwise_vec_launch).
template <int PIX>
PASK_DEV void pask_dw3_nhwc_vec_staged(const pask_cuda_conv2d_params &p, unsigned *smem) {
    pask_t *sw = (pask_t *)smem;
    const pask_t *__restrict__ wt = (const pask_t *)p.weight;
    const int C = (int)p.c;
    for (int k = threadIdx.x; k < C * 9; k += blockDim.x) sw[(k % 9) * C + k / 9] = wt[k];  // {C, 9} -> {9, C}
    __syncthreads();
    if (PASK_SH == 1) return pask_dw3_nhwc_vec<1, PIX>(p, sw);
    pask_dw3_nhwc_vec<2, PIX>(p, sw);
}

extern "C" __global__ void __launch_bounds__(256) pask_conv2d_depthwise_nhwc3_vec(const pask_cuda_conv2d_params p) {
    extern __shared__ __align__(16) unsigned pask_smem[];
    pask_dw3_nhwc_vec_staged<1>(p, pask_smem);
}

// 3 blocks of 256 threads an SM at most: 80 registers, no spills, where 4 outputs
// of 8 fp16 channels would otherwise take 92 (and leave room for only 2 blocks)
extern "C" __global__ void __launch_bounds__(256, 3) pask_conv2d_depthwise_nhwc3_vec4(const pask_cuda_conv2d_params p) {
    extern __shared__ __align__(16) unsigned pask_smem[];
    pask_dw3_nhwc_vec_staged<4>(p, pask_smem);
}
