// pool2d.direct (max/avg with every parameter) and pool2d.global_avg. Built as
// two code objects from this one source: PASK_POOL_GLOBAL selects which.
#include <cmath>
#include <limits>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "common.hpp"
#include "vec16.hpp"

PASK_EXPORT uint32_t pask_cpu_abi_version(void) { return PASK_CPU_ABI_VERSION; }

namespace {

// The taps of one window along one axis (tap r at o * stride - pad + r * dil,
// r < k): how many fall inside the input, and how many inside the padded input
// [-pad, in + pad_end) (count_include_pad's divisor; the extra right padding of
// ceil mode does not count). PyTorch's rule for dil = 1, ONNX's for any dil.
struct Taps {
    int64_t in, padded;
};

// #r in [0, k) with start + r * dil < limit (start >= -pad: the lower bound holds)
inline int64_t taps_below(int64_t start, int64_t limit, int64_t k, int64_t dil) {
    if (limit <= start) return 0;
    return std::min(k, (limit - start + dil - 1) / dil);
}

inline Taps taps(int64_t o, int64_t stride, int64_t pad, int64_t k, int64_t dil, int64_t in, int64_t pad_end) {
    const int64_t start = o * stride - pad;
    const int64_t skipped = taps_below(start, 0, k, dil);  // taps left of the input
    return Taps{std::max<int64_t>(0, taps_below(start, in, k, dil) - skipped),
                taps_below(start, in + pad_end, k, dil)};
}

// The average's divisor. A window whose taps all miss the input (possible only
// with a dilation skipping over it) averages nothing: 0 / 0 = NaN without
// count_include_pad, as ONNX's reference (np.average of no values).
inline double divisor(const pask_cpu_pool2d_args &a, const Taps &th, const Taps &tw) {
    if (a.divisor_override) return double(a.divisor_override);
    if (a.count_include_pad) return double(th.padded * tw.padded);
    return double(th.in * tw.in);
}

// Averages accumulate in double: a float sum stalls once it is 2^24 times its
// terms (2^26 ones summed to 2^24, a mean of 0.25) and drifts long before on
// real data; double keeps a 2^30-tap window to about 1e-7 relative. Max stays
// in float (it does not round). tests/test_pool.py::test_average_over_a_huge_window_is_accurate.

// PyTorch's rule: NaN wins and stays. Branch-free so the loops vectorise.
inline void take_max(float &m, float v) { m = (v > m || v != v) ? v : m; }

#ifndef PASK_POOL_GLOBAL

thread_local Scratch t_acc;

// n doubles from the float scratch (aligned_alloc'd, 64-byte aligned).
inline double *doubles(Scratch &s, size_t n) { return reinterpret_cast<double *>(s.get(2 * n)); }

int pool_nchw(const pask_cpu_runtime *rt, const pask_cpu_pool2d_args &a) {
    // Row at a time: for each window offset (r, s), sweep the valid output
    // columns in one contiguous (stride 1) or strided loop, no per-element bounds.
    std::atomic<int> failed{0};
    auto task = [&](int64_t t, int) {
        const float *xp = a.x + t * a.h * a.w;
        float *yp = a.y + t * a.oh * a.ow;
        float *acc = nullptr;  // max
        double *sum = nullptr;  // avg
        if (a.mode == 0) acc = t_acc.get(size_t(a.ow));
        else sum = doubles(t_acc, size_t(a.ow));
        if (!acc && !sum) { failed = 1; return; }
        for (int64_t oh = 0; oh < a.oh; ++oh) {
            if (a.mode == 0) std::fill(acc, acc + a.ow, -std::numeric_limits<float>::infinity());
            else std::fill(sum, sum + a.ow, 0.0);
            for (int64_t r = 0; r < a.kh; ++r) {
                const int64_t ih = oh * a.stride_h - a.pad_top + r * a.dil_h;
                if (ih < 0 || ih >= a.h) continue;
                const float *xrow = xp + ih * a.w;
                for (int64_t s = 0; s < a.kw; ++s) {
                    const int64_t off = s * a.dil_w - a.pad_left;
                    int64_t lo = first_inside(off, a.stride_w);
                    int64_t hi = a.w - off <= 0 ? 0 : (a.w - off - 1) / a.stride_w + 1;
                    hi = std::min(hi, a.ow);
                    const float *src = xrow + off;
                    if (a.mode == 0) {
                        if (a.stride_w == 1)
                            for (int64_t ow = lo; ow < hi; ++ow) take_max(acc[ow], src[ow]);
                        else
                            for (int64_t ow = lo; ow < hi; ++ow) take_max(acc[ow], src[ow * a.stride_w]);
                    } else {
                        if (a.stride_w == 1)
                            for (int64_t ow = lo; ow < hi; ++ow) sum[ow] += src[ow];
                        else
                            for (int64_t ow = lo; ow < hi; ++ow) sum[ow] += src[ow * a.stride_w];
                    }
                }
            }
            float *yrow = yp + oh * a.ow;
            if (a.mode == 0) {
                std::copy(acc, acc + a.ow, yrow);
            } else {
                const Taps th = taps(oh, a.stride_h, a.pad_top, a.kh, a.dil_h, a.h, a.pad_bottom);
                for (int64_t ow = 0; ow < a.ow; ++ow) {
                    const Taps tw = taps(ow, a.stride_w, a.pad_left, a.kw, a.dil_w, a.w, a.pad_right);
                    yrow[ow] = float(sum[ow] / divisor(a, th, tw));
                }
            }
        }
    };
    run_parallel(rt, a.n * a.c, task);
    return failed ? kOutOfMemory : 0;
}

// The NHWC max pool works on the build's native vectors (vnat, VN channels: 16
// on AVX-512, 8 on AVX2, 4 generic): its 8 running maxima and sums then stay in
// registers, and the compare-and-select is one vcmpps and vblendvps.
typedef int32_t vinat __attribute__((vector_size(sizeof(vnat))));

// take_max on VN lanes: v where v > m or v is NaN.
__attribute__((always_inline)) inline vnat max_nan(const vnat &m, const vnat &v) {
    return ((v > m) | (v != v)) ? v : m;
}

// Any lane NaN.
__attribute__((always_inline)) inline bool any_nan(const vnat &v) {
#if defined(__AVX512F__)
    return _mm512_cmp_ps_mask((__m512)v, (__m512)v, _CMP_UNORD_Q) != 0;
#elif defined(__AVX__)
    return _mm256_movemask_ps(_mm256_cmp_ps((__m256)v, (__m256)v, _CMP_UNORD_Q)) != 0;
#else
    const vinat m = v != v;
    int32_t r = 0;
    for (int i = 0; i < VN; ++i) r |= m[i];
    return r != 0;
#endif
}

// Lanes [k, k + nv*VN) of an NHWC max pool's output pixel by max_nan, tap by tap.
template <int NV>
__attribute__((always_inline)) inline void max_block_exact(const float *const *taps, int64_t ntaps, int64_t k,
                                                           float *y) {
    vnat m[NV];
    for (int v = 0; v < NV; ++v) m[v] = vload<vnat>(taps[0] + k + v * VN);
    for (int64_t t = 1; t < ntaps; ++t)
        for (int v = 0; v < NV; ++v) m[v] = max_nan(m[v], vload<vnat>(taps[t] + k + v * VN));
    for (int v = 0; v < NV; ++v) vstore(y + k + v * VN, m[v]);
}

// The same, cheaper: the max that a compare-and-select gives (maxps: the old
// value when either is NaN) and, beside it, the taps' sum, NaN whenever a tap
// is NaN (and when +inf meets -inf). A NaN sum sends the block to
// max_block_exact, so the result is take_max's, bit for bit, in every case;
// two operations a tap instead of take_max's four.
template <int NV>
__attribute__((always_inline)) inline void max_block(const float *const *taps, int64_t ntaps, int64_t k, float *y) {
    vnat m[NV], s[NV];
    for (int v = 0; v < NV; ++v) s[v] = m[v] = vload<vnat>(taps[0] + k + v * VN);
    for (int64_t t = 1; t < ntaps; ++t)
        for (int v = 0; v < NV; ++v) {
            const vnat x = vload<vnat>(taps[t] + k + v * VN);
            m[v] = x > m[v] ? x : m[v];
            s[v] += x;
        }
    vnat all = s[0];
    for (int v = 1; v < NV; ++v) all += s[v];
    if (any_nan(all)) return max_block_exact<NV>(taps, ntaps, k, y);
    for (int v = 0; v < NV; ++v) vstore(y + k + v * VN, m[v]);
}

// One output pixel of an NHWC max pool: the max over ntaps input pixels (taps,
// each c channels) into y, the channels in blocks of 4 vectors held in
// registers across the taps. No taps (a window wholly in the padding): -inf.
PASK_NO_MEMCALLS void max_pixel_nhwc(const float *const *taps, int64_t ntaps, int64_t c, float *y) {
    if (ntaps == 0) {
        for (int64_t k = 0; k < c; ++k) y[k] = -std::numeric_limits<float>::infinity();
        return;
    }
    int64_t k = 0;
    for (; k + 4 * VN <= c; k += 4 * VN) max_block<4>(taps, ntaps, k, y);
    for (; k + VN <= c; k += VN) max_block<1>(taps, ntaps, k, y);
    for (; k < c; ++k) {
        float m = taps[0][k];
        for (int64_t t = 1; t < ntaps; ++t) take_max(m, taps[t][k]);
        y[k] = m;
    }
}

// Windows of up to this many taps take max_pixel_nhwc (their tap pointers on
// the stack); larger ones the accumulator row below.
constexpr int64_t kMaxTapsInRegs = 64;

int max_pool_nhwc(const pask_cpu_runtime *rt, const pask_cpu_pool2d_args &a) {
    auto task = [&](int64_t t, int) {
        const int64_t n = t / a.oh, oh = t % a.oh;
        const float *rows[kMaxTapsInRegs];  // the window's input rows inside the image
        int64_t nrows = 0;
        for (int64_t r = 0; r < a.kh; ++r) {
            const int64_t ih = oh * a.stride_h - a.pad_top + r * a.dil_h;
            if (ih >= 0 && ih < a.h) rows[nrows++] = a.x + (n * a.h + ih) * a.w * a.c;
        }
        const float *taps[kMaxTapsInRegs];
        for (int64_t ow = 0; ow < a.ow; ++ow) {
            int64_t cols[kMaxTapsInRegs], ncols = 0;
            for (int64_t s = 0; s < a.kw; ++s) {
                const int64_t iw = ow * a.stride_w - a.pad_left + s * a.dil_w;
                if (iw >= 0 && iw < a.w) cols[ncols++] = iw * a.c;
            }
            int64_t ntaps = 0;  // row by row, as the accumulator path (the last NaN wins in both)
            for (int64_t r = 0; r < nrows; ++r)
                for (int64_t q = 0; q < ncols; ++q) taps[ntaps++] = rows[r] + cols[q];
            max_pixel_nhwc(taps, ntaps, a.c, a.y + ((n * a.oh + oh) * a.ow + ow) * a.c);
        }
    };
    run_parallel(rt, a.n * a.oh, task);
    return 0;
}

int pool_nhwc(const pask_cpu_runtime *rt, const pask_cpu_pool2d_args &a) {
    if (a.mode == 0 && a.kh <= kMaxTapsInRegs && a.kw <= kMaxTapsInRegs && a.kh * a.kw <= kMaxTapsInRegs) return max_pool_nhwc(rt, a);
    std::atomic<int> failed{0};
    auto task = [&](int64_t t, int) {
        const int64_t n = t / a.oh, oh = t % a.oh;
        float *acc = nullptr;  // max
        double *sum = nullptr;  // avg
        if (a.mode == 0) acc = t_acc.get(size_t(a.c));
        else sum = doubles(t_acc, size_t(a.c));
        if (!acc && !sum) { failed = 1; return; }
        for (int64_t ow = 0; ow < a.ow; ++ow) {
            float *yp = a.y + ((n * a.oh + oh) * a.ow + ow) * a.c;
            if (a.mode == 0) std::fill(acc, acc + a.c, -std::numeric_limits<float>::infinity());
            else std::fill(sum, sum + a.c, 0.0);
            for (int64_t r = 0; r < a.kh; ++r) {
                const int64_t ih = oh * a.stride_h - a.pad_top + r * a.dil_h;
                if (ih < 0 || ih >= a.h) continue;
                for (int64_t s = 0; s < a.kw; ++s) {
                    const int64_t iw = ow * a.stride_w - a.pad_left + s * a.dil_w;
                    if (iw < 0 || iw >= a.w) continue;
                    const float *xp = a.x + ((n * a.h + ih) * a.w + iw) * a.c;
                    if (a.mode == 0)
                        for (int64_t c = 0; c < a.c; ++c) take_max(acc[c], xp[c]);
                    else
                        for (int64_t c = 0; c < a.c; ++c) sum[c] += xp[c];
                }
            }
            if (a.mode == 0) {
                std::copy(acc, acc + a.c, yp);
            } else {
                const Taps th = taps(oh, a.stride_h, a.pad_top, a.kh, a.dil_h, a.h, a.pad_bottom);
                const Taps tw = taps(ow, a.stride_w, a.pad_left, a.kw, a.dil_w, a.w, a.pad_right);
                const double div = divisor(a, th, tw);
                for (int64_t c = 0; c < a.c; ++c) yp[c] = float(sum[c] / div);
            }
        }
    };
    run_parallel(rt, a.n * a.oh, task);
    return failed ? kOutOfMemory : 0;
}

}  // namespace

PASK_EXPORT int pask_pool2d_direct_f32(const pask_cpu_runtime *rt, const pask_cpu_pool2d_args *a) {
    return a->layout == PASK_CPU_LAYOUT_NHWC ? pool_nhwc(rt, *a) : pool_nchw(rt, *a);
}

#else  // PASK_POOL_GLOBAL

constexpr int64_t kChannelBlock = 64;

}  // namespace

PASK_EXPORT int pask_pool2d_global_avg_f32(const pask_cpu_runtime *rt, const pask_cpu_pool2d_args *a) {
    // double sums, as pool_nchw/pool_nhwc's averages (why: above)
    const int64_t hw = a->h * a->w;
    const double div = double(hw);
    if (a->layout == PASK_CPU_LAYOUT_NCHW) {
        auto task = [&](int64_t t, int) {
            const float *xp = a->x + t * hw;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int64_t i = 0;
            for (; i + 4 <= hw; i += 4) { s0 += xp[i]; s1 += xp[i + 1]; s2 += xp[i + 2]; s3 += xp[i + 3]; }
            for (; i < hw; ++i) s0 += xp[i];
            a->y[t] = float(((s0 + s1) + (s2 + s3)) / div);
        };
        run_parallel(rt, a->n * a->c, task);
        return 0;
    }
    const int64_t blocks = (a->c + kChannelBlock - 1) / kChannelBlock;
    auto task = [&](int64_t t, int) {
        const int64_t n = t / blocks, c0 = (t % blocks) * kChannelBlock;
        const int64_t cn = std::min(kChannelBlock, a->c - c0);
        double acc[kChannelBlock] = {};
        for (int64_t p = 0; p < hw; ++p) {
            const float *xp = a->x + (n * hw + p) * a->c + c0;
            for (int64_t c = 0; c < cn; ++c) acc[c] += xp[c];
        }
        for (int64_t c = 0; c < cn; ++c) a->y[n * a->c + c0 + c] = float(acc[c] / div);
    };
    run_parallel(rt, a->n * blocks, task);
    return 0;
}

#endif
