// conv2d.indirect_gemm_nhwc: NHWC convolution as a GEMM over the im2col matrix,
// read in place through an indirection table (no packed copy of the input).
//
//   Y[:, g] (P x Og) = col_g (P x Kg) @ W_g^T,   P = N*OH*OW, Kg = KH*KW*Cg
//
// conv2d.implicit_gemm_nhwc packs every MC x KC block of col_g (transposes of
// 8 channels x 8 pixels) before its micro-kernel reads it; on 3x3 layers of 64
// channels the packing is about an eighth of the layer. Here the micro-kernel
// broadcasts straight from the input: a column run of col_g (one window tap)
// is Cg contiguous channels of one input pixel, so for each run of K a tile of
// IMR output pixels needs IMR pointers (a zero row where the tap lies in the
// padding). The pointers of a block of tiles are worked out once per K block
// and serve every panel of output channels.
//
//   weights, per group: panels of INR output channels, each its whole K deep
//   (the last panel's width rounded up to a vector, zero padded):
//
//     panel p: [k = 0][INR floats] [k = 1][INR floats] ... [k = Kg - 1]
//
//   a task: IMC output pixels x some panels; for each K block (KC deep,
//   whole taps where Cg allows): pointer table of its tiles, then panel by
//   panel, tile by tile, the IMR x (INV vectors) micro-kernel, C (the output)
//   accumulating across K blocks and taking the epilogue on the last.
#include <type_traits>

#include "common.hpp"
#include "sgemm.hpp"

PASK_EXPORT uint32_t pask_cpu_abi_version(void) { return PASK_CPU_ABI_VERSION; }

namespace {

using pask_cpu::GemmEpilogue;
using pask_cpu::sgemm_detail::act_vec;
using pask_cpu::sgemm_detail::make_stage;
using pask_cpu::sgemm_detail::split_range;
using pask_cpu::sgemm_detail::Stage;
using pask_cpu::sgemm_detail::StridedA;
using pask_cpu::sgemm_detail::StridedB;
using pask_cpu::sgemm_detail::V;
using pask_cpu::sgemm_detail::VL;
using pask_cpu::sgemm_detail::vadd;
using pask_cpu::sgemm_detail::vfma;
using pask_cpu::sgemm_detail::vload;
using pask_cpu::sgemm_detail::vload_part;
using pask_cpu::sgemm_detail::vmax;
using pask_cpu::sgemm_detail::vmin;
using pask_cpu::sgemm_detail::vmul;
using pask_cpu::sgemm_detail::vset1;
using pask_cpu::sgemm_detail::vstore;
using pask_cpu::sgemm_detail::vstore_part;
using pask_cpu::sgemm_detail::vzero;

#if defined(__AVX512F__)
constexpr int IMR = 6, INV = 4;  // 6 x 64: 24 accumulators, 4 B vectors, 1 broadcast of 32 zmm
#else
constexpr int IMR = 6, INV = 2;  // 6 x 16 (AVX2) / 6 x 8: 12 accumulators of 16 registers
#endif
constexpr int64_t INR = INV * VL;
constexpr int64_t IKC = 65536 / INR;  // a K block of one panel: 256 KB of weights
constexpr int64_t IMC = IMR * 16;    // output pixels a task
constexpr int64_t kTileOuterBytes = 256 << 10;  // weights of a K block that L2 (1-2 MB) holds beside the rest
constexpr int64_t kFetchOutputBytes = 2 << 20;  // outputs larger than this (L2) are prefetched tile by tile
constexpr int64_t kMergeBelowChannels = 16;     // fewer input channels: a window row's taps are one K run

thread_local Scratch t_weights;  // OHWI copy of OIHW weights
thread_local Scratch t_packed;   // weights packed call by call (no constant copy)
thread_local Scratch t_zeros;    // a zero run of Cg floats: taps in the padding
thread_local Scratch t_padded;   // merged runs: the input with its padding written out
thread_local ScratchOf<const float *> t_table;
thread_local ScratchOf<int64_t> t_lens;

// Floats of one group's packed weights: Kg rows of every panel.
int64_t panels_width(int64_t og) {
    const int64_t tail = og % INR;
    return og / INR * INR + (tail ? ceil_div(tail, VL) * VL : 0);
}
int64_t packed_group_floats(const pask_cpu_conv2d_args &a) {
    return a.kh * a.kw * (a.c / a.groups) * panels_width(a.o / a.groups);
}

// W_g^T (Kg x Og, from OHWI rows of Kg) into panels.
void pack_weights(const pask_cpu_conv2d_args &a, const float *ohwi, float *dst) {
    const int64_t cg = a.c / a.groups, og = a.o / a.groups, kg = cg * a.kh * a.kw;
    for (int64_t g = 0; g < a.groups; ++g) {
        float *d = dst + g * kg * panels_width(og);
        for (int64_t j0 = 0; j0 < og; j0 += INR) {
            const int64_t nw = std::min<int64_t>(INR, og - j0), w = ceil_div(nw, VL) * VL;
            float *pd = d + j0 * kg;  // earlier panels are INR wide
            for (int64_t jj = 0; jj < w; ++jj) {
                if (jj >= nw) {
                    for (int64_t k = 0; k < kg; ++k) pd[k * w + jj] = 0.f;
                    continue;
                }
                const float *src = ohwi + (g * og + j0 + jj) * kg;
                for (int64_t k = 0; k < kg; ++k) pd[k * w + jj] = src[k];
            }
        }
    }
}

// The tile's epilogue and stores, apart from the sums (acc: the tile's
// accumulators, row by row): the micro-kernel then keeps its 24 sums in
// registers, and this code is not repeated in every loop's spill context.
// The last vector may be partial (nvalid not a multiple of VL: 24 output
// channels): its lanes are loaded and stored under a mask.
template <int MRv, int NVv>
__attribute__((noinline)) void store_tile(const V (*acc)[NVv], float *__restrict c, int64_t ldc, int nvalid,
                                          int64_t i0, int64_t j0, const Stage &st) {
    // The stores with the activation known at compile time for the common
    // ones (none, relu, relu6: a branch chain a vector otherwise) and the
    // bias read once a tile.
    const int tail = nvalid - (NVv - 1) * VL;  // lanes of the last vector, 1..VL
    auto load = [tail](const float *p, int v) __attribute__((always_inline)) {
        return v == NVv - 1 && tail < VL ? vload_part(p, tail) : vload(p);
    };
    const V va = vset1(st.alpha), vc = vset1(st.cmul);
    const bool scale = st.alpha != 1.f;
    V bias[NVv];
#pragma GCC unroll 4
    for (int v = 0; v < NVv; ++v) bias[v] = st.last && st.bias_n ? load(st.bias_n + j0 + v * VL, v) : vzero();
    auto store_all = [&](auto act_tag) __attribute__((always_inline)) {
        constexpr int ACT = decltype(act_tag)::value;
#pragma GCC unroll 8
        for (int r = 0; r < MRv; ++r) {
            float *cr = c + r * ldc;
            const float *rs = st.last && st.res ? st.res + (i0 + r) * st.ld_res + j0 : nullptr;
#pragma GCC unroll 4
            for (int v = 0; v < NVv; ++v) {
                V x = scale ? vmul(acc[r][v], va) : acc[r][v];
                if (st.load_c) x = vfma(load(cr + v * VL, v), vc, x);
                if (st.last) {
                    x = vadd(x, bias[v]);
                    if (rs) x = vadd(x, load(rs + v * VL, v));
                    if constexpr (ACT == PASK_CPU_ACT_RELU) {
                        x = vmax(vzero(), x);
                    } else if constexpr (ACT == PASK_CPU_ACT_RELU6) {
                        x = vmin(vset1(6.f), vmax(vzero(), x));
                    } else if constexpr (ACT != PASK_CPU_ACT_NONE) {
                        x = act_vec(x, st.act, st.act_p);
                    }
                }
                if (v == NVv - 1 && tail < VL)
                    vstore_part(cr + v * VL, x, tail);
                else
                    vstore(cr + v * VL, x);
            }
        }
    };
    const int act = st.last ? st.act : PASK_CPU_ACT_NONE;
    if (act == PASK_CPU_ACT_NONE)
        store_all(std::integral_constant<int, PASK_CPU_ACT_NONE>());
    else if (act == PASK_CPU_ACT_RELU)
        store_all(std::integral_constant<int, PASK_CPU_ACT_RELU>());
    else if (act == PASK_CPU_ACT_RELU6)
        store_all(std::integral_constant<int, PASK_CPU_ACT_RELU6>());
    else
        store_all(std::integral_constant<int, -1>());
}

// The micro-kernel: C[0..MRv, 0..nvalid) (+)= sum over the block's runs s of
// A_s (MRv x lens[s], row r at ptrs[s*IMR + r]) @ B (lens[s] rows of NVv*VL).
template <int MRv, int NVv>
__attribute__((noinline)) void ikernel(int64_t nseg, const int64_t *lens, const float *const *ptrs,
                                       const float *__restrict b, float *__restrict c, int64_t ldc, int nvalid,
                                       int64_t i0, int64_t j0, const Stage &st, bool fetch_c) {
    V acc[MRv][NVv];
#pragma GCC unroll 8
    for (int r = 0; r < MRv; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < NVv; ++v) acc[r][v] = vzero();
    // The tile of C (and the residual) is read or written after the sums:
    // fetched now (every 64-byte line of a row: the rows are ldc apart), when
    // the output is larger than L2 and so comes from memory (56x56 64->256:
    // 1.13 -> 1.07 ms with); an output that L2 holds is better left alone
    // (3x3 layers 1-2% faster without, 1x1 14x14 and 7x7 1-4%).
    if (fetch_c) {
        const int64_t last = (int64_t)nvalid - 1;
#pragma GCC unroll 8
        for (int r = 0; r < MRv; ++r) {
            for (int64_t j = 0; j < last; j += 16) __builtin_prefetch(c + r * ldc + j, 1, 3);
            __builtin_prefetch(c + r * ldc + last, 1, 3);
        }
        if (st.last && st.res)
            for (int r = 0; r < MRv; ++r) {
                const float *rs = st.res + (i0 + r) * st.ld_res + j0;
                for (int64_t j = 0; j < last; j += 16) __builtin_prefetch(rs + j, 0, 3);
                __builtin_prefetch(rs + last, 0, 3);
            }
    }
    for (int64_t s = 0; s < nseg; ++s) {
        const float *ap[MRv];
#pragma GCC unroll 8
        for (int r = 0; r < MRv; ++r) ap[r] = ptrs[s * IMR + r];
        const int64_t len = lens[s];
#pragma GCC unroll 4
        for (int64_t q = 0; q < len; ++q) {
            V bv[NVv];
#pragma GCC unroll 4
            for (int v = 0; v < NVv; ++v) bv[v] = vload(b + v * VL);
#pragma GCC unroll 8
            for (int r = 0; r < MRv; ++r) {
                const V ar = vset1(ap[r][q]);
#pragma GCC unroll 4
                for (int v = 0; v < NVv; ++v) acc[r][v] = vfma(ar, bv[v], acc[r][v]);
            }
            b += NVv * VL;
        }
    }

    // The common epilogue (the only or last K block over an output not read
    // back, alpha 1, none / relu / relu6, whole vectors) from the registers:
    // handing the sums to store_tile through memory costs a tile about 60
    // cycles (Zen 4 does not forward a 64-byte store to a 64-byte load), 4% of
    // a 1x1 layer with 64 input channels. The activation is a clamp to
    // [lo, hi] (-inf / 0 and +inf / 6), x the second operand so that NaN stays.
    const int act = st.act;
    if (st.last && !st.load_c && st.alpha == 1.f && nvalid == NVv * VL &&
        (act == PASK_CPU_ACT_NONE || act == PASK_CPU_ACT_RELU || act == PASK_CPU_ACT_RELU6)) {
        alignas(64) static const float no_bias[NVv * VL] = {};
        const float *bn = st.bias_n ? st.bias_n + j0 : no_bias;
        const V lo = vset1(act == PASK_CPU_ACT_NONE ? -__builtin_inff() : 0.f);
        const V hi = vset1(act == PASK_CPU_ACT_RELU6 ? 6.f : __builtin_inff());
        if (st.res) {
#pragma GCC unroll 8
            for (int r = 0; r < MRv; ++r) {
                const float *rs = st.res + (i0 + r) * st.ld_res + j0;
#pragma GCC unroll 4
                for (int v = 0; v < NVv; ++v) {
                    const V x = vadd(vadd(acc[r][v], vload(bn + v * VL)), vload(rs + v * VL));
                    vstore(c + r * ldc + v * VL, vmin(hi, vmax(lo, x)));
                }
            }
        } else {
#pragma GCC unroll 8
            for (int r = 0; r < MRv; ++r)
#pragma GCC unroll 4
                for (int v = 0; v < NVv; ++v)
                    vstore(c + r * ldc + v * VL, vmin(hi, vmax(lo, vadd(acc[r][v], vload(bn + v * VL)))));
        }
        return;
    }
    alignas(64) V sums[MRv][NVv];
#pragma GCC unroll 8
    for (int r = 0; r < MRv; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < NVv; ++v) sums[r][v] = acc[r][v];
    store_tile<MRv, NVv>(sums, c, ldc, nvalid, i0, j0, st);
}

typedef void (*ikernel_fn)(int64_t, const int64_t *, const float *const *, const float *, float *, int64_t, int,
                           int64_t, int64_t, const Stage &, bool);

template <int NVv, int... Ms>
constexpr ikernel_fn row_of(std::integer_sequence<int, Ms...>, int mr) {
    constexpr ikernel_fn t[] = {&ikernel<Ms + 1, NVv>...};
    return t[mr - 1];
}
template <int... Ns>
ikernel_fn pick(int mr, int nv, std::integer_sequence<int, Ns...>) {
    constexpr int count = sizeof...(Ns);
    ikernel_fn f = nullptr;
    ((nv == Ns + 1 ? (f = row_of<Ns + 1>(std::make_integer_sequence<int, IMR>(), mr), 0) : 0), ...);
    (void)count;
    return f;
}
inline ikernel_fn kernel_for(int mr, int nv) { return pick(mr, nv, std::make_integer_sequence<int, INV>()); }

// Few input channels (a stem's 3): a window row's KW taps are KW*C
// contiguous floats of the input, one K run instead of KW runs of C
// (ResNet's 7x7 stem: 7 runs of 21 a tile instead of 49 of 3), read from
// a copy of the input with its padding written out as zeros so that no
// run crosses the image's edge (rows [-pad_top, hp - pad_top), columns
// likewise). Not where the padded copy would be much larger than the
// input (huge padding or dilation). True when merged, with the copy's
// rows hp and columns wp.
bool merged_rows(const pask_cpu_conv2d_args &a, int64_t &hp, int64_t &wp) {
    hp = wp = 0;
    if (!(a.groups == 1 && a.dil_w == 1 && a.kw > 1 && a.c < kMergeBelowChannels)) return false;
    hp = std::max(a.pad_top + a.h, (a.oh - 1) * a.stride_h + (a.kh - 1) * a.dil_h + 1);
    wp = std::max(a.pad_left + a.w, (a.ow - 1) * a.stride_w + a.kw);
    return hp <= 2 * a.h + 64 && wp <= 2 * a.w + 64;
}

// K blocks of whole runs where a run fits (fewer, longer runs): the block's
// depth kc_blk and the most runs (segments) a block holds.
void k_blocks(int64_t kg, int64_t run_len, int64_t &kc_blk, int64_t &nsegmax) {
    kc_blk = run_len <= IKC ? std::min(kg, IKC / run_len * run_len) : IKC;
    nsegmax = std::min(kc_blk, kc_blk / std::max<int64_t>(1, std::min(run_len, kc_blk)) + 2);
}

// The input pixel of output pixel i: its image's first element and the
// window's top-left corner (oh*sh - pt, ow*sw - pl); for merged runs the
// corner's address in the padded copy (ih0 = iw0 = 0).
struct Pixel {
    const float *img;
    int64_t ih0, iw0;
    const float *corner;  // the window's first tap when every tap lies inside the image, else nullptr
};

int run(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args *ap, const float *packed) {
    const pask_cpu_conv2d_args &a = *ap;
    if (a.layout != PASK_CPU_LAYOUT_NHWC) return 4;  // PASK_ERROR_UNSUPPORTED: NHWC only
    const int64_t cg = a.c / a.groups, og = a.o / a.groups, kg = cg * a.kh * a.kw;
    const int64_t rows = a.n * a.oh * a.ow;
    if (rows <= 0 || og <= 0) return 0;
    if (!packed) {
        const float *wt = weights_in(a, PASK_CPU_LAYOUT_NHWC, t_weights);  // OHWI
        if (!wt) return kOutOfMemory;
        float *p = t_packed.get(size_t(a.groups * packed_group_floats(a)));
        if (!p) return kOutOfMemory;
        pack_weights(a, wt, p);
        packed = p;
    }
    GemmEpilogue ep;
    ep.alpha = a.ep.alpha;
    ep.beta = a.ep.beta;
    ep.activation = a.ep.activation;
    ep.act_params[0] = a.ep.act_params[0];
    ep.act_params[1] = a.ep.act_params[1];
    ep.ld_residual = a.o;
    if (kg == 0) {  // no input channels: only the epilogue
        for (int64_t g = 0; g < a.groups; ++g) {
            GemmEpilogue e = ep;
            e.bias_n = a.bias ? a.bias + g * og : nullptr;
            e.residual = a.residual ? a.residual + g * og : nullptr;
            pask_cpu::sgemm_with(rt, StridedA{false, nullptr, 0}, StridedB{false, nullptr, 0}, rows, og, 0,
                                 a.y + g * og, a.o, e);
        }
        return 0;
    }
    // few input channels: merged window rows over a padded copy (merged_rows)
    int64_t hp = 0, wp = 0;
    const bool merged = merged_rows(a, hp, wp);
    const float *xin = a.x;  // the input the row pointers read
    if (merged) {
        float *xp = t_padded.get(size_t(a.n * hp * wp * a.c));
        if (!xp) return kOutOfMemory;
        auto fill = [&](int64_t t, int) {  // padded row t = (n, y)
            const int64_t n = t / hp, iy = t % hp - a.pad_top;
            float *d = xp + t * wp * a.c;
            if (iy < 0 || iy >= a.h) {
                std::fill(d, d + wp * a.c, 0.f);
                return;
            }
            std::fill(d, d + a.pad_left * a.c, 0.f);
            const float *src = a.x + (n * a.h + iy) * a.w * a.c;
            std::copy(src, src + a.w * a.c, d + a.pad_left * a.c);
            std::fill(d + (a.pad_left + a.w) * a.c, d + wp * a.c, 0.f);
        };
        run_parallel(rt, a.n * hp, fill);
        xin = xp;
    }
    const int64_t run_len = merged ? a.kw * cg : cg;  // floats of one whole K run
    int64_t kc_blk, nsegmax;
    k_blocks(kg, run_len, kc_blk, nsegmax);
    // pixels split evenly into tiles of IMR or IMR - 1 rows (49 pixels: 4
    // tiles of 6 and 5 of 5, not 8 of 6 and a lone pixel), IMC / IMR tiles a task
    const int64_t all_tiles = ceil_div(rows, IMR), tiles_per = IMC / IMR;
    const int64_t mgroups = ceil_div(all_tiles, tiles_per), panels = ceil_div(og, INR);
    // enough tasks for every thread: split the panels when the pixels run short
    const int nth = nthreads(rt);
    const int64_t pchunks = std::min(panels, nth > 1 ? ceil_div(2 * nth, mgroups * a.groups) : 1);
    const int64_t ntasks = a.groups * mgroups * pchunks;
    const bool fetch_c = rows * a.o * int64_t(sizeof(float)) > kFetchOutputBytes;
    std::atomic<int> failed{0};
    auto task = [&](int64_t t, int) {
        const int64_t g = t / (mgroups * pchunks), rem = t % (mgroups * pchunks);
        const int64_t mg = rem / pchunks, pch = rem % pchunks;
        int64_t pb, pe;
        split_range(panels, pchunks, pch, pb, pe);
        const int64_t t0 = mg * tiles_per, tiles = std::min(tiles_per, all_tiles - t0);
        int64_t m0, m1, unused;
        split_range(rows, all_tiles, t0, m0, unused);
        split_range(rows, all_tiles, t0 + tiles - 1, unused, m1);
        // Tile ti of the task: rows [tile_at[ti], tile_at[ti + 1]) of the
        // task's pixels (split_range's bounds), and below each pixel's
        // coordinates, stepped along from the first: worked out once, without
        // a division a tile or a pixel (a division by a run-time value is
        // 10-20 cycles; a tile of a 1x1 layer with 32 input channels is about
        // 200 cycles of FMAs).
        int64_t tile_at[IMC / IMR + 1];
        {
            const int64_t q = rows / all_tiles, r = rows % all_tiles;
            for (int64_t ti = 0; ti <= tiles; ++ti) tile_at[ti] = (t0 + ti) * q + std::min(t0 + ti, r) - m0;
        }
        float *zeros = t_zeros.get(size_t(std::max<int64_t>(cg, 16)));
        const float **table = t_table.get(size_t(tiles * nsegmax * IMR));
        int64_t *lens = t_lens.get(size_t(nsegmax));
        if (!zeros || !table || !lens) {
            failed = 1;
            return;
        }
        std::fill(zeros, zeros + std::max<int64_t>(cg, 16), 0.f);
        Pixel px[IMC];
        {
            const int64_t per = a.oh * a.ow;
            int64_t n = m0 / per, oh = m0 % per / a.ow, ow = m0 % a.ow;
            for (int64_t i = m0; i < m1; ++i) {
                if (merged) {
                    px[i - m0] = Pixel{xin + ((n * hp + oh * a.stride_h) * wp + ow * a.stride_w) * a.c, 0, 0, nullptr};
                } else {
                    Pixel &p = px[i - m0];
                    p.img = xin + n * a.h * a.w * a.c + g * cg;
                    p.ih0 = oh * a.stride_h - a.pad_top;
                    p.iw0 = ow * a.stride_w - a.pad_left;
                    const bool inside = p.ih0 >= 0 && p.ih0 + (a.kh - 1) * a.dil_h < a.h && p.iw0 >= 0 &&
                                        p.iw0 + (a.kw - 1) * a.dil_w < a.w;
                    p.corner = inside ? p.img + (p.ih0 * a.w + p.iw0) * a.c : nullptr;
                }
                if (++ow == a.ow) {
                    ow = 0;
                    if (++oh == a.oh) {
                        oh = 0;
                        ++n;
                    }
                }
            }
        }
        GemmEpilogue e = ep;
        e.bias_n = a.bias ? a.bias + g * og : nullptr;
        e.residual = a.residual ? a.residual + g * og : nullptr;
        const float *bg = packed + g * kg * panels_width(og);
        float *yg = a.y + g * og;
        for (int64_t p0 = 0; p0 < kg; p0 += kc_blk) {
            const int64_t kc = std::min(kc_blk, kg - p0);
            // the block's runs (one tap's channels each, or a window row's
            // taps when merged) and every tile's row pointers
            int64_t nseg = 0;
            for (int64_t k = p0; merged && k < p0 + kc; ++nseg) {
                const int64_t r = k / run_len, off = k % run_len, len = std::min(run_len - off, p0 + kc - k);
                const int64_t at = r * a.dil_h * wp * a.c + off;  // from the window's corner
                lens[nseg] = len;
                for (int64_t ti = 0; ti < tiles; ++ti) {
                    const int64_t tb = tile_at[ti], te = tile_at[ti + 1];
                    const float **row = table + (ti * nsegmax + nseg) * IMR;
                    for (int64_t i = tb; i < te; ++i) row[i - tb] = px[i].img + at;
                }
                k += len;
            }
            for (int64_t k = p0; !merged && k < p0 + kc; ++nseg) {
                const int64_t tap = k / cg, ci = k % cg, len = std::min(cg - ci, p0 + kc - k);
                const int64_t dh = (tap / a.kw) * a.dil_h, dw = (tap % a.kw) * a.dil_w;
                const int64_t at = (dh * a.w + dw) * a.c + ci;  // from an inside window's corner
                lens[nseg] = len;
                for (int64_t ti = 0; ti < tiles; ++ti) {
                    const int64_t tb = tile_at[ti], te = tile_at[ti + 1];
                    const float **row = table + (ti * nsegmax + nseg) * IMR;
                    for (int64_t i = tb; i < te; ++i) {
                        const Pixel &p = px[i];
                        if (p.corner) {  // no test a tap for windows inside the image
                            row[i - tb] = p.corner + at;
                            continue;
                        }
                        const int64_t ih = p.ih0 + dh, iw = p.iw0 + dw;
                        row[i - tb] =
                            (ih < 0 || ih >= a.h || iw < 0 || iw >= a.w) ? zeros : p.img + (ih * a.w + iw) * a.c + ci;
                    }
                }
                k += len;
            }
            const Stage st = make_stage(e, p0 == 0, p0 + kc == kg);
            auto one = [&](int64_t ti, int64_t pn) {
                const int64_t j0 = pn * INR;
                const int nw = (int)std::min<int64_t>(INR, og - j0);
                const int64_t w = ceil_div(nw, VL) * VL;
                const int64_t tb = tile_at[ti], te = tile_at[ti + 1];
                const int64_t i = m0 + tb;
                kernel_for((int)(te - tb), (int)(w / VL))(nseg, lens, table + ti * nsegmax * IMR,
                                                          bg + j0 * kg + p0 * w, yg + i * a.o + j0, a.o, nw, i, j0,
                                                          st, fetch_c);
            };
            // A tile's output rows whole, tile after tile, while the block's
            // weights (kc x the task's panels) stay in L2: the output is then
            // written in one forward stream, which the prefetchers follow (a
            // panel at a time writes every row in 256-byte pieces, and on
            // layers with short K the stores' misses are a third of the time).
            if (kc * (pe - pb) * INR * int64_t(sizeof(float)) <= kTileOuterBytes) {
                for (int64_t ti = 0; ti < tiles; ++ti)
                    for (int64_t pn = pb; pn < pe; ++pn) one(ti, pn);
            } else {
                for (int64_t pn = pb; pn < pe; ++pn)
                    for (int64_t ti = 0; ti < tiles; ++ti) one(ti, pn);
            }
        }
    };
    run_parallel(rt, ntasks, task);
    return failed ? kOutOfMemory : 0;
}

}  // namespace

PASK_EXPORT int pask_conv2d_indirect_gemm_nhwc_f32(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args *a) {
    return run(rt, a, nullptr);
}

// Weight pre-packing (kernel_abi.h, pask_cpu_conv2d_pack_fn).
PASK_EXPORT int64_t pask_conv2d_indirect_gemm_nhwc_f32_pack(const pask_cpu_conv2d_args *a, float *dst) {
    if (a->layout != PASK_CPU_LAYOUT_NHWC) return -4;  // PASK_ERROR_UNSUPPORTED
    const int64_t total = a->groups * packed_group_floats(*a);
    if (!dst) return total;
    const float *wt = weights_in(*a, PASK_CPU_LAYOUT_NHWC, t_weights);  // OHWI
    if (!wt) return -kOutOfMemory;
    pack_weights(*a, wt, dst);
    return total;
}

// Scratch reservation (kernel_abi.h, pask_cpu_conv2d_reserve_fn): the calling
// thread's padded input copy (merged window rows: 0.6 MB for a 224x224 stem,
// whose first touch cost the first inference 150 page faults, 0.3 ms) and its
// pointer table, allocated and written now. A runtime's other threads grow
// their tables on their first call.
PASK_EXPORT int pask_conv2d_indirect_gemm_nhwc_f32_reserve(const pask_cpu_conv2d_args *a) {
    if (a->layout != PASK_CPU_LAYOUT_NHWC) return 4;  // PASK_ERROR_UNSUPPORTED
    const int64_t cg = a->c / a->groups, kg = cg * a->kh * a->kw;
    if (a->n * a->oh * a->ow <= 0 || a->o <= 0 || kg == 0) return 0;
    int64_t hp, wp;
    const bool merged = merged_rows(*a, hp, wp);
    if (merged && !touch(t_padded, size_t(a->n * hp * wp * a->c))) return kOutOfMemory;
    int64_t kc_blk, nsegmax;
    k_blocks(kg, merged ? a->kw * cg : cg, kc_blk, nsegmax);
    if (!touch(t_zeros, size_t(std::max<int64_t>(cg, 16))) || !touch(t_table, size_t(IMC / IMR * nsegmax * IMR)) ||
        !touch(t_lens, size_t(nsegmax)))
        return kOutOfMemory;
    return 0;
}

PASK_EXPORT int pask_conv2d_indirect_gemm_nhwc_f32_packed(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args *a,
                                                          const float *packed) {
    if (!packed) return 2;  // PASK_ERROR_NULL_POINTER
    return run(rt, a, packed);
}
