// conv2d.depthwise: groups == C, each input channel feeding O/C outputs
// (channel multiplier), vectorised for every ISA build through GCC/Clang
// vector extensions (16 floats: one zmm on AVX-512, two ymm on AVX2, four xmm
// on the generic build).
//
// NCHW, one task per output plane: the input plane is first copied into a
// zero-padded, stride-phased scratch plane, so that every tap of every output
// row is one contiguous, unconditional load:
//
//   padded column j (0 <= j < Wp) lives in phase j % sw at index j / sw
//   row ph of the scratch plane:  [phase 0: Lq floats][phase 1]...[phase P-1]
//   tap (r, s) of output column ow reads  row oh*sh + r*dh,
//       phase (s*dw) % sw, index ow + (s*dw) / sw
//
// An output plane is a list of vectors (16 columns of one row, the last of a
// row partial); they are summed 4 at a time, whatever rows they sit in, with
// the taps innermost and the sums in registers (4 independent FMA chains), and
// the epilogue then runs on whole vectors.
//
// NHWC, one task per output row: channels are contiguous. The row's interior
// (columns whose window lies inside the input row) goes one native vector of channels (VN)
// at a time over up to 8 neighbouring pixels (one weight load per 8 FMAs, the
// pixels' channels read in whole runs); the columns at the row's ends, the channels
// past the last whole vector and a channel multiplier above 1 take a pixel at
// a time, 4 vectors (64 channels) side by side, borders tested once per tap.
#include <type_traits>

#include "common.hpp"
#include "sgemm.hpp"
#include "vec16.hpp"

using pask_cpu::sgemm_detail::split_range;

PASK_EXPORT uint32_t pask_cpu_abi_version(void) { return PASK_CPU_ABI_VERSION; }

namespace {

constexpr int64_t U = 4;  // vectors summed side by side (independent FMA chains)

thread_local Scratch t_plane;    // NCHW: the padded, phased input plane
thread_local Scratch t_weights;  // NHWC: weights as [KH*KW][O]
thread_local Scratch t_acc;      // NCHW: one output plane's sums, whole vectors a row
thread_local ScratchOf<int64_t> t_offsets;  // NCHW: each tap's and each output vector's offset

// ---- NCHW -------------------------------------------------------------------------

struct PlaneGeometry {
    int64_t hp;    // scratch rows: every row an output row reads
    int64_t wp;    // padded columns read
    int64_t p;     // phases stored (min(sw, wp): with sw >= wp each column has its own)
    int64_t lq;    // floats per phase: ceil(wp / sw)
    int64_t row;   // floats per scratch row: p * lq
    size_t total;  // floats in the plane plus a vector of slack; 0 when it would overflow
};

// A vector that starts at an output column < ow reads lanes past the end of
// its phase; they land in the next phase or row (lanes of columns >= ow, which
// are never stored) or, at the very end, in the vector of slack.
PlaneGeometry plane_geometry(const pask_cpu_conv2d_args &a) {
    PlaneGeometry g{};
    g.hp = (a.oh - 1) * a.stride_h + (a.kh - 1) * a.dil_h + 1;
    g.wp = (a.ow - 1) * a.stride_w + (a.kw - 1) * a.dil_w + 1;
    g.p = std::min(a.stride_w, g.wp);
    g.lq = (g.wp - 1) / a.stride_w + 1;
    int64_t row = 0, total = 0;
    if (__builtin_mul_overflow(g.p, g.lq, &row) || __builtin_mul_overflow(row, g.hp, &total) ||
        total > (int64_t(1) << 40))
        return g;
    g.row = row;
    g.total = size_t(total + V);
    return g;
}

// Stride 2: scratch row dst's phases 0 and 1 (the even and odd padded
// columns) from input row src, 32 input columns a step where all of them lie
// inside the row, one by one at the borders.
void deinterleave2(const pask_cpu_conv2d_args &a, const PlaneGeometry &g, const float *src, float *dst) {
    float *d0 = dst, *d1 = dst + g.lq;
    auto at = [&](int64_t col) { return col >= 0 && col < a.w ? src[col] : 0.f; };
    // index i of phase q holds input column 2i + q - pad_left
    const int64_t lo = std::min(g.lq, a.pad_left <= 0 ? 0 : ceil_div(a.pad_left, 2));  // 2i - pad_left >= 0
    int64_t i = 0;
    for (; i < lo; ++i) {
        d0[i] = at(2 * i - a.pad_left);
        d1[i] = at(2 * i + 1 - a.pad_left);
    }
    for (; i + V <= g.lq && 2 * i - a.pad_left + 2 * V <= a.w; i += V) {
        const float *p = src + (2 * i - a.pad_left);
        const vf v0 = loadu(p), v1 = loadu(p + V);
        storeu(d0 + i, __builtin_shuffle(v0, v1, vi{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}));
        storeu(d1 + i, __builtin_shuffle(v0, v1, vi{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31}));
    }
    for (; i < g.lq; ++i) {
        d0[i] = at(2 * i - a.pad_left);
        d1[i] = at(2 * i + 1 - a.pad_left);
    }
}

// Index i of phase q holds input column i*sw + q - pad_left: inside the row for
// i in [lo, hi). The same for every row of every plane: worked out once a call
// (two divisions a phase) into range[2q], range[2q + 1].
void phase_ranges(const pask_cpu_conv2d_args &a, const PlaneGeometry &g, int64_t *range) {
    const int64_t sw = a.stride_w;
    for (int64_t q = 0; q < g.p; ++q) {
        const int64_t first = q - a.pad_left;  // input column of index 0
        const int64_t lo = std::min(g.lq, first >= 0 ? 0 : ceil_div(-first, sw));
        range[2 * q] = lo;
        range[2 * q + 1] = std::max(lo, std::min(g.lq, a.w - first <= 0 ? 0 : (a.w - first - 1) / sw + 1));
    }
}

// The padding of a scratch plane is the same for every plane of a call (and
// of the next call of the same geometry): it is zeroed when a thread's plane
// buffer first takes a geometry, and fill_plane then writes only the cells
// that hold input.
struct PlaneKey {
    const float *buffer;
    int64_t hp, row, lq, p, pad_top, pad_left, h, w, sw;
    bool operator==(const PlaneKey &o) const {
        return buffer == o.buffer && hp == o.hp && row == o.row && lq == o.lq && p == o.p && pad_top == o.pad_top &&
               pad_left == o.pad_left && h == o.h && w == o.w && sw == o.sw;
    }
};
thread_local PlaneKey t_zeroed{};

void zero_padding_once(const pask_cpu_conv2d_args &a, const PlaneGeometry &g, float *plane) {
    const PlaneKey key{plane, g.hp, g.row, g.lq, g.p, a.pad_top, a.pad_left, a.h, a.w, a.stride_w};
    if (t_zeroed == key) return;
    std::fill(plane, plane + g.total, 0.f);
    t_zeroed = key;
}

// Copies input plane xp (h x w) into the scratch plane's input cells: padded
// row ph holds input row ph - pad_top, padded column j input column
// j - pad_left, filed by phase; range[2q], range[2q + 1] are phase q's inside
// indices [lo, hi) (phase_ranges). The padding is zero already.
PASK_NO_MEMCALLS void fill_plane(const pask_cpu_conv2d_args &a, const PlaneGeometry &g, const int64_t *range,
                                 const float *xp, float *plane) {
    const int64_t sw = a.stride_w;
    const int64_t r0 = std::min(g.hp, std::max<int64_t>(0, a.pad_top));
    const int64_t r1 = std::max(r0, std::min(g.hp, a.pad_top + a.h));
    for (int64_t ph = r0; ph < r1; ++ph) {
        float *dst = plane + ph * g.row;
        const float *src = xp + (ph - a.pad_top) * a.w;
        if (sw == 2 && g.p == 2) {
            deinterleave2(a, g, src, dst);
            continue;
        }
        for (int64_t q = 0; q < g.p; ++q) {
            float *d = dst + q * g.lq;
            const int64_t first = q - a.pad_left, lo = range[2 * q], hi = range[2 * q + 1];
            if (sw == 1) {
                for (int64_t i = lo; i < hi; ++i) d[i] = src[i + first];
            } else {
                for (int64_t i = lo; i < hi; ++i) d[i] = src[i * sw + first];
            }
        }
    }
}

// The sums of K output vectors (jobs) of a plane, side by side: job k starts
// at scratch address base[k] and is stored at acc + dst[k]; tap t reads
// base[k] + toff[t] with weight w[t].
template <int K>
__attribute__((always_inline)) inline void vector_jobs(const float *const *base, const int64_t *dst,
                                                       const int64_t *toff, const float *w, int64_t kk,
                                                       float *acc) {
    // on native vectors (see vnat): K vf sums and a vf broadcast spill on AVX2
    vnat s[K][kVfRegs] = {};
    for (int64_t t = 0; t < kk; ++t) {
        const vnat wv = vsplat<vnat>(w[t]);
        for (int k = 0; k < K; ++k)
            for (int i = 0; i < kVfRegs; ++i) s[k][i] += wv * vload<vnat>(base[k] + toff[t] + i * VN);
    }
    for (int k = 0; k < K; ++k)
        for (int i = 0; i < kVfRegs; ++i) vstore(acc + dst[k] + i * VN, s[k][i]);
}

// Jobs summed side by side: 4 (8 native sums, or 4 on AVX-512), 2 on the
// generic build (a vf is 4 xmm there).
constexpr int64_t UJ = kVfRegs >= 4 ? 2 : 4;

int dw_nchw(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args &a) {
    // weights {O, 1, KH, KW}: OIHW and OHWI coincide when I == 1
    const int64_t mult = a.o / a.c, kk = a.kh * a.kw;
    const PlaneGeometry g = plane_geometry(a);
    if (g.total == 0) return kOutOfMemory;
    // An output plane is oh rows of nv vectors: nv * oh jobs, summed K at a
    // time whatever row they sit in (so a 7-wide plane still runs 4 chains).
    // The taps' and the jobs' offsets are the same for every plane: made once
    // here, on the calling thread, and read by every task.
    const int64_t nv = ceil_div(a.ow, V), jobs = nv * a.oh;
    int64_t *toff = t_offsets.get(size_t(kk + jobs + 2 * g.p));
    if (!toff) return kOutOfMemory;
    int64_t *joff = toff + kk, *range = joff + jobs;
    phase_ranges(a, g, range);
    // tap (r, s): row r*dh, phase (s*dw) % sw, index (s*dw) / sw (with the
    // phases capped at wp < sw, s*dw < wp: phase s*dw, index 0)
    for (int64_t r = 0; r < a.kh; ++r)
        for (int64_t s = 0; s < a.kw; ++s) {
            const int64_t col = s * a.dil_w;
            toff[r * a.kw + s] = r * a.dil_h * g.row + (col % a.stride_w) * g.lq + col / a.stride_w;
        }
    for (int64_t oh = 0, j = 0; oh < a.oh; ++oh)
        for (int64_t c = 0; c < a.ow; c += V, ++j) joff[j] = oh * a.stride_h * g.row + c;
    std::atomic<int> failed{0};
    auto task = [&](int64_t t, int) {
        const int64_t n = t / a.o, oc = t % a.o, ci = oc / mult;
        float *plane = t_plane.get(g.total);
        float *acc = t_acc.get(size_t(jobs * V));
        if (!plane || !acc) { failed = 1; return; }
        zero_padding_once(a, g, plane);  // the padding and the slack
        fill_plane(a, g, range, a.x + (n * a.c + ci) * a.h * a.w, plane);
        const float *wp = a.weight + oc * kk;
        const float *base[U];
        int64_t dst[U];
        int64_t j = 0;
        while (j < jobs) {
            const int k = int(std::min<int64_t>(UJ, jobs - j));
            for (int i = 0; i < k; ++i, ++j) {
                base[i] = plane + joff[j];
                dst[i] = j * V;
            }
            switch (k) {
            case 4: vector_jobs<4>(base, dst, toff, wp, kk, acc); break;
            case 3: vector_jobs<3>(base, dst, toff, wp, kk, acc); break;
            case 2: vector_jobs<2>(base, dst, toff, wp, kk, acc); break;
            default: vector_jobs<1>(base, dst, toff, wp, kk, acc); break;
            }
        }
        const float b = a.bias ? a.bias[oc] : 0.f;
        for (int64_t oh = 0; oh < a.oh; ++oh) {
            const int64_t ybase = ((n * a.o + oc) * a.oh + oh) * a.ow;
            finish_row(acc + oh * nv * V, a.ow, a.y + ybase, a.ep, b, a.residual ? a.residual + ybase : nullptr);
        }
    };
    run_parallel(rt, a.n * a.o, task);
    return failed ? kOutOfMemory : 0;
}

// ---- NHWC -------------------------------------------------------------------------

// The NHWC kernel works on the build's native vectors (vnat, VN channels: 16
// on AVX-512, 8 on AVX2, 4 generic), not on vf: a tile's 8 sums then stay in
// 8 registers on every build, where 8 vf sums would take all 16 ymm on AVX2
// and spill, and GCC would lower their comparisons lane by lane.

// One output pixel's channels [c0, c0 + k*VN) (k vectors), taps in registers,
// the window's borders tested tap by tap (the columns at a row's ends).
template <int K>
inline void pixel_block(const pask_cpu_conv2d_args &a, const float *wt, int64_t n, int64_t oh, int64_t ow,
                        int64_t c0, float *y, const float *res, const float *bias) {
    vnat s[K] = {};
    for (int64_t r = 0; r < a.kh; ++r) {
        const int64_t ih = oh * a.stride_h - a.pad_top + r * a.dil_h;
        if (ih < 0 || ih >= a.h) continue;
        for (int64_t q = 0; q < a.kw; ++q) {
            const int64_t iw = ow * a.stride_w - a.pad_left + q * a.dil_w;
            if (iw < 0 || iw >= a.w) continue;
            const float *xp = a.x + ((n * a.h + ih) * a.w + iw) * a.c + c0;
            const float *wp = wt + (r * a.kw + q) * a.o + c0;
            for (int k = 0; k < K; ++k) s[k] += vload<vnat>(xp + k * VN) * vload<vnat>(wp + k * VN);
        }
    }
    for (int k = 0; k < K; ++k) {
        const int64_t c = c0 + k * VN;
        const vnat before = a.ep.beta != 0.f ? vload<vnat>(y + c) : vnat{};
        const vnat bv = bias ? vload<vnat>(bias + c) : vnat{}, rv = res ? vload<vnat>(res + c) : vnat{};
        vstore(y + c, finish_vec(s[k], a.ep, before, bv, rv));
    }
}

// One output row's interior (every tap of every column inside the row):
// T neighbouring pixels of one VN-channel vector at a time, the vector's
// weights loaded once for the whole row (in registers when the window is a
// compile-time KHxKW, here 3x3), so a tap costs one load per FMA where a pixel
// at a time loads the weight beside every input vector. Rows of the window
// outside the image are dropped once a row ([r0, r1)).
struct RowJob {
    const float *x;      // the input
    int64_t row0;        // offset of input row oh*sh - pt (may lie outside the image: only rows [r0, r1) are read)
    int64_t r0, r1;      // window rows inside the image
    int64_t row_step;    // floats between window rows: dil_h * w * c
    int64_t col_step;    // floats between neighbouring output pixels' windows: sw * c
    int64_t tap_step;    // floats between window columns: dw * c
    int64_t col0;        // floats from the row start to output column 0's first tap: -pl * c
};

template <int KH, int KW, int T>
__attribute__((always_inline)) inline void interior_tile(const pask_cpu_conv2d_args &a, const RowJob &j,
                                                         const float *wt, int64_t ow, int64_t c0, float *yrow,
                                                         const float *resrow) {
    const int64_t kh = KH ? KH : a.kh;
    const int64_t kw = KW ? KW : a.kw;
    vnat s[T];
    for (int t = 0; t < T; ++t) s[t] = vnat{};
    // offsets, not pointers, until a tap is known to lie inside the image
    const int64_t base = j.row0 + j.col0 + ow * j.col_step + c0;
    // unrolled for a compile-time window, so the sums stay in registers
#pragma GCC unroll 8
    for (int64_t r = 0; r < kh; ++r) {
        if (r < j.r0 || r >= j.r1) continue;
        const float *xr = j.x + (base + r * j.row_step);
        const float *wr = wt + r * kw * a.o + c0;
#pragma GCC unroll 8
        for (int64_t q = 0; q < kw; ++q) {
            const vnat w = vload<vnat>(wr + q * a.o);
            const float *xq = xr + q * j.tap_step;
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) s[t] += vload<vnat>(xq + t * j.col_step) * w;
        }
    }
    const vnat bv = a.bias ? vload<vnat>(a.bias + c0) : vnat{};
    // The epilogue with the common activations picked once a tile, not a
    // vector (a tile of 8 sums is only 72 FMAs of work)
    auto store_all = [&](auto act_tag) __attribute__((always_inline)) {
        constexpr int ACT = decltype(act_tag)::value;
        const vnat alpha = vsplat<vnat>(a.ep.alpha), zero{}, six = vsplat<vnat>(6.f);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            const int64_t off = (ow + t) * a.o + c0;
            if constexpr (ACT < 0) {
                const vnat before = a.ep.beta != 0.f ? vload<vnat>(yrow + off) : vnat{};
                vstore(yrow + off, finish_vec(s[t], a.ep, before, bv, resrow ? vload<vnat>(resrow + off) : vnat{}));
            } else {
                vnat v = alpha * s[t] + bv;
                if (resrow) v += vload<vnat>(resrow + off);
                if constexpr (ACT == PASK_CPU_ACT_RELU) v = floor_at(v, zero);  // NaN stays (finish_vec's rule)
                if constexpr (ACT == PASK_CPU_ACT_RELU6) {
                    v = floor_at(ceil_at(v, six), zero);
                }
                vstore(yrow + off, v);
            }
        }
    };
    if (a.ep.beta != 0.f)
        store_all(std::integral_constant<int, -1>());
    else if (a.ep.activation == PASK_CPU_ACT_NONE)
        store_all(std::integral_constant<int, PASK_CPU_ACT_NONE>());
    else if (a.ep.activation == PASK_CPU_ACT_RELU)
        store_all(std::integral_constant<int, PASK_CPU_ACT_RELU>());
    else if (a.ep.activation == PASK_CPU_ACT_RELU6)
        store_all(std::integral_constant<int, PASK_CPU_ACT_RELU6>());
    else
        store_all(std::integral_constant<int, -1>());
}

// Columns [lo, hi) of the row, every whole VN-channel vector [0, vec_end):
// T pixels at a time, all their channels before the next T, so that the input
// is read in whole-pixel runs (the prefetcher follows them) and the window's
// weights (KH*KW*O floats) stay in L1.
template <int KH, int KW>
void interior_span(const pask_cpu_conv2d_args &a, const RowJob &j, const float *wt, int64_t lo, int64_t hi,
                   int64_t vec_end, float *yrow, const float *resrow) {
    int64_t ow = lo;
    for (; ow + 8 <= hi; ow += 8)
        for (int64_t c0 = 0; c0 < vec_end; c0 += VN) interior_tile<KH, KW, 8>(a, j, wt, ow, c0, yrow, resrow);
    if (ow + 4 <= hi) {
        for (int64_t c0 = 0; c0 < vec_end; c0 += VN) interior_tile<KH, KW, 4>(a, j, wt, ow, c0, yrow, resrow);
        ow += 4;
    }
    for (; ow < hi; ++ow)
        for (int64_t c0 = 0; c0 < vec_end; c0 += VN) interior_tile<KH, KW, 1>(a, j, wt, ow, c0, yrow, resrow);
}

// The NHWC kernel's weights: [KH*KW][O], so that the channel loop is contiguous.
void pack_nhwc_weights(const pask_cpu_conv2d_args &a, float *wt) {
    const int64_t kk = a.kh * a.kw;
    for (int64_t oc = 0; oc < a.o; ++oc)
        for (int64_t r = 0; r < kk; ++r) wt[r * a.o + oc] = a.weight[oc * kk + r];
}

// packed: the weights already as pack_nhwc_weights leaves them (a constant
// copy kept by the caller), else they are rearranged here, every call.
int dw_nhwc(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args &a, const float *packed) {
    const int64_t mult = a.o / a.c;
    const float *wt = packed;
    if (!wt) {
        float *w = t_weights.get(size_t(a.kh * a.kw * a.o));
        if (!w) return kOutOfMemory;
        pack_nhwc_weights(a, w);
        wt = w;
    }
    // With a multiplier, output channel oc reads input channel oc / mult: no
    // longer one contiguous run, so those channels are summed one by one.
    const int64_t vec_end = mult == 1 ? (a.o / VN) * VN : 0;
    // Output columns whose every window column lies inside the input row:
    // iw = ow*sw - pl + q*dw in [0, w) for q = 0 and q = kw - 1.
    const int64_t span = (a.kw - 1) * a.dil_w;
    int64_t in_lo = first_inside(-a.pad_left, a.stride_w);
    int64_t in_hi = a.w - 1 - span + a.pad_left < 0 ? 0 : (a.w - 1 - span + a.pad_left) / a.stride_w + 1;
    in_hi = std::min(in_hi, a.ow);
    in_lo = std::min(in_lo, in_hi);
    const bool interior = vec_end > 0 && in_hi > in_lo;
    const bool k3x3 = a.kh == 3 && a.kw == 3;
    // Rows are the tasks; with several threads and fewer than 4 rows a thread
    // (7x7 maps on 2 threads: 4 rows on one, 3 on the other) each row is split
    // into column ranges.
    const int64_t rows = a.n * a.oh, nth = nthreads(rt);
    const int64_t parts = nth == 1 || rows >= 4 * nth
                              ? 1
                              : std::min<int64_t>(ceil_div(4 * nth, rows), std::max<int64_t>(1, a.ow / 4));
    auto task = [&](int64_t t_part, int) {
        const int64_t t = t_part / parts, part = t_part % parts;
        int64_t c_lo, c_hi;
        split_range(a.ow, parts, part, c_lo, c_hi);
        const int64_t n = t / a.oh, oh = t % a.oh;
        const int64_t rbase = ((n * a.oh + oh) * a.ow) * a.o;
        float *yrow = a.y + rbase;
        const float *resrow = a.residual ? a.residual + rbase : nullptr;
        auto edge_pixel = [&](int64_t ow, int64_t c_from) {
            const int64_t base = ow * a.o;
            float *y = yrow + base;
            const float *res = resrow ? resrow + base : nullptr;
            int64_t c = c_from;
            for (; c + U * VN <= vec_end; c += U * VN) pixel_block<U>(a, wt, n, oh, ow, c, y, res, a.bias);
            for (; c + VN <= vec_end; c += VN) pixel_block<1>(a, wt, n, oh, ow, c, y, res, a.bias);
            for (; c < a.o; ++c) {
                float acc = 0.f;
                for (int64_t r = 0; r < a.kh; ++r) {
                    const int64_t ih = oh * a.stride_h - a.pad_top + r * a.dil_h;
                    if (ih < 0 || ih >= a.h) continue;
                    for (int64_t q = 0; q < a.kw; ++q) {
                        const int64_t iw = ow * a.stride_w - a.pad_left + q * a.dil_w;
                        if (iw < 0 || iw >= a.w) continue;
                        acc += a.x[((n * a.h + ih) * a.w + iw) * a.c + c / mult] * wt[(r * a.kw + q) * a.o + c];
                    }
                }
                y[c] = finish(acc, a.ep, a.ep.beta != 0.f ? y[c] : 0.f, a.bias ? a.bias[c] : 0.f,
                              res ? res[c] : 0.f);
            }
        };
        if (!interior) {
            for (int64_t ow = c_lo; ow < c_hi; ++ow) edge_pixel(ow, 0);
            return;
        }
        // this task's columns [c_lo, c_hi): left edge, interior, right edge
        const int64_t lo = std::min(std::max(in_lo, c_lo), c_hi), hi = std::max(std::min(in_hi, c_hi), lo);
        RowJob j;
        const int64_t ih0 = oh * a.stride_h - a.pad_top;
        j.x = a.x;
        j.row0 = (n * a.h + ih0) * a.w * a.c;
        j.r0 = std::min(a.kh, first_inside(ih0, a.dil_h));
        j.r1 = a.h - 1 - ih0 < 0 ? 0 : std::min(a.kh, (a.h - 1 - ih0) / a.dil_h + 1);
        j.row_step = a.dil_h * a.w * a.c;
        j.col_step = a.stride_w * a.c;
        j.tap_step = a.dil_w * a.c;
        j.col0 = -a.pad_left * a.c;
        for (int64_t ow = c_lo; ow < lo; ++ow) edge_pixel(ow, 0);
        if (k3x3)
            interior_span<3, 3>(a, j, wt, lo, hi, vec_end, yrow, resrow);
        else
            interior_span<0, 0>(a, j, wt, lo, hi, vec_end, yrow, resrow);
        if (vec_end < a.o)
            for (int64_t ow = lo; ow < hi; ++ow) edge_pixel(ow, vec_end);
        for (int64_t ow = hi; ow < c_hi; ++ow) edge_pixel(ow, 0);
    };
    run_parallel(rt, rows * parts, task);
    return 0;
}

}  // namespace

PASK_EXPORT int pask_conv2d_depthwise_f32(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args *a) {
    if (a->groups != a->c || a->o % a->c != 0) return 4;  // PASK_ERROR_UNSUPPORTED: not depthwise
    return a->layout == PASK_CPU_LAYOUT_NHWC ? dw_nhwc(rt, *a, nullptr) : dw_nchw(rt, *a);
}

// Weight pre-packing (kernel_abi.h, pask_cpu_conv2d_pack_fn): NHWC only (the
// NCHW kernel reads the weights as they are).
PASK_EXPORT int64_t pask_conv2d_depthwise_f32_pack(const pask_cpu_conv2d_args *a, float *dst) {
    if (a->groups != a->c || a->o % a->c != 0 || a->layout != PASK_CPU_LAYOUT_NHWC) return -4;  // PASK_ERROR_UNSUPPORTED
    const int64_t total = a->kh * a->kw * a->o;
    if (dst) pack_nhwc_weights(*a, dst);
    return total;
}

PASK_EXPORT int pask_conv2d_depthwise_f32_packed(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args *a,
                                                 const float *packed) {
    if (!packed) return 2;  // PASK_ERROR_NULL_POINTER
    if (a->groups != a->c || a->o % a->c != 0 || a->layout != PASK_CPU_LAYOUT_NHWC) return 4;  // PASK_ERROR_UNSUPPORTED
    return dw_nhwc(rt, *a, packed);
}

// Scratch reservation (kernel_abi.h, pask_cpu_conv2d_reserve_fn). NHWC: the
// calling thread's [KH*KW][O] weight copy, allocated and written now (the
// first inference of MobileNetV2 took 3-9 page faults a layer as it grew).
// NCHW: nothing; its per-task planes grow on the first call.
PASK_EXPORT int pask_conv2d_depthwise_f32_reserve(const pask_cpu_conv2d_args *a) {
    if (a->groups != a->c || a->o % a->c != 0) return 4;  // PASK_ERROR_UNSUPPORTED: not depthwise
    if (a->layout != PASK_CPU_LAYOUT_NHWC) return 0;
    return touch(t_weights, size_t(a->kh * a->kw * a->o)) ? 0 : kOutOfMemory;
}
