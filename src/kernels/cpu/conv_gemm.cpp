// conv2d.im2col_gemm and conv2d.gemm_1x1, the GEMM-based convolutions. Built
// as two code objects from this one source: PASK_CONV_1X1 selects which.
//
//   NCHW, per image and group:   Y_g[Og x P]   = W_g[Og x Kg] @ col[Kg x P]
//   NHWC, per chunk and group:   Y[:, g][P x Og] = col[P x Kg] @ W_g^T
// with P = OH*OW output pixels and Kg = (C/groups)*KH*KW. The 1x1 stride-1
// unpadded case needs no col at all: the input already is the matrix.
#include "common.hpp"
#include "sgemm.hpp"

PASK_EXPORT uint32_t pask_cpu_abi_version(void) { return PASK_CPU_ABI_VERSION; }

namespace {

pask_cpu::GemmEpilogue gemm_ep(const pask_cpu_conv2d_args &a) {
    pask_cpu::GemmEpilogue ep;
    ep.alpha = a.ep.alpha;
    ep.beta = a.ep.beta;
    ep.activation = a.ep.activation;
    ep.act_params[0] = a.ep.act_params[0];
    ep.act_params[1] = a.ep.act_params[1];
    return ep;
}

#ifndef PASK_CONV_1X1

thread_local Scratch t_weights;
thread_local Scratch t_col;

// Bound on one col buffer (floats) for the NHWC path, which batches images.
constexpr int64_t kColBudget = int64_t(8) << 20;

int im2col_nchw(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args &a, const float *wt) {
    const int64_t cg = a.c / a.groups, og = a.o / a.groups, kk = a.kh * a.kw, kg = cg * kk;
    const int64_t p = a.oh * a.ow;
    float *col = t_col.get(size_t(kg * p));
    if (!col) return kOutOfMemory;
    for (int64_t n = 0; n < a.n; ++n) {
        for (int64_t g = 0; g < a.groups; ++g) {
            const float *xg = a.x + (n * a.c + g * cg) * a.h * a.w;
            auto fill = [&](int64_t row, int) {  // row = (ci, r, s)
                const int64_t ci = row / kk, r = (row % kk) / a.kw, s = row % a.kw;
                const float *xp = xg + ci * a.h * a.w;
                float *dst = col + row * p;
                const int64_t off = s * a.dil_w - a.pad_left;
                int64_t lo = first_inside(off, a.stride_w);
                int64_t hi = a.w - off <= 0 ? 0 : (a.w - off - 1) / a.stride_w + 1;
                hi = std::min(hi, a.ow);
                lo = std::min(lo, hi);
                for (int64_t oh = 0; oh < a.oh; ++oh) {
                    float *d = dst + oh * a.ow;
                    const int64_t ih = oh * a.stride_h - a.pad_top + r * a.dil_h;
                    if (ih < 0 || ih >= a.h) {
                        std::fill(d, d + a.ow, 0.f);
                        continue;
                    }
                    const float *xrow = xp + ih * a.w + off;
                    std::fill(d, d + lo, 0.f);
                    if (a.stride_w == 1)
                        std::copy(xrow + lo, xrow + hi, d + lo);
                    else
                        for (int64_t ow = lo; ow < hi; ++ow) d[ow] = xrow[ow * a.stride_w];
                    std::fill(d + hi, d + a.ow, 0.f);
                }
            };
            run_parallel(rt, kg, fill);
            pask_cpu::GemmEpilogue ep = gemm_ep(a);
            const int64_t ybase = (n * a.o + g * og) * p;
            ep.bias_m = a.bias ? a.bias + g * og : nullptr;
            ep.residual = a.residual ? a.residual + ybase : nullptr;
            ep.ld_residual = p;
            int rc = pask_cpu::sgemm(rt, false, false, og, p, kg, wt + g * og * kg, kg, col, p, a.y + ybase, p, ep);
            if (rc) return rc;
        }
    }
    return 0;
}

int im2col_nhwc(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args &a, const float *wt) {
    const int64_t cg = a.c / a.groups, og = a.o / a.groups, kg = cg * a.kh * a.kw;
    const int64_t p = a.oh * a.ow;
    const int64_t per_image = p * kg;
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(a.n, kColBudget / std::max<int64_t>(per_image, 1)));
    float *col = t_col.get(size_t(chunk * per_image));
    if (!col) return kOutOfMemory;
    for (int64_t n0 = 0; n0 < a.n; n0 += chunk) {
        const int64_t nn = std::min(chunk, a.n - n0);
        const int64_t rows = nn * p;
        for (int64_t g = 0; g < a.groups; ++g) {
            auto fill = [&](int64_t t, int) {  // one output row (n, oh)
                const int64_t n = n0 + t / a.oh, oh = t % a.oh;
                for (int64_t ow = 0; ow < a.ow; ++ow) {
                    float *d = col + ((t * a.ow) + ow) * kg;
                    for (int64_t r = 0; r < a.kh; ++r) {
                        const int64_t ih = oh * a.stride_h - a.pad_top + r * a.dil_h;
                        for (int64_t s = 0; s < a.kw; ++s, d += cg) {
                            const int64_t iw = ow * a.stride_w - a.pad_left + s * a.dil_w;
                            if (ih < 0 || ih >= a.h || iw < 0 || iw >= a.w) {
                                std::fill(d, d + cg, 0.f);
                            } else {
                                const float *xp = a.x + ((n * a.h + ih) * a.w + iw) * a.c + g * cg;
                                std::copy(xp, xp + cg, d);
                            }
                        }
                    }
                }
            };
            run_parallel(rt, nn * a.oh, fill);
            pask_cpu::GemmEpilogue ep = gemm_ep(a);
            const int64_t ybase = n0 * p * a.o + g * og;
            ep.bias_n = a.bias ? a.bias + g * og : nullptr;
            ep.residual = a.residual ? a.residual + ybase : nullptr;
            ep.ld_residual = a.o;
            int rc = pask_cpu::sgemm(rt, false, true, rows, og, kg, col, kg, wt + g * og * kg, kg, a.y + ybase, a.o, ep);
            if (rc) return rc;
        }
    }
    return 0;
}

}  // namespace

PASK_EXPORT int pask_conv2d_im2col_f32(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args *a) {
    const float *wt = weights_in(*a, a->layout, t_weights);
    if (!wt) return kOutOfMemory;
    return a->layout == PASK_CPU_LAYOUT_NHWC ? im2col_nhwc(rt, *a, wt) : im2col_nchw(rt, *a, wt);
}

#else  // PASK_CONV_1X1

bool plain_1x1(const pask_cpu_conv2d_args &a) {
    return a.kh == 1 && a.kw == 1 && a.stride_h == 1 && a.stride_w == 1 && a.pad_top == 0 && a.pad_left == 0 &&
           a.groups == 1 && a.oh == a.h && a.ow == a.w;
}

// packed: W^T packed by pask_conv2d_1x1_f32_pack (NHWC only), or nullptr.
int run_1x1(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args *a, const float *packed) {
    if (!plain_1x1(*a)) return 4;  // PASK_ERROR_UNSUPPORTED: not a plain 1x1 convolution
    const int64_t p = a->h * a->w;
    pask_cpu::GemmEpilogue ep = gemm_ep(*a);
    if (a->layout == PASK_CPU_LAYOUT_NHWC) {
        ep.bias_n = a->bias;
        ep.residual = a->residual;
        ep.ld_residual = a->o;
        if (packed) {
            const pask_cpu::sgemm_detail::StridedA pa{false, a->x, a->c};
            const pask_cpu::sgemm_detail::PrepackedB pb{packed, pask_cpu::sgemm_detail::packed_width(a->o)};
            return pask_cpu::sgemm_with(rt, pa, pb, a->n * p, a->o, a->c, a->y, a->o, ep);
        }
        return pask_cpu::sgemm(rt, false, true, a->n * p, a->o, a->c, a->x, a->c, a->weight, a->c, a->y, a->o, ep);
    }
    if (packed) return 4;  // NCHW's weights are the GEMM's A: never packed ahead
    ep.bias_m = a->bias;
    ep.ld_residual = p;
    for (int64_t n = 0; n < a->n; ++n) {
        ep.residual = a->residual ? a->residual + n * a->o * p : nullptr;
        int rc = pask_cpu::sgemm(rt, false, false, a->o, p, a->c, a->weight, a->c, a->x + n * a->c * p, p,
                                 a->y + n * a->o * p, p, ep);
        if (rc) return rc;
    }
    return 0;
}

}  // namespace

PASK_EXPORT int pask_conv2d_1x1_f32(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args *a) {
    return run_1x1(rt, a, nullptr);
}

// Weight pre-packing (kernel_abi.h, pask_cpu_conv2d_pack_fn): NHWC only (W^T is
// the GEMM's B, O x C whatever the weight layout, the window being 1x1).
PASK_EXPORT int64_t pask_conv2d_1x1_f32_pack(const pask_cpu_conv2d_args *a, float *dst) {
    if (a->layout != PASK_CPU_LAYOUT_NHWC || !plain_1x1(*a)) return -4;  // PASK_ERROR_UNSUPPORTED
    const int64_t total = pask_cpu::sgemm_packed_b_floats(a->c, a->o);
    if (dst) pask_cpu::sgemm_pack_b(true, a->c, a->o, a->weight, a->c, 1, dst);
    return total;
}

PASK_EXPORT int pask_conv2d_1x1_f32_packed(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args *a,
                                           const float *packed) {
    if (!packed) return 2;  // PASK_ERROR_NULL_POINTER
    return run_1x1(rt, a, packed);
}

#endif
