/*
 * paskdnn: generic implicit-GEMM 2-D convolution on the tensor cores.
 * Entry: pask_conv2d_igemm(const pask_cuda_conv2d_params p).
 * GEMM view per group g: M = N*OH*OW pixels, N = O/groups, K = (C/groups)*KH*KW,
 * K ordered (kh, kw, c) for NHWC input and (c, kh, kw) for NCHW input.
 * Tile config picked by blockDim.x (see pask_cuda_conv2d_igemm_launch):
 *   256 threads: 128x128 tile, 4 smem stages (80 KB); 128 threads: 64x64, 4 stages (40 KB).
 * Split-K (p.splits > 1, grids too small to fill the GPU): each CTA sums one slice
 * of the K tiles into p.partial; pask_conv2d_igemm_splitk_reduce applies the epilogue.
 * Optional compile-time shape: PASK_FIXED_KH/KW/STRIDE/PAD/DIL.
 * NCHW input may be transposed first (pask_transpose, below: x to NHWC, the
 * weight to OHWI) and run with p.y_nchw = 1, y and residual staying NCHW.
 */
#include "pask_cuda_mma.cuh"

#include "pask_cuda_geometry.cuh"

template <int BM, int BN, int NT, int WARPS_M, int STAGES>
PASK_DEV void conv_body(const pask_cuda_conv2d_params &p, unsigned *smem) {
    constexpr int WARPS_N = NT / 32 / WARPS_M;
    constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N, MI = WM / 16, NI = WN / 8;
    constexpr int BK = PASK_BK, VEC = PASK_VEC, RKE = PASK_RK_ELEMS;
    constexpr int A_WORDS = BM * PASK_ROWW, STAGE_WORDS = (BM + BN) * PASK_ROWW;
    constexpr int CA = BM * 4 / NT; /* 16-byte chunks per thread, A */
    constexpr int CB = BN * 4 / NT;
    constexpr int AKG = NT / BM, AKP = BK / AKG; /* scalar path: k groups, k per thread */
    constexpr int BKG = NT / BN, BKP = BK / BKG;

    const int KH = PASK_KH, KW = PASK_KW, SH = PASK_SH, SW = PASK_SW, PT = PASK_PT, PL = PASK_PL, DH = PASK_DH,
              DW = PASK_DW;
    const int H = (int)p.h, W = (int)p.w, C = (int)p.c, OH = (int)p.oh, OW = (int)p.ow;
    const int G = (int)p.groups, Cg = C / G, Og = (int)p.o / G;
    const int K = Cg * KH * KW;
    const pask_i64 M = p.n * (pask_i64)OH * OW;
    const int OHW = OH * OW;

    const int S = p.splits > 1 ? p.splits : 1;
    pask_i64 lin = blockIdx.y + (pask_i64)gridDim.y * blockIdx.z;
    const int ntiles = (Og + BN - 1) / BN;
    if (lin >= (pask_i64)ntiles * G * S) return;
    const int split = (int)(lin % S);
    lin /= S;
    const int g = (int)(lin / ntiles), n0 = (int)(lin % ntiles) * BN;
    const pask_i64 m0 = (pask_i64)blockIdx.x * BM;

    const pask_t *__restrict__ x = (const pask_t *)p.x;
    const pask_t *__restrict__ w = (const pask_t *)p.weight;
    const bool nhwc = p.layout == PASK_CUDA_LAYOUT_NHWC;
    const bool ohwi = p.weight_layout == PASK_CUDA_LAYOUT_NHWC;
    const bool a_vec = nhwc && (Cg % VEC) == 0 && (((unsigned long long)x) & 15) == 0;
    const bool b_vec = (((unsigned long long)w) & 15) == 0 && (K % VEC) == 0 &&
                       ((nhwc && ohwi && (Cg % VEC) == 0) || (!nhwc && !ohwi));
    const int tid = threadIdx.x;

    /* ---- per-thread A row state ---- */
    int a_ih0[CA], a_iw0[CA];
    pask_i64 a_base[CA];
    int s_ih0 = 0, s_iw0 = 0;
    pask_i64 s_base = -1;
    if (a_vec) {
#pragma unroll
        for (int i = 0; i < CA; ++i) {
            const int row = (tid + i * NT) >> 2;
            const pask_i64 m = m0 + row;
            a_base[i] = -1;
            a_ih0[i] = 0;
            a_iw0[i] = 0;
            if (m < M) {
                const pask_i64 nimg = m / OHW;
                const int pix = (int)(m - nimg * OHW), oh = pix / OW, ow = pix - oh * OW;
                a_ih0[i] = oh * SH - PT;
                a_iw0[i] = ow * SW - PL;
                a_base[i] = nimg * H * W * C + (pask_i64)g * Cg;
            }
        }
    } else {
        const int row = tid % BM;
        const pask_i64 m = m0 + row;
        if (m < M) {
            const pask_i64 nimg = m / OHW;
            const int pix = (int)(m - nimg * OHW), oh = pix / OW, ow = pix - oh * OW;
            s_ih0 = oh * SH - PT;
            s_iw0 = ow * SW - PL;
            s_base = nhwc ? nimg * H * W * C + (pask_i64)g * Cg : (nimg * C + (pask_i64)g * Cg) * H * W;
        }
    }

    /* this CTA's K tiles: all, or its split-K slice */
    const int KT_ALL = (K + BK - 1) / BK, KT_PER = (KT_ALL + S - 1) / S;
    const int kt0 = split * KT_PER;
    const int KT = KT_ALL - kt0 < KT_PER ? (KT_ALL - kt0 > 0 ? KT_ALL - kt0 : 0) : KT_PER;

    /* Vector A path: every chunk of this thread sits at the same k column
     * (kc = tid & 3), so one (c, r, s) position serves them all; it advances by
     * BK per tile without a division (load_tile runs for kt = 0, 1, 2, ... in
     * order: pask_mainloop). Cg % VEC == 0: a chunk never straddles a tap. */
    int v_k = kt0 * BK + (tid & 3) * VEC, v_c = 0, v_r = 0, v_s = 0;
    if (a_vec) {
        const int rs = v_k / Cg;
        v_c = v_k - rs * Cg;
        v_r = rs / KW;
        v_s = rs - v_r * KW;
    }

    auto load_tile = [&](int stage, int kt) {
        unsigned *sA = smem + stage * STAGE_WORDS;
        unsigned *sB = sA + A_WORDS;
        const int kb = (kt0 + kt) * BK;
        /* A */
        if (a_vec) {
            const bool k_ok = v_k < K;
            const int dih = v_r * DH, diw = v_s * DW;
#pragma unroll
            for (int i = 0; i < CA; ++i) {
                const int row = (tid + i * NT) >> 2;
                const pask_t *src = x;
                int bytes = 0;
                if (a_base[i] >= 0 && k_ok) {
                    const int ih = a_ih0[i] + dih, iw = a_iw0[i] + diw;
                    if ((unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W) {
                        src = x + a_base[i] + ((pask_i64)ih * W + iw) * C + v_c;
                        bytes = 16;
                    }
                }
                pask_cp16(((pask_t *)sA) + row * RKE + (tid & 3) * VEC, src, bytes);
            }
            v_k += BK;
            v_c += BK;
            while (v_c >= Cg) {
                v_c -= Cg;
                if (++v_s == KW) {
                    v_s = 0;
                    ++v_r;
                }
            }
        } else {
            const int row = tid % BM, kg = tid / BM;
            pask_t *dst = ((pask_t *)sA) + row * RKE + kg * AKP;
            int k = kb + kg * AKP;
            int c, r, s;
            if (nhwc) {
                const int rs = k / Cg;
                c = k - rs * Cg;
                r = rs / KW;
                s = rs - r * KW;
            } else {
                c = k / (KH * KW);
                const int rs = k - c * (KH * KW);
                r = rs / KW;
                s = rs - r * KW;
            }
#pragma unroll
            for (int j = 0; j < AKP; ++j) {
                const pask_t *src = x;
                bool ok = false;
                if (s_base >= 0 && k + j < K) {
                    const int ih = s_ih0 + r * DH, iw = s_iw0 + s * DW;
                    if ((unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W) {
                        src = x + (nhwc ? s_base + ((pask_i64)ih * W + iw) * C + c
                                        : s_base + (pask_i64)c * H * W + (pask_i64)ih * W + iw);
                        ok = true;
                    }
                }
                pask_cp_elem(dst + j, src, ok);
                if (nhwc) {
                    if (++c == Cg) { c = 0; if (++s == KW) { s = 0; ++r; } }
                } else {
                    if (++s == KW) { s = 0; if (++r == KH) { r = 0; ++c; } }
                }
            }
        }
        /* B */
        if (b_vec) {
#pragma unroll
            for (int i = 0; i < CB; ++i) {
                const int idx = tid + i * NT, row = idx >> 2, kc = idx & 3;
                const int k = kb + kc * VEC, o = n0 + row;
                const bool ok = o < Og && k < K;
                const pask_t *src = ok ? w + ((pask_i64)g * Og + o) * K + k : w;
                pask_cp16(((pask_t *)sB) + row * RKE + kc * VEC, src, ok ? 16 : 0);
            }
        } else {
            const int row = tid % BN, kg = tid / BN;
            pask_t *dst = ((pask_t *)sB) + row * RKE + kg * BKP;
            const int o = n0 + row;
            const pask_i64 obase = ((pask_i64)g * Og + o) * K;
            int k = kb + kg * BKP;
            int c, r, s;
            if (nhwc) {
                const int rs = k / Cg;
                c = k - rs * Cg;
                r = rs / KW;
                s = rs - r * KW;
            } else {
                c = k / (KH * KW);
                const int rs = k - c * (KH * KW);
                r = rs / KW;
                s = rs - r * KW;
            }
#pragma unroll
            for (int j = 0; j < BKP; ++j) {
                const bool ok = o < Og && k + j < K;
                pask_cp_elem(dst + j,
                             ok ? w + (ohwi ? obase + ((pask_i64)r * KW + s) * Cg + c
                                            : obase + ((pask_i64)c * KH + r) * KW + s)
                                : w,
                             ok);
                if (nhwc) {
                    if (++c == Cg) { c = 0; if (++s == KW) { s = 0; ++r; } }
                } else {
                    if (++s == KW) { s = 0; if (++r == KH) { r = 0; ++c; } }
                }
            }
        }
    };

    float acc[MI][NI][4];
    pask_mainloop<STAGES, MI, NI, false, false, BM, BN, WARPS_M, WM, WN, STAGE_WORDS, A_WORDS>(
        acc, smem, KT, tid, load_tile);
    const int warp = tid >> 5, lane = tid & 31;
    const int wm = warp % WARPS_M, wn = warp / WARPS_M;

    const int gi = lane >> 2, ti = lane & 3;
    const int O = (int)p.o;
    const bool y_nhwc = nhwc && !p.y_nchw;
    if (S > 1) { /* raw partial sums, [split][m][g * Og + o]; the reduce kernel finishes */
        float *__restrict__ part = p.partial + (pask_i64)split * M * O;
#pragma unroll
        for (int mi = 0; mi < MI; ++mi)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const pask_i64 m = m0 + wm * WM + mi * 16 + gi + h * 8;
                if (m >= M) continue;
#pragma unroll
                for (int ni = 0; ni < NI; ++ni)
#pragma unroll
                    for (int j = 0; j < 2; ++j) {
                        const int o = n0 + wn * WN + ni * 8 + 2 * ti + j;
                        if (o < Og) part[m * O + (pask_i64)g * Og + o] = acc[mi][ni][h * 2 + j];
                    }
            }
        return;
    }

    /* ---- epilogue ---- */
    pask_t *__restrict__ y = (pask_t *)p.y;
    const pask_t *__restrict__ bias = (const pask_t *)p.bias;
    const pask_t *__restrict__ res = (const pask_t *)p.residual;
    const float alpha = p.alpha, beta = p.beta;
    const int act = p.activation;
    /* NHWC output whose channels per group are whole 16-byte vectors: the tile
     * goes through shared memory (the main loop's stages are free by now) and
     * leaves in 16-byte stores along rows, bias and residual read the same way.
     * The fragments' own layout would store two bytes at a time, a quarter of
     * each 32-byte sector used: the 1x1 expansions of MobileNetV2 at batch 32
     * (K 16-32, six times more output than input) were bound by those stores.
     * Not with beta (y read back, rare): its registers made ptxas spill. */
    const bool aligned = ((((unsigned long long)y) | ((unsigned long long)bias) | ((unsigned long long)res)) & 15) == 0;
    if (y_nhwc && Og % VEC == 0 && aligned && beta == 0.f) {
        constexpr int LD = BN + 8; /* floats per row: float2 writes of a warp's half hit distinct banks */
        static_assert(BM * LD * 4 <= STAGES * STAGE_WORDS * 4, "the staged tile fits the main loop's stages");
        float *sC = (float *)smem;
        __syncthreads(); /* every warp is done with the last stage */
#pragma unroll
        for (int mi = 0; mi < MI; ++mi)
#pragma unroll
            for (int h = 0; h < 2; ++h)
#pragma unroll
                for (int ni = 0; ni < NI; ++ni) {
                    const int r = wm * WM + mi * 16 + gi + h * 8, c = wn * WN + ni * 8 + 2 * ti;
                    *(pask_f2 *)(sC + r * LD + c) = pask_f2{acc[mi][ni][h * 2], acc[mi][ni][h * 2 + 1]};
                }
        __syncthreads();
        constexpr int CPR = BN / VEC; /* 16-byte chunks per tile row */
        for (int idx = tid; idx < BM * CPR; idx += NT) {
            const int r = idx / CPR, cv = idx - r * CPR, o = n0 + cv * VEC;
            const pask_i64 m = m0 + r;
            if (m >= M || o >= Og) continue; /* Og % VEC == 0: a chunk is wholly in or out */
            const pask_i64 off = m * O + (pask_i64)g * Og + o;
            pask_v16 bv, rv, out = {};
            if (bias) bv = *(const pask_v16 *)(bias + (pask_i64)g * Og + o);
            if (res) rv = *(const pask_v16 *)(res + off);
            /* the chunk's VEC floats in 16-byte shared-memory loads (rows and
             * chunks start on 16-byte boundaries: LD and VEC are multiples of 4) */
            float acc_v[VEC];
#pragma unroll
            for (int q = 0; q < VEC / 4; ++q) {
                const pask_v16 s4 = *(const pask_v16 *)(sC + r * LD + cv * VEC + 4 * q);
#pragma unroll
                for (int j = 0; j < 4; ++j) acc_v[4 * q + j] = pask_bits_f(s4.u[j]);
            }
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                float v = alpha * acc_v[j];
                if (bias) v += pask_v16_get(bv, j);
                if (res) v += pask_v16_get(rv, j);
                pask_v16_put(out, j, pask_act(v, act, p.act_p[0], p.act_p[1]));
            }
            *(pask_v16 *)(y + off) = out;
        }
        return;
    }
#pragma unroll
    for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const pask_i64 m = m0 + wm * WM + mi * 16 + gi + h * 8;
            if (m >= M) continue;
            pask_i64 base, ostride;
            if (y_nhwc) {
                base = m * O + (pask_i64)g * Og;
                ostride = 1;
            } else {
                const pask_i64 nimg = m / OHW;
                const pask_i64 pix = m - nimg * OHW;
                base = (nimg * O + (pask_i64)g * Og) * OHW + pix;
                ostride = OHW;
            }
#pragma unroll
            for (int ni = 0; ni < NI; ++ni)
#pragma unroll
                for (int j = 0; j < 2; ++j) {
                    const int o = n0 + wn * WN + ni * 8 + 2 * ti + j;
                    if (o >= Og) continue;
                    const pask_i64 off = base + (pask_i64)o * ostride;
                    float v = alpha * acc[mi][ni][h * 2 + j];
                    if (beta != 0.f) v += beta * pask_ld(y, off);
                    if (bias) v += pask_ld(bias, (pask_i64)g * Og + o);
                    if (res) v += pask_ld(res, off);
                    y[off] = pask_from_f32(pask_act(v, act, p.act_p[0], p.act_p[1]));
                }
        }
}

extern "C" __global__ void __launch_bounds__(256, 2) pask_conv2d_igemm(const pask_cuda_conv2d_params p) {
    extern __shared__ __align__(16) unsigned pask_smem[];
    if (blockDim.x == 256)
        conv_body<128, 128, 256, 2, 4>(p, pask_smem);
    else
        conv_body<64, 64, 128, 2, 4>(p, pask_smem);
}

/* Split-K: y = act(alpha * sum of the slices' partial sums + beta * y + bias + residual). */
extern "C" __global__ void __launch_bounds__(256) pask_conv2d_igemm_splitk_reduce(const pask_cuda_conv2d_params p) {
    const pask_i64 O = p.o, OHW = p.oh * p.ow, M = p.n * OHW, total = M * O;
    const int S = p.splits;
    const bool nhwc = p.layout == PASK_CUDA_LAYOUT_NHWC && !p.y_nchw; /* y's layout */
    pask_t *__restrict__ y = (pask_t *)p.y;
    const pask_t *__restrict__ bias = (const pask_t *)p.bias;
    const pask_t *__restrict__ res = (const pask_t *)p.residual;
    for (pask_i64 i = blockIdx.x * (pask_i64)blockDim.x + threadIdx.x; i < total;
         i += (pask_i64)gridDim.x * blockDim.x) {
        const pask_i64 m = i / O, col = i - m * O;
        float v = 0.f;
        for (int s = 0; s < S; ++s) v += p.partial[s * total + i];
        pask_i64 off = i;
        if (!nhwc) {
            const pask_i64 nimg = m / OHW;
            off = (nimg * O + col) * OHW + (m - nimg * OHW);
        }
        v *= p.alpha;
        if (p.beta != 0.f) v += p.beta * pask_ld(y, off);
        if (bias) v += pask_ld(bias, col);
        if (res) v += pask_ld(res, off);
        y[off] = pask_from_f32(pask_act(v, p.activation, p.act_p[0], p.act_p[1]));
    }
}

/* dst[b][j][i] = src[b][i][j] (pask_cuda_transpose_params): a 32x32 tile per
 * block through shared memory, both sides read and written along rows. */
extern "C" __global__ void __launch_bounds__(256) pask_transpose(const pask_cuda_transpose_params t) {
    extern __shared__ __align__(16) unsigned pask_smem[];
    pask_t *tile = (pask_t *)pask_smem; /* [32][33] */
    const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    const pask_i64 R = t.rows, Cn = t.cols, b = blockIdx.z;
    const pask_i64 r0 = (pask_i64)blockIdx.y * 32, c0 = (pask_i64)blockIdx.x * 32;
    const pask_t *__restrict__ src = (const pask_t *)t.src + b * R * Cn;
    pask_t *__restrict__ dst = (pask_t *)t.dst + b * R * Cn;
    for (int i = ty; i < 32; i += 8)
        if (r0 + i < R && c0 + tx < Cn) tile[i * 33 + tx] = src[(r0 + i) * Cn + c0 + tx];
    __syncthreads();
    for (int i = ty; i < 32; i += 8)
        if (c0 + i < Cn && r0 + tx < R) dst[(c0 + i) * R + r0 + tx] = tile[tx * 33 + i];
}
