/*
 * paskdnn: depthwise 2-D convolution (groups == C, O = C * multiplier) on the
 * CUDA cores, both layouts, fused epilogue. Entry: pask_conv2d_depthwise.
 * One thread per output element, grid-stride (1-D grid, pask_cuda_conv2d_depthwise_launch).
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
        y[i] = pask_from_f32(pask_act(v, act));
    }
}
