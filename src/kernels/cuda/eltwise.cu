/*
 * paskdnn: element-wise ops, both layouts. Entries:
 *   pask_eltwise  y = act(x * m + a); m and a optional, broadcast to x by
 *                 per-dim strides (0 along a broadcast dim). y may be x.
 *   pask_cat      one group of up to PASK_CUDA_CAT_GROUP inputs of a channel
 *                 concatenation, written at output channels c_base...
 * One thread per output element (grid-stride). Index arithmetic is 32-bit
 * when the tensor has fewer than 2^31 elements (the common case: int64
 * division costs several times the load it indexes), 64-bit otherwise.
 * Arithmetic in float; half types are converted on load and store.
 */
#include "pask_cuda_mma.cuh"

template <typename I>
PASK_DEV void pask_eltwise_body(const pask_cuda_eltwise_params &p) {
    const I C = (I)p.c, H = (I)p.h, W = (I)p.w;
    const bool nhwc = p.layout == PASK_CUDA_LAYOUT_NHWC;
    const pask_t *__restrict__ x = (const pask_t *)p.x;
    const pask_t *__restrict__ m = (const pask_t *)p.m;
    const pask_t *__restrict__ a = (const pask_t *)p.a;
    pask_t *y = (pask_t *)p.y;  /* may be x: no __restrict__ */
    const I total = (I)(p.n * p.c * p.h * p.w);
    const I ms0 = (I)p.m_stride[0], ms1 = (I)p.m_stride[1], ms2 = (I)p.m_stride[2], ms3 = (I)p.m_stride[3];
    const I as0 = (I)p.a_stride[0], as1 = (I)p.a_stride[1], as2 = (I)p.a_stride[2], as3 = (I)p.a_stride[3];
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
        float v = pask_ld(x, i);
        if (m || a) {
            I t = i, c, hh, ww, nn;
            if (nhwc) {
                c = t % C; t /= C;
                ww = t % W; t /= W;
                hh = t % H; nn = t / H;
            } else {
                ww = t % W; t /= W;
                hh = t % H; t /= H;
                c = t % C; nn = t / C;
            }
            const float mv = m ? pask_ld(m, nn * ms0 + c * ms1 + hh * ms2 + ww * ms3) : 1.f;
            const float av = a ? pask_ld(a, nn * as0 + c * as1 + hh * as2 + ww * as3) : 0.f;
            v = fmaf(v, mv, av);
        }
        v = pask_act(v, p.activation, p.act_p[0], p.act_p[1]);  /* NaN passes */
        y[i] = pask_from_f32(v);
    }
}

extern "C" __global__ void __launch_bounds__(256) pask_eltwise(const pask_cuda_eltwise_params p) {
    if (p.n * p.c * p.h * p.w < 2147483647LL) pask_eltwise_body<int>(p);
    else pask_eltwise_body<pask_i64>(p);
}

template <typename I>
PASK_DEV void pask_cat_body(const pask_cuda_cat_params &p) {
    const I CG = (I)p.c_group, CT = (I)p.c_total, H = (I)p.h, W = (I)p.w, CB = (I)p.c_base;
    const bool nhwc = p.layout == PASK_CUDA_LAYOUT_NHWC;
    pask_t *__restrict__ y = (pask_t *)p.y;
    const I total = (I)(p.n * p.c_group * p.h * p.w);
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
        I t = i, c, hh, ww, nn;
        if (nhwc) {
            c = t % CG; t /= CG;
            ww = t % W; t /= W;
            hh = t % H; nn = t / H;
        } else {
            ww = t % W; t /= W;
            hh = t % H; t /= H;
            c = t % CG; nn = t / CG;
        }
        /* which input of the group holds channel c */
        int k = 0;
        I off = 0;
        while (k + 1 < p.count && c >= off + (I)p.cs[k]) off += (I)p.cs[k++];
        const I ck = (I)p.cs[k], cin = c - off;
        const pask_t *__restrict__ xk = (const pask_t *)p.xs[k];
        const I src = nhwc ? ((nn * H + hh) * W + ww) * ck + cin : ((nn * ck + cin) * H + hh) * W + ww;
        const I dst = nhwc ? ((nn * H + hh) * W + ww) * CT + CB + c : ((nn * CT + CB + c) * H + hh) * W + ww;
        y[dst] = xk[src];
    }
}

extern "C" __global__ void __launch_bounds__(256) pask_cat(const pask_cuda_cat_params p) {
    if (p.n * p.c_total * p.h * p.w < 2147483647LL) pask_cat_body<int>(p);
    else pask_cat_body<pask_i64>(p);
}
