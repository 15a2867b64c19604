// conv2d.direct: every convolution, straightforward loops. The fallback that
// any problem can run on, and the reference-grade kernel the others are tested
// against in spirit (the tests use an independent float64 reference).
#include "common.hpp"

PASK_EXPORT uint32_t pask_cpu_abi_version(void) { return PASK_CPU_ABI_VERSION; }

namespace {

thread_local Scratch t_weights;
thread_local Scratch t_row;

int conv_nchw(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args &a, const float *wt) {
    const int64_t cg = a.c / a.groups, og = a.o / a.groups, kk = a.kh * a.kw;
    std::atomic<int> failed{0};
    auto task = [&](int64_t t, int) {
        const int64_t n = t / a.o, oc = t % a.o, g = oc / og;
        float *acc = t_row.get(size_t(a.ow));
        if (!acc) { failed = 1; return; }
        for (int64_t oh = 0; oh < a.oh; ++oh) {
            std::fill(acc, acc + a.ow, 0.f);
            for (int64_t ci = 0; ci < cg; ++ci) {
                const float *xp = a.x + ((n * a.c + g * cg + ci) * a.h) * a.w;
                const float *wp = wt + (oc * cg + ci) * kk;
                for (int64_t r = 0; r < a.kh; ++r) {
                    const int64_t ih = oh * a.stride_h - a.pad_top + r * a.dil_h;
                    if (ih < 0 || ih >= a.h) continue;
                    const float *xrow = xp + ih * a.w;
                    for (int64_t s = 0; s < a.kw; ++s) {
                        const float wv = wp[r * a.kw + s];
                        const int64_t off = s * a.dil_w - a.pad_left;
                        // valid ow: 0 <= ow*stride + off < w
                        int64_t lo = first_inside(off, a.stride_w);
                        int64_t hi = a.w - off <= 0 ? 0 : (a.w - off - 1) / a.stride_w + 1;
                        hi = std::min(hi, a.ow);
                        for (int64_t ow = lo; ow < hi; ++ow) acc[ow] += wv * xrow[ow * a.stride_w + off];
                    }
                }
            }
            float *yrow = a.y + ((n * a.o + oc) * a.oh + oh) * a.ow;
            const float *rrow = a.residual ? a.residual + ((n * a.o + oc) * a.oh + oh) * a.ow : nullptr;
            const float b = a.bias ? a.bias[oc] : 0.f;
            for (int64_t ow = 0; ow < a.ow; ++ow)
                yrow[ow] = finish(acc[ow], a.ep, a.ep.beta != 0.f ? yrow[ow] : 0.f, b, rrow ? rrow[ow] : 0.f);
        }
    };
    run_parallel(rt, a.n * a.o, task);
    return failed ? kOutOfMemory : 0;
}

int conv_nhwc(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args &a, const float *wt) {
    const int64_t cg = a.c / a.groups, og = a.o / a.groups;
    auto task = [&](int64_t t, int) {
        const int64_t n = t / a.oh, oh = t % a.oh;
        for (int64_t ow = 0; ow < a.ow; ++ow) {
            const int64_t pix = ((n * a.oh + oh) * a.ow + ow) * a.o;
            for (int64_t oc = 0; oc < a.o; ++oc) {
                const int64_t g = oc / og;
                float acc = 0.f;
                for (int64_t r = 0; r < a.kh; ++r) {
                    const int64_t ih = oh * a.stride_h - a.pad_top + r * a.dil_h;
                    if (ih < 0 || ih >= a.h) continue;
                    for (int64_t s = 0; s < a.kw; ++s) {
                        const int64_t iw = ow * a.stride_w - a.pad_left + s * a.dil_w;
                        if (iw < 0 || iw >= a.w) continue;
                        const float *xp = a.x + ((n * a.h + ih) * a.w + iw) * a.c + g * cg;
                        const float *wp = wt + ((oc * a.kh + r) * a.kw + s) * cg;
                        for (int64_t ci = 0; ci < cg; ++ci) acc += xp[ci] * wp[ci];
                    }
                }
                a.y[pix + oc] = finish(acc, a.ep, a.ep.beta != 0.f ? a.y[pix + oc] : 0.f, a.bias ? a.bias[oc] : 0.f,
                                       a.residual ? a.residual[pix + oc] : 0.f);
            }
        }
    };
    run_parallel(rt, a.n * a.oh, task);
    return 0;
}

}  // namespace

PASK_EXPORT int pask_conv2d_direct_f32(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args *a) {
    const float *wt = weights_in(*a, a->layout, t_weights);
    if (!wt) return kOutOfMemory;
    return a->layout == PASK_CPU_LAYOUT_NHWC ? conv_nhwc(rt, *a, wt) : conv_nchw(rt, *a, wt);
}
