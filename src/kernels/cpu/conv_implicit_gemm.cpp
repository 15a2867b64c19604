// conv2d.implicit_gemm_nhwc: NHWC convolution as a GEMM over the im2col matrix
// without building it. Per group g:
//
//   Y[:, g] (P x Og) = col_g (P x Kg) @ W_g^T,   P = N*OH*OW, Kg = KH*KW*Cg
//   col_g[pix, (r*KW + s)*Cg + ci] = x[n, oh*sh - pt + r*dh, ow*sw - pl + s*dw, g*Cg + ci]
//                                    (0 outside the image)
//
// im2col + GEMM (conv_gemm.cpp) writes col in full (9x the input for a 3x3
// window: 7.2 MB at ResNet's 56x56x64) and the GEMM then reads it back to pack
// it. Here the GEMM's A packer reads the input directly: a column run of col
// (one window tap) is Cg contiguous channels of one input pixel, so a panel of
// MR output pixels is packed with the same 8x8 / 4x4 transposes as a strided
// matrix, from MR pointers into x (a zero row where the tap is in the padding).
// Only the MC x KC block the GEMM works on exists at a time, and every image of
// the batch goes into one GEMM (M = N*OH*OW).
#include "common.hpp"
#include "sgemm.hpp"

PASK_EXPORT uint32_t pask_cpu_abi_version(void) { return PASK_CPU_ABI_VERSION; }

namespace {

using pask_cpu::sgemm_detail::MR;
#if defined(__AVX__)
using pask_cpu::sgemm_detail::transpose4;
using pask_cpu::sgemm_detail::transpose8;
#endif

thread_local Scratch t_weights;

alignas(64) const float kZeros[16] = {};

struct ImplicitA {
    const pask_cpu_conv2d_args *a;
    const float *x;  // x + g*Cg: the group's first channel
    int64_t cg;

    // Row r of the panel (output pixel i): the input pixel of tap (rr, ss), or
    // nullptr in the padding.
    struct Pixel {
        const float *img;  // image n's first element
        int64_t ih0, iw0;  // oh*sh - pt, ow*sw - pl
    };

    Pixel pixel(int64_t i) const {
        const int64_t per = a->oh * a->ow;
        const int64_t n = i / per, q = i % per, oh = q / a->ow, ow = q % a->ow;
        return Pixel{x + n * a->h * a->w * a->c, oh * a->stride_h - a->pad_top, ow * a->stride_w - a->pad_left};
    }

    const float *tap(const Pixel &px, int64_t rr, int64_t ss, int64_t ci) const {
        const int64_t ih = px.ih0 + rr * a->dil_h, iw = px.iw0 + ss * a->dil_w;
        if (ih < 0 || ih >= a->h || iw < 0 || iw >= a->w) return nullptr;
        return px.img + (ih * a->w + iw) * a->c + ci;
    }

    // col[i0 .. i0+mc, p0 .. p0+kc] -> dst in panels of MR rows (pack_a's layout).
    void pack(int64_t i0, int64_t p0, int64_t mc, int64_t kc, float *__restrict dst) const {
        for (int64_t ir = 0; ir < mc; ir += MR) {
            const int mr = (int)std::min<int64_t>(MR, mc - ir);
            Pixel px[MR];
            for (int r = 0; r < mr; ++r) px[r] = pixel(i0 + ir + r);
            float *d = dst + ir * kc;
            // one tap (a run of channels) at a time
            for (int64_t k = p0; k < p0 + kc;) {
                const int64_t seg = k / cg, ci = k % cg;
                const int64_t rr = seg / a->kw, ss = seg % a->kw;
                const int64_t len = std::min(cg - ci, p0 + kc - k);
                const float *src[MR];
                for (int r = 0; r < mr; ++r) src[r] = tap(px[r], rr, ss, ci);
                float *dk = d + (k - p0) * mr;
                int64_t q = 0;
#if defined(__AVX__)
                if (mr == MR && MR >= 8) {
                    // row groups of 8: 0.., then MR-8.. (overlapping rows get equal values)
                    for (; q + 8 <= len; q += 8) {
                        for (int grp = 0; grp < 2; ++grp) {
                            const int r0 = grp == 0 ? 0 : MR - 8;
                            const float *rp[8];
                            for (int r = 0; r < 8; ++r) rp[r] = src[r0 + r] ? src[r0 + r] + q : kZeros;
                            __m256 t[8];
                            transpose8(rp, 0, t);
                            for (int e = 0; e < 8; ++e) _mm256_storeu_ps(dk + (q + e) * MR + r0, t[e]);
                        }
                    }
                } else if (mr == MR && MR >= 4) {
                    for (; q + 4 <= len; q += 4) {
                        for (int r0 = 0;; r0 = std::min(r0 + 4, MR - 4)) {
                            const float *rp[4];
                            for (int r = 0; r < 4; ++r) rp[r] = src[r0 + r] ? src[r0 + r] + q : kZeros;
                            __m128 t[4];
                            transpose4(rp, 0, t);
                            for (int e = 0; e < 4; ++e) _mm_storeu_ps(dk + (q + e) * MR + r0, t[e]);
                            if (r0 == MR - 4) break;
                        }
                    }
                }
#endif
                for (; q < len; ++q)
                    for (int r = 0; r < mr; ++r) dk[q * mr + r] = src[r] ? src[r][q] : 0.f;
                k += len;
            }
        }
    }
};

}  // namespace

namespace {

// K blocks in runs of 8 channels where the taps allow it (the transposes' width)
int64_t kc_align_of(const pask_cpu_conv2d_args &a) { return (a.c / a.groups) % 8 == 0 ? 8 : 1; }

// Floats of one group's packed weights (sgemm_pack_b's layout).
int64_t packed_group_floats(const pask_cpu_conv2d_args &a) {
    const int64_t cg = a.c / a.groups, og = a.o / a.groups;
    return pask_cpu::sgemm_packed_b_floats(cg * a.kh * a.kw, og);
}

// packed: every group's W_g^T packed by pask_conv2d_implicit_gemm_nhwc_pack_f32,
// or nullptr to pack them call by call.
int run(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args *a, const float *packed) {
    if (a->layout != PASK_CPU_LAYOUT_NHWC) return 4;  // PASK_ERROR_UNSUPPORTED: NHWC only
    const float *wt = nullptr;
    if (!packed) {
        wt = weights_in(*a, PASK_CPU_LAYOUT_NHWC, t_weights);  // OHWI
        if (!wt) return kOutOfMemory;
    }
    const int64_t cg = a->c / a->groups, og = a->o / a->groups, kg = cg * a->kh * a->kw;
    const int64_t rows = a->n * a->oh * a->ow;
    const int64_t align = kc_align_of(*a);
    for (int64_t g = 0; g < a->groups; ++g) {
        pask_cpu::GemmEpilogue ep;
        ep.alpha = a->ep.alpha;
        ep.beta = a->ep.beta;
        ep.activation = a->ep.activation;
        ep.act_params[0] = a->ep.act_params[0];
        ep.act_params[1] = a->ep.act_params[1];
        ep.bias_n = a->bias ? a->bias + g * og : nullptr;
        ep.residual = a->residual ? a->residual + g * og : nullptr;
        ep.ld_residual = a->o;
        const ImplicitA pa{a, a->x + g * cg, cg};
        int rc;
        if (packed) {
            const pask_cpu::sgemm_detail::PrepackedB pb{packed + g * packed_group_floats(*a),
                                                        pask_cpu::sgemm_detail::packed_width(og)};
            rc = pask_cpu::sgemm_with(rt, pa, pb, rows, og, kg, a->y + g * og, a->o, ep, align);
        } else {
            const pask_cpu::sgemm_detail::StridedB pb{true, wt + g * og * kg, kg};
            rc = pask_cpu::sgemm_with(rt, pa, pb, rows, og, kg, a->y + g * og, a->o, ep, align);
        }
        if (rc) return rc;
    }
    return 0;
}

}  // namespace

PASK_EXPORT int pask_conv2d_implicit_gemm_nhwc_f32(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args *a) {
    return run(rt, a, nullptr);
}

// Weight pre-packing (kernel_abi.h, pask_cpu_conv2d_pack_fn): the weights as
// every call of this Problem would pack them, for a caller that guarantees
// they stay unchanged (a plan with constant weights).
PASK_EXPORT int64_t pask_conv2d_implicit_gemm_nhwc_f32_pack(const pask_cpu_conv2d_args *a, float *dst) {
    if (a->layout != PASK_CPU_LAYOUT_NHWC) return -4;  // PASK_ERROR_UNSUPPORTED
    const int64_t total = a->groups * packed_group_floats(*a);
    if (!dst) return total;
    const float *wt = weights_in(*a, PASK_CPU_LAYOUT_NHWC, t_weights);  // OHWI
    if (!wt) return -kOutOfMemory;
    const int64_t cg = a->c / a->groups, og = a->o / a->groups, kg = cg * a->kh * a->kw;
    for (int64_t g = 0; g < a->groups; ++g)
        pask_cpu::sgemm_pack_b(true, kg, og, wt + g * og * kg, kg, kc_align_of(*a), dst + g * packed_group_floats(*a));
    return total;
}

PASK_EXPORT int pask_conv2d_implicit_gemm_nhwc_f32_packed(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args *a,
                                                          const float *packed) {
    if (!packed) return 2;  // PASK_ERROR_NULL_POINTER
    return run(rt, a, packed);
}
