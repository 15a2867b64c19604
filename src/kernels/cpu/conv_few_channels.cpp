// conv2d.few_channels: a direct convolution for few input channels (groups 1,
// C <= 8), the stem of an image model (7x7, stride 2, 3 channels). im2col
// would build a column matrix of C*KH*KW rows for only C channels of input
// (7.4 MB for ResNet's stem at 224x224); here every input value is broadcast
// once per tap against a vector of output channels instead, with no buffer
// larger than one output row.
//
// One task per output row (n, oh). Up to KMAX vectors of 16 output channels
// times several output pixels side by side (AVX-512: 6 for 64 channels, 12 for
// 32, about 24 zmm of sums; AVX2: 3 for 32 channels, 12 ymm) are summed in
// registers, in the build's native vectors, over the taps (r, s, ci):
//   acc[p][k] += x(ci, ih, iw_p) * W[r][s][ci][o0 + 16k ...].
// The weights are packed once per call as [KH][KW][C][O rounded up to 16],
// zero-filled past O, so every weight load is a whole vector. NHWC output
// takes the epilogue per pixel and channel vector; NCHW output goes through a
// row of sums laid out [O][OW] and the epilogue runs along each plane's row.
#include <type_traits>

#include "common.hpp"
#include "vec16.hpp"

PASK_EXPORT uint32_t pask_cpu_abi_version(void) { return PASK_CPU_ABI_VERSION; }

namespace {

// Channel vectors (of 16) a block sums at most. The sums are kept in the
// build's native vectors: 4 x 16 channels times 6 pixels in AVX-512's 32 zmm;
// on AVX2 2 x 16 channels (4 ymm) times 3 pixels in 12 of the 16 ymm (a block
// of 64 channels there spilled its sums: the ResNet stem ran 16x slower).
#if defined(__AVX512F__)
constexpr int KMAX = 4;
#else
constexpr int KMAX = 2;
#endif
constexpr int64_t kMaxChannels = 8;

thread_local Scratch t_weights;  // [KH][KW][C][OP]
thread_local Scratch t_sums;     // NCHW: one output row's sums, [OP][OWP]
thread_local ScratchOf<int64_t> t_offsets;  // Geometry::off

struct Geometry {
    int64_t op;          // O rounded up to a whole vector
    int64_t kk;          // KH * KW
    const int64_t *off;  // tap (s, ci) = s*C + ci of a window row: its input offset from the row's first column
};

// The sums of pixels [ow0, ow0 + NP) and channel vectors [o0, o0 + K*16) of
// output row (n, oh), stored by store(p, k, vector). Per tap (r, s) each
// pixel walks its input's channels with a pointer and a channel stride; a
// pixel in the padding walks a row of zeros with stride 0 instead.
template <bool NHWC, int NP, int K, typename Store>
__attribute__((always_inline)) inline void block(const pask_cpu_conv2d_args &a, const Geometry &g, const float *wt,
                                                 int64_t n, int64_t oh, int64_t ow0, int64_t o0, Store &&store) {
    static const float zero = 0.f;
    const int64_t cs = NHWC ? 1 : a.h * a.w;  // channel stride of the input
    constexpr int KN = K * kVfRegs;  // native vectors of the block's channels
    vnat acc[NP][KN];
#pragma GCC unroll 16
    for (int p = 0; p < NP; ++p)
#pragma GCC unroll 8
        for (int k = 0; k < KN; ++k) acc[p][k] = vnat{};
    const int64_t iw0 = ow0 * a.stride_w - a.pad_left;  // pixel 0's first input column
    const bool interior = iw0 >= 0 && (NP - 1) * a.stride_w + iw0 + (a.kw - 1) * a.dil_w < a.w;
    const int64_t span = a.kw * a.c;
    for (int64_t r = 0; r < a.kh; ++r) {
        const int64_t ih = oh * a.stride_h - a.pad_top + r * a.dil_h;
        if (ih < 0 || ih >= a.h) continue;
        const float *xrow = NHWC ? a.x + (n * a.h + ih) * a.w * a.c : a.x + (n * a.c * a.h + ih) * a.w;
        if (interior) {  // every tap of every pixel inside the row: one offset table for all
            const float *xp[NP];
            for (int p = 0; p < NP; ++p) xp[p] = xrow + (iw0 + p * a.stride_w) * (NHWC ? a.c : 1);
            const float *wr = wt + r * span * g.op + o0;
            for (int64_t j = 0; j < span; ++j) {
                vnat w[KN];
#pragma GCC unroll 8
                for (int k = 0; k < KN; ++k) w[k] = vload<vnat>(wr + j * g.op + k * VN);
                const int64_t o = g.off[j];
#pragma GCC unroll 16
                for (int p = 0; p < NP; ++p) {
                    const vnat xv = vsplat<vnat>(xp[p][o]);
#pragma GCC unroll 8
                    for (int k = 0; k < KN; ++k) acc[p][k] += xv * w[k];
                }
            }
            continue;
        }
        for (int64_t s = 0; s < a.kw; ++s) {
            const float *xp[NP];
            int64_t step[NP];
            for (int p = 0; p < NP; ++p) {
                const int64_t iw = (ow0 + p) * a.stride_w - a.pad_left + s * a.dil_w;
                const bool inside = iw >= 0 && iw < a.w;
                xp[p] = inside ? xrow + (NHWC ? iw * a.c : iw) : &zero;
                step[p] = inside ? cs : 0;
            }
            const float *wrs = wt + ((r * a.kw + s) * a.c) * g.op + o0;
            for (int64_t ci = 0; ci < a.c; ++ci) {
                vnat w[KN];
                for (int k = 0; k < KN; ++k) w[k] = vload<vnat>(wrs + ci * g.op + k * VN);
                for (int p = 0; p < NP; ++p) {
                    const vnat xv = vsplat<vnat>(*xp[p]);
                    xp[p] += step[p];
                    for (int k = 0; k < KN; ++k) acc[p][k] += xv * w[k];
                }
            }
        }
    }
    for (int p = 0; p < NP; ++p)
        for (int k = 0; k < K; ++k) {
            vf_parts u;
            for (int i = 0; i < kVfRegs; ++i) u.p[i] = acc[p][k * kVfRegs + i];
            store(p, k, u.v);
        }
}

// Pixels side by side for a block of K channel vectors: as many as keep about
// 24 accumulators (plus K weight vectors and a broadcast) in AVX-512's 32
// registers, so that narrow stems (MobileNet's 32 channels: K = 2) still run
// 24 independent FMA chains; the other builds keep P.
template <int K>
constexpr int pixels_for() {
#if defined(__AVX512F__)
    return K == 1 ? 16 : K == 2 ? 12 : K == 3 ? 8 : 6;
#else
    return 12 / (K * kVfRegs) > 1 ? 12 / (K * kVfRegs) : 1;  // 12 of the 16 registers for sums
#endif
}

// Channel vectors [o0, o0 + K*16) of every pixel of output row (n, oh):
// pixels_for<K>() at a time, then 4, 2 and 1.
template <bool NHWC, int K, typename Store>
void row_block(const pask_cpu_conv2d_args &a, const Geometry &g, const float *wt, int64_t n, int64_t oh, int64_t o0,
               Store &&store) {
    constexpr int NP = pixels_for<K>();
    int64_t ow = 0;
    for (; ow + NP <= a.ow; ow += NP)
        block<NHWC, NP, K>(a, g, wt, n, oh, ow, o0, [&](int p, int k, const vf &v) { store(ow + p, o0 + k * V, v); });
    if constexpr (NP > 4)
        for (; ow + 4 <= a.ow; ow += 4)
            block<NHWC, 4, K>(a, g, wt, n, oh, ow, o0, [&](int p, int k, const vf &v) { store(ow + p, o0 + k * V, v); });
    if constexpr (NP > 2)
        for (; ow + 2 <= a.ow; ow += 2)
            block<NHWC, 2, K>(a, g, wt, n, oh, ow, o0, [&](int p, int k, const vf &v) { store(ow + p, o0 + k * V, v); });
    for (; ow < a.ow; ++ow)
        block<NHWC, 1, K>(a, g, wt, n, oh, ow, o0, [&](int p, int k, const vf &v) { store(ow + p, o0 + k * V, v); });
}

// Output row (n, oh): channel blocks of up to 4 vectors, each over the whole row.
template <bool NHWC, typename Store>
void row(const pask_cpu_conv2d_args &a, const Geometry &g, const float *wt, int64_t n, int64_t oh, Store &&store) {
    int64_t o0 = 0;
    for (; o0 + KMAX * V <= g.op; o0 += KMAX * V) row_block<NHWC, KMAX>(a, g, wt, n, oh, o0, store);
    const int64_t left = (g.op - o0) / V;
    if (left == 3)
        row_block<NHWC, 3>(a, g, wt, n, oh, o0, store);
    else if (left == 2)
        row_block<NHWC, 2>(a, g, wt, n, oh, o0, store);
    else if (left == 1)
        row_block<NHWC, 1>(a, g, wt, n, oh, o0, store);
}

template <bool NHWC>
int run(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args &a, const Geometry &g, const float *wt) {
    std::atomic<int> failed{0};
    const int64_t owp = ceil_div(a.ow, V) * V;
    auto task = [&](int64_t t, int) {
        const int64_t n = t / a.oh, oh = t % a.oh;
        if constexpr (NHWC) {
            // channels [o, o + 16) of pixel ow; a last partial vector goes through a padded copy.
            // The common activations (none, relu, relu6; no beta) are compiled into the row's
            // stores, not tested vector by vector with every sum of the block live.
            auto go = [&](auto act_tag) {
            constexpr int ACT = decltype(act_tag)::value;
            row<true>(a, g, wt, n, oh, [&](int64_t ow, int64_t o, const vf &acc) {
                const int64_t base = ((n * a.oh + oh) * a.ow + ow) * a.o + o;
                float *y = a.y + base;
                const float *res = a.residual ? a.residual + base : nullptr;
                if (ACT >= 0 && o + V <= a.o) {
                    const vf zero{}, six = splat(6.f);
                    vf v = splat(a.ep.alpha) * acc + (a.bias ? loadu(a.bias + o) : vf{}) + (res ? loadu(res) : vf{});
                    if constexpr (ACT == PASK_CPU_ACT_RELU) v = floor_at(v, zero);  // NaN stays (finish_vec)
                    if constexpr (ACT == PASK_CPU_ACT_RELU6) {
                        v = floor_at(ceil_at(v, six), zero);
                    }
                    storeu(y, v);
                    return;
                }
                if (o + V <= a.o) {
                    storeu(y, finish_vec(acc, a.ep, a.ep.beta != 0.f ? loadu(y) : vf{},
                                         a.bias ? loadu(a.bias + o) : vf{}, res ? loadu(res) : vf{}));
                    return;
                }
                const size_t bytes = size_t(a.o - o) * sizeof(float);
                float yb[V] = {}, bb[V] = {}, rb[V] = {};
                if (a.ep.beta != 0.f) std::memcpy(yb, y, bytes);
                if (a.bias) std::memcpy(bb, a.bias + o, bytes);
                if (res) std::memcpy(rb, res, bytes);
                const vf v = finish_vec(acc, a.ep, loadu(yb), loadu(bb), loadu(rb));
                std::memcpy(y, &v, bytes);
            });
            };
            if (a.ep.beta != 0.f)
                go(std::integral_constant<int, -1>());
            else if (a.ep.activation == PASK_CPU_ACT_NONE)
                go(std::integral_constant<int, PASK_CPU_ACT_NONE>());
            else if (a.ep.activation == PASK_CPU_ACT_RELU)
                go(std::integral_constant<int, PASK_CPU_ACT_RELU>());
            else if (a.ep.activation == PASK_CPU_ACT_RELU6)
                go(std::integral_constant<int, PASK_CPU_ACT_RELU6>());
            else
                go(std::integral_constant<int, -1>());
            return;
        }
        float *sums = t_sums.get(size_t(g.op * owp));
        if (!sums) { failed = 1; return; }
        row<false>(a, g, wt, n, oh, [&](int64_t ow, int64_t o, const vf &acc) {
            for (int i = 0; i < V; ++i) sums[(o + i) * owp + ow] = acc[i];
        });
        for (int64_t oc = 0; oc < a.o; ++oc) {
            const int64_t base = ((n * a.o + oc) * a.oh + oh) * a.ow;
            finish_row(sums + oc * owp, a.ow, a.y + base, a.ep, a.bias ? a.bias[oc] : 0.f,
                       a.residual ? a.residual + base : nullptr);
        }
    };
    run_parallel(rt, a.n * a.oh, task);
    return failed ? kOutOfMemory : 0;
}

}  // namespace

PASK_EXPORT int pask_conv2d_few_channels_f32(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args *a) {
    if (a->groups != 1 || a->c > kMaxChannels) return 4;  // PASK_ERROR_UNSUPPORTED
    Geometry g;
    g.op = ceil_div(a->o, V) * V;
    g.kk = a->kh * a->kw;
    // weights packed [KH][KW][C][OP] from OIHW {o, c, kh, kw} or OHWI {o, kh, kw, c}
    float *wt = t_weights.get(size_t(g.kk * a->c * g.op));
    if (!wt) return kOutOfMemory;
    int64_t *off = t_offsets.get(size_t(a->kw * a->c));
    if (!off) return kOutOfMemory;
    const bool nhwc = a->layout == PASK_CPU_LAYOUT_NHWC;
    for (int64_t s = 0; s < a->kw; ++s)
        for (int64_t ci = 0; ci < a->c; ++ci)
            off[s * a->c + ci] = nhwc ? s * a->dil_w * a->c + ci : ci * a->h * a->w + s * a->dil_w;
    g.off = off;
    const bool ohwi = a->weight_layout == PASK_CPU_LAYOUT_NHWC;
    for (int64_t t = 0; t < g.kk; ++t)
        for (int64_t ci = 0; ci < a->c; ++ci) {
            float *d = wt + (t * a->c + ci) * g.op;
            for (int64_t o = 0; o < a->o; ++o)
                d[o] = ohwi ? a->weight[(o * g.kk + t) * a->c + ci] : a->weight[(o * a->c + ci) * g.kk + t];
            std::fill(d + a->o, d + g.op, 0.f);
        }
    return a->layout == PASK_CPU_LAYOUT_NHWC ? run<true>(rt, *a, g, wt) : run<false>(rt, *a, g, wt);
}
