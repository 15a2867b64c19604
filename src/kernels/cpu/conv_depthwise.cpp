// conv2d.depthwise: groups == C, each input channel feeding O/C outputs
// (channel multiplier). NCHW works plane by plane; NHWC vectorises across
// channels, which are contiguous.
#include "common.hpp"

PASK_EXPORT uint32_t pask_cpu_abi_version(void) { return PASK_CPU_ABI_VERSION; }

namespace {

thread_local Scratch t_weights;
thread_local Scratch t_acc;

int dw_nchw(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args &a) {
    // weights {O, 1, KH, KW}: OIHW and OHWI coincide when I == 1
    const int64_t mult = a.o / a.c;
    std::atomic<int> failed{0};
    auto task = [&](int64_t t, int) {
        const int64_t n = t / a.o, oc = t % a.o, ci = oc / mult;
        float *acc = t_acc.get(size_t(a.ow));
        if (!acc) { failed = 1; return; }
        const float *xp = a.x + (n * a.c + ci) * a.h * a.w;
        const float *wp = a.weight + oc * a.kh * a.kw;
        for (int64_t oh = 0; oh < a.oh; ++oh) {
            std::fill(acc, acc + a.ow, 0.f);
            for (int64_t r = 0; r < a.kh; ++r) {
                const int64_t ih = oh * a.stride_h - a.pad_top + r * a.dil_h;
                if (ih < 0 || ih >= a.h) continue;
                const float *xrow = xp + ih * a.w;
                for (int64_t s = 0; s < a.kw; ++s) {
                    const float wv = wp[r * a.kw + s];
                    const int64_t off = s * a.dil_w - a.pad_left;
                    int64_t lo = first_inside(off, a.stride_w);
                    int64_t hi = a.w - off <= 0 ? 0 : (a.w - off - 1) / a.stride_w + 1;
                    hi = std::min(hi, a.ow);
                    if (a.stride_w == 1) {
                        const float *xs = xrow + off;
                        for (int64_t ow = lo; ow < hi; ++ow) acc[ow] += wv * xs[ow];
                    } else {
                        for (int64_t ow = lo; ow < hi; ++ow) acc[ow] += wv * xrow[ow * a.stride_w + off];
                    }
                }
            }
            const int64_t base = ((n * a.o + oc) * a.oh + oh) * a.ow;
            const float b = a.bias ? a.bias[oc] : 0.f;
            for (int64_t ow = 0; ow < a.ow; ++ow)
                a.y[base + ow] = finish(acc[ow], a.ep, a.ep.beta != 0.f ? a.y[base + ow] : 0.f, b,
                                        a.residual ? a.residual[base + ow] : 0.f);
        }
    };
    run_parallel(rt, a.n * a.o, task);
    return failed ? kOutOfMemory : 0;
}

int dw_nhwc(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args &a) {
    const int64_t mult = a.o / a.c, kk = a.kh * a.kw;
    // weights as [KH*KW][O] so the channel loop is contiguous
    float *wt = t_weights.get(size_t(kk * a.o));
    if (!wt) return kOutOfMemory;
    for (int64_t oc = 0; oc < a.o; ++oc)
        for (int64_t r = 0; r < kk; ++r) wt[r * a.o + oc] = a.weight[oc * kk + r];
    std::atomic<int> failed{0};
    auto task = [&](int64_t t, int) {
        const int64_t n = t / a.oh, oh = t % a.oh;
        float *acc = t_acc.get(size_t(a.o));
        if (!acc) { failed = 1; return; }
        for (int64_t ow = 0; ow < a.ow; ++ow) {
            std::fill(acc, acc + a.o, 0.f);
            for (int64_t r = 0; r < a.kh; ++r) {
                const int64_t ih = oh * a.stride_h - a.pad_top + r * a.dil_h;
                if (ih < 0 || ih >= a.h) continue;
                for (int64_t s = 0; s < a.kw; ++s) {
                    const int64_t iw = ow * a.stride_w - a.pad_left + s * a.dil_w;
                    if (iw < 0 || iw >= a.w) continue;
                    const float *xp = a.x + ((n * a.h + ih) * a.w + iw) * a.c;
                    const float *wp = wt + (r * a.kw + s) * a.o;
                    if (mult == 1) {
                        for (int64_t oc = 0; oc < a.o; ++oc) acc[oc] += xp[oc] * wp[oc];
                    } else {
                        for (int64_t oc = 0; oc < a.o; ++oc) acc[oc] += xp[oc / mult] * wp[oc];
                    }
                }
            }
            const int64_t base = ((n * a.oh + oh) * a.ow + ow) * a.o;
            for (int64_t oc = 0; oc < a.o; ++oc)
                a.y[base + oc] = finish(acc[oc], a.ep, a.ep.beta != 0.f ? a.y[base + oc] : 0.f,
                                        a.bias ? a.bias[oc] : 0.f, a.residual ? a.residual[base + oc] : 0.f);
        }
    };
    run_parallel(rt, a.n * a.oh, task);
    return failed ? kOutOfMemory : 0;
}

}  // namespace

PASK_EXPORT int pask_conv2d_depthwise_f32(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args *a) {
    if (a->groups != a->c || a->o % a->c != 0) return 4;  // PASK_ERROR_UNSUPPORTED: not depthwise
    return a->layout == PASK_CPU_LAYOUT_NHWC ? dw_nhwc(rt, *a) : dw_nchw(rt, *a);
}
