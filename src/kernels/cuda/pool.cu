/*
 * paskdnn: 2-D pooling, both layouts. Entries:
 *   pask_pool2d            max / avg, PyTorch semantics (see below), 1 thread per output.
 *   pask_pool2d_global_avg mean over H*W, output {n, c, 1, 1}.
 * max: over the in-bounds taps of the dilated window; NaN propagates; no tap -> -inf.
 * avg: sum over in-bounds taps / divisor, divisor = divisor_override if != 0, else the
 *   number of taps inside [-pad_top, h+pad_bottom) x [-pad_left, w+pad_right) when
 *   count_include_pad, else the number of in-bounds taps (PyTorch's rule for dil = 1).
 * Averages accumulate in double per thread: a float sum stalls once it is 2^24
 * times its terms (2^26 ones gave a mean of 0.25) and drifts long before on real
 * data, as the CPU kernels did (tests/test_pool.py, huge windows). The loads stay
 * float and the kernels memory-bound.
 */
#include "pask_cuda_mma.cuh"

extern "C" __global__ void __launch_bounds__(256) pask_pool2d(const pask_cuda_pool2d_params p) {
    const int H = (int)p.h, W = (int)p.w, C = (int)p.c, OH = (int)p.oh, OW = (int)p.ow;
    const int KH = (int)p.kh, KW = (int)p.kw, SH = (int)p.stride_h, SW = (int)p.stride_w;
    const int PT = (int)p.pad_top, PL = (int)p.pad_left, PB = (int)p.pad_bottom, PR = (int)p.pad_right;
    const int DH = (int)p.dil_h, DW = (int)p.dil_w;
    const bool nhwc = p.layout == PASK_CUDA_LAYOUT_NHWC;
    const pask_t *__restrict__ x = (const pask_t *)p.x;
    pask_t *__restrict__ y = (pask_t *)p.y;
    const pask_i64 total = p.n * (pask_i64)C * OH * OW;
    for (pask_i64 i = (pask_i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (pask_i64)gridDim.x * blockDim.x) {
        int c, oh, ow;
        pask_i64 nimg, t = i;
        if (nhwc) {
            c = (int)(t % C); t /= C;
            ow = (int)(t % OW); t /= OW;
            oh = (int)(t % OH); nimg = t / OH;
        } else {
            ow = (int)(t % OW); t /= OW;
            oh = (int)(t % OH); t /= OH;
            c = (int)(t % C); nimg = t / C;
        }
        const pask_i64 xbase = nhwc ? nimg * H * W * C + c : (nimg * C + c) * H * W;
        const pask_i64 xs = nhwc ? C : 1;
        const int ih0 = oh * SH - PT, iw0 = ow * SW - PL;
        float out;
        if (p.mode == 0) {
            float m = pask_bits_f(0xff800000u); /* -inf */
            for (int r = 0; r < KH; ++r) {
                const int ih = ih0 + r * DH;
                if ((unsigned)ih >= (unsigned)H) continue;
                for (int s = 0; s < KW; ++s) {
                    const int iw = iw0 + s * DW;
                    if ((unsigned)iw >= (unsigned)W) continue;
                    const float v = pask_ld(x, xbase + ((pask_i64)ih * W + iw) * xs);
                    if (v > m || v != v) m = v;
                    if (m != m) break;
                }
                if (m != m) break;
            }
            out = m;
        } else {
            double sum = 0.0;
            int nin = 0, npad = 0;
            for (int r = 0; r < KH; ++r) {
                const int ih = ih0 + r * DH;
                if (ih >= H + PB) break;
                const bool hin = (unsigned)ih < (unsigned)H;
                for (int s = 0; s < KW; ++s) {
                    const int iw = iw0 + s * DW;
                    if (iw >= W + PR) break;
                    ++npad;
                    if (hin && (unsigned)iw < (unsigned)W) {
                        sum += pask_ld(x, xbase + ((pask_i64)ih * W + iw) * xs);
                        ++nin;
                    }
                }
            }
            const double div = p.divisor_override ? (double)p.divisor_override : (double)(p.count_include_pad ? npad : nin);
            out = (float)(sum / div);
        }
        y[i] = pask_from_f32(out);
    }
}

/* NCHW: one warp per (n, c) plane. NHWC: one thread per (n, c), threads along c. */
extern "C" __global__ void __launch_bounds__(256) pask_pool2d_global_avg(const pask_cuda_pool2d_params p) {
    const pask_i64 HW = p.h * p.w, NC = p.n * p.c;
    const pask_t *__restrict__ x = (const pask_t *)p.x;
    pask_t *__restrict__ y = (pask_t *)p.y;
    const double div = (double)HW;
    if (p.layout == PASK_CUDA_LAYOUT_NHWC) {
        const pask_i64 C = p.c;
        for (pask_i64 i = (pask_i64)blockIdx.x * blockDim.x + threadIdx.x; i < NC; i += (pask_i64)gridDim.x * blockDim.x) {
            const pask_i64 nimg = i / C, c = i - nimg * C;
            const pask_t *src = x + nimg * HW * C + c;
            double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
            pask_i64 j = 0;
            for (; j + 4 <= HW; j += 4) {
                s0 += pask_ld(src, j * C);
                s1 += pask_ld(src, (j + 1) * C);
                s2 += pask_ld(src, (j + 2) * C);
                s3 += pask_ld(src, (j + 3) * C);
            }
            for (; j < HW; ++j) s0 += pask_ld(src, j * C);
            y[i] = pask_from_f32((float)(((s0 + s1) + (s2 + s3)) / div));
        }
    } else {
        const int lane = threadIdx.x & 31;
        const pask_i64 warps = (pask_i64)gridDim.x * (blockDim.x >> 5);
        for (pask_i64 wi = (pask_i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); wi < NC; wi += warps) {
            const pask_t *src = x + wi * HW;
            /* each lane's double sum, rounded once to float for the 32-lane shuffle
             * sum (a relative error of about 32 ulp at most, over 32 terms) */
            double ls = 0.0;
            for (pask_i64 j = lane; j < HW; j += 32) ls += pask_ld(src, j);
            const float s = pask_warp_sum((float)(ls / div));
            if (lane == 0) y[wi] = pask_from_f32(s);
        }
    }
}
