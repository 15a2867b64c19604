/*
 * paskdnn: row-major GEMM on the tensor cores.
 * Entry: pask_gemm(const pask_cuda_gemm_params p):
 *   C[m x n] = act(alpha * op(A) @ op(B) + beta * C + bias[n]).
 * op(A)[i,k] = trans_a ? a[k*lda + i] : a[i*lda + k]
 * op(B)[k,j] = trans_b ? b[j*ldb + k] : b[k*ldb + j]
 * Tile config by blockDim.x (pask_cuda_gemm_launch): 256 -> 128x128 (4 stages, 80 KB), 128 -> 64x64 (4 stages, 40 KB).
 * Split-K (p.splits > 1): each CTA sums one slice of the K tiles into p.partial;
 * pask_gemm_splitk_reduce applies the epilogue.
 * Few rows (m <= PASK_CUDA_SMALL_M, batch-1 classifiers): pask_gemm_small_m
 * (B not transposed) and pask_gemm_small_m_bt (B transposed, a linear layer's
 * weight) on the CUDA cores, bound by reading B once with 16-byte loads; K is
 * split over blockIdx.y into p.partial the same way (pask_cuda_gemm_small_m_launch).
 */
#include "pask_cuda_mma.cuh"

/* Load one BK slice of a R-row operand into smem.
 * KR == false: element (r, k) at src[r*ld + k], smem RK layout.
 * KR == true : element (r, k) at src[k*ld + r], smem KR layout. */
template <bool KR, int R, int NT>
PASK_DEV void gemm_load(unsigned *s, const pask_t *__restrict__ src, pask_i64 ld, pask_i64 r0, pask_i64 Rn, int kb,
                        int K, bool vec, int tid) {
    constexpr int VEC = PASK_VEC, BK = PASK_BK;
    if (!KR) {
        if (vec) {
            constexpr int CH = R * 4 / NT;
#pragma unroll
            for (int i = 0; i < CH; ++i) {
                const int idx = tid + i * NT, row = idx >> 2, kc = idx & 3;
                const pask_i64 r = r0 + row;
                const int k = kb + kc * VEC;
                int n = K - k;
                n = n > VEC ? VEC : n;
                const bool ok = r < Rn && n > 0;
                pask_cp16(((pask_t *)s) + row * PASK_RK_ELEMS + kc * VEC, ok ? src + r * ld + k : src,
                          ok ? n * PASK_ES : 0);
            }
        } else {
            constexpr int KG = NT / R, KP = BK / KG;
            const int row = tid % R, kg = tid / R;
            const pask_i64 r = r0 + row;
            pask_t *dst = ((pask_t *)s) + row * PASK_RK_ELEMS + kg * KP;
            const int k0 = kb + kg * KP;
#pragma unroll
            for (int j = 0; j < KP; ++j) {
                const bool ok = r < Rn && k0 + j < K;
                pask_cp_elem(dst + j, ok ? src + r * ld + k0 + j : src, ok);
            }
        }
    } else {
        constexpr int CPR = R / VEC; /* chunks per k row */
        if (vec) {
            constexpr int CH = BK * CPR / NT;
#pragma unroll
            for (int i = 0; i < CH; ++i) {
                const int idx = tid + i * NT, kk = idx / CPR, rc = idx % CPR;
                const int k = kb + kk;
                const pask_i64 r = r0 + rc * VEC;
                pask_i64 n = Rn - r;
                n = n > VEC ? VEC : n;
                const bool ok = k < K && n > 0;
                pask_cp16(((pask_t *)s) + kk * (R + 8) + rc * VEC, ok ? src + (pask_i64)k * ld + r : src,
                          ok ? (int)n * PASK_ES : 0);
            }
        } else {
            constexpr int PER = BK * R / NT;
#pragma unroll 4
            for (int i = 0; i < PER; ++i) {
                const int idx = tid + i * NT, kk = idx / R, rr = idx % R;
                const int k = kb + kk;
                const pask_i64 r = r0 + rr;
                const bool ok = k < K && r < Rn;
                pask_cp_elem(((pask_t *)s) + kk * (R + 8) + rr, ok ? src + (pask_i64)k * ld + r : src, ok);
            }
        }
    }
}

template <int BM, int BN, int NT, int WARPS_M, int STAGES, bool TA, bool TB>
PASK_DEV void gemm_body(const pask_cuda_gemm_params &p, unsigned *smem) {
    constexpr int WARPS_N = NT / 32 / WARPS_M;
    constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N, MI = WM / 16, NI = WN / 8;
    constexpr int BK = PASK_BK, VEC = PASK_VEC;
    constexpr int A_WORDS = BM * PASK_ROWW, STAGE_WORDS = (BM + BN) * PASK_ROWW;
    /* smem layouts: A is KR when trans_a; B is KR (k rows of n) when !trans_b */
    constexpr bool AKR = TA, BKR = !TB;

    const pask_i64 M = p.m, N = p.n;
    const int K = (int)p.k;
    const int S = p.splits > 1 ? p.splits : 1;
    const pask_i64 m0 = (pask_i64)blockIdx.x * BM;
    const pask_i64 lin = (pask_i64)blockIdx.y + (pask_i64)gridDim.y * blockIdx.z;
    const int split = (int)(lin % S);
    const pask_i64 n0 = (lin / S) * BN;
    if (n0 >= N) return;
    const pask_t *__restrict__ A = (const pask_t *)p.a;
    const pask_t *__restrict__ B = (const pask_t *)p.b;
    const bool a_vec = (((unsigned long long)A) & 15) == 0 && (p.lda % VEC) == 0;
    const bool b_vec = (((unsigned long long)B) & 15) == 0 && (p.ldb % VEC) == 0;
    const int tid = threadIdx.x;

    /* this CTA's K tiles: all, or its split-K slice */
    const int KT_ALL = (K + BK - 1) / BK, KT_PER = (KT_ALL + S - 1) / S;
    const int kt0 = split * KT_PER;
    const int KT = KT_ALL - kt0 < KT_PER ? (KT_ALL - kt0 > 0 ? KT_ALL - kt0 : 0) : KT_PER;

    auto load_tile = [&](int stage, int kt) {
        unsigned *sA = smem + stage * STAGE_WORDS;
        gemm_load<AKR, BM, NT>(sA, A, p.lda, m0, M, (kt0 + kt) * BK, K, a_vec, tid);
        gemm_load<BKR, BN, NT>(sA + A_WORDS, B, p.ldb, n0, N, (kt0 + kt) * BK, K, b_vec, tid);
    };

    float acc[MI][NI][4];
    pask_mainloop<STAGES, MI, NI, AKR, BKR, BM, BN, WARPS_M, WM, WN, STAGE_WORDS, A_WORDS>(
        acc, smem, KT, tid, load_tile);
    const int warp = tid >> 5, lane = tid & 31;
    const int wm = warp % WARPS_M, wn = warp / WARPS_M;

    const int gi = lane >> 2, ti = lane & 3;
    if (S > 1) { /* raw partial sums, [split][m][n]; the reduce kernel finishes */
        float *__restrict__ part = p.partial + (pask_i64)split * M * N;
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
                        const pask_i64 n = n0 + wn * WN + ni * 8 + 2 * ti + j;
                        if (n < N) part[m * N + n] = acc[mi][ni][h * 2 + j];
                    }
            }
        return;
    }
    pask_t *__restrict__ Cp = (pask_t *)p.c;
    const pask_t *__restrict__ bias = (const pask_t *)p.bias;
    const float alpha = p.alpha, beta = p.beta;
    const int act = p.activation;
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
                    const pask_i64 n = n0 + wn * WN + ni * 8 + 2 * ti + j;
                    if (n >= N) continue;
                    const pask_i64 off = m * p.ldc + n;
                    float v = alpha * acc[mi][ni][h * 2 + j];
                    if (beta != 0.f) v += beta * pask_ld(Cp, off);
                    if (bias) v += pask_ld(bias, n);
                    Cp[off] = pask_from_f32(pask_act(v, act, p.act_p[0], p.act_p[1]));
                }
        }
}

template <int BM, int BN, int NT, int WARPS_M, int STAGES>
PASK_DEV void gemm_dispatch(const pask_cuda_gemm_params &p, unsigned *smem) {
    if (p.trans_a) {
        if (p.trans_b) gemm_body<BM, BN, NT, WARPS_M, STAGES, true, true>(p, smem);
        else gemm_body<BM, BN, NT, WARPS_M, STAGES, true, false>(p, smem);
    } else {
        if (p.trans_b) gemm_body<BM, BN, NT, WARPS_M, STAGES, false, true>(p, smem);
        else gemm_body<BM, BN, NT, WARPS_M, STAGES, false, false>(p, smem);
    }
}

extern "C" __global__ void __launch_bounds__(256, 2) pask_gemm(const pask_cuda_gemm_params p) {
    extern __shared__ __align__(16) unsigned pask_smem[];
    if (blockDim.x == 256)
        gemm_dispatch<128, 128, 256, 2, 4>(p, pask_smem);
    else
        gemm_dispatch<64, 64, 128, 2, 4>(p, pask_smem);
}

/* Split-K: C = act(alpha * sum of the slices' partial sums + beta * C + bias). */
extern "C" __global__ void __launch_bounds__(256) pask_gemm_splitk_reduce(const pask_cuda_gemm_params p) {
    const pask_i64 N = p.n, total = p.m * N;
    const int S = p.splits;
    pask_t *__restrict__ Cp = (pask_t *)p.c;
    const pask_t *__restrict__ bias = (const pask_t *)p.bias;
    for (pask_i64 i = blockIdx.x * (pask_i64)blockDim.x + threadIdx.x; i < total;
         i += (pask_i64)gridDim.x * blockDim.x) {
        const pask_i64 m = i / N, n = i - m * N, off = m * p.ldc + n;
        float v = 0.f;
        for (int s = 0; s < S; ++s) v += p.partial[s * total + i];
        v *= p.alpha;
        if (p.beta != 0.f) v += p.beta * pask_ld(Cp, off);
        if (bias) v += pask_ld(bias, n);
        Cp[off] = pask_from_f32(pask_act(v, p.activation, p.act_p[0], p.act_p[1]));
    }
}

/* ---- few rows: C[m x n], m <= PASK_CUDA_SMALL_M (pask_cuda_gemm_small_m_ok) ---- */

/* Row i, column j of the result of this block's K slice: its partial sum
 * (split K), or the epilogue. */
PASK_DEV void pask_gemm_small_store(const pask_cuda_gemm_params &p, int i, pask_i64 j, float acc) {
    if (p.splits > 1) {
        p.partial[(pask_i64)blockIdx.y * p.m * p.n + i * p.n + j] = acc;
        return;
    }
    pask_t *Cp = (pask_t *)p.c;
    const pask_i64 off = i * p.ldc + j;
    float v = p.alpha * acc;
    if (p.beta != 0.f) v += p.beta * pask_ld(Cp, off);
    if (p.bias) v += pask_ld((const pask_t *)p.bias, j);
    Cp[off] = pask_from_f32(pask_act(v, p.activation, p.act_p[0], p.act_p[1]));
}

/* B[k x n] (not transposed): a block covers 32 vectors of PASK_VEC adjacent
 * columns (one per lane) and one K slice (blockIdx.y); its 8 warps take every
 * 8th row of the slice (one 16-byte piece of B's row each), then sum their
 * results through shared memory (pask_cuda_gemm_small_m_launch's bytes). */
extern "C" __global__ void __launch_bounds__(256) pask_gemm_small_m(const pask_cuda_gemm_params p) {
    extern __shared__ __align__(16) unsigned pask_smem[];
    float *red = (float *)pask_smem;  // [8 warps][32 lanes][PASK_VEC]
    const int M = (int)p.m, lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const pask_i64 j0 = ((pask_i64)blockIdx.x * 32 + lane) * PASK_VEC;
    const pask_i64 per = (p.k + gridDim.y - 1) / gridDim.y, k0 = blockIdx.y * per;
    const pask_i64 k1 = k0 + per < p.k ? k0 + per : p.k;
    const pask_t *__restrict__ A = (const pask_t *)p.a;
    const pask_t *__restrict__ B = (const pask_t *)p.b;
    float acc[PASK_CUDA_SMALL_M][PASK_VEC];
#pragma unroll
    for (int i = 0; i < PASK_CUDA_SMALL_M; ++i)
#pragma unroll
        for (int v = 0; v < PASK_VEC; ++v) acc[i][v] = 0.f;
    if (j0 < p.n) {
#pragma unroll 4
        for (pask_i64 kk = k0 + w; kk < k1; kk += 8) {
            const pask_v16 bv = *(const pask_v16 *)(B + kk * p.ldb + j0);
PASK_UNROLL_CUDA
            for (int i = 0; i < PASK_CUDA_SMALL_M; ++i) {
                if (i >= M) break;
                const float av = pask_ld(A, p.trans_a ? kk * p.lda + i : i * p.lda + kk);
#pragma unroll
                for (int v = 0; v < PASK_VEC; ++v) acc[i][v] += av * pask_v16_get(bv, v);
            }
        }
    }
PASK_UNROLL_CUDA
    for (int i = 0; i < PASK_CUDA_SMALL_M; ++i) {
        if (i >= M) break;  // M is the block's: every thread takes the same turns
#pragma unroll
        for (int v = 0; v < PASK_VEC; ++v) red[(w * 32 + lane) * PASK_VEC + v] = acc[i][v];
        __syncthreads();
        if (w < PASK_VEC && j0 < p.n) {  // warp w sums column j0 + w over the 8 warps
            float t = 0.f;
#pragma unroll
            for (int q = 0; q < 8; ++q) t += red[(q * 32 + lane) * PASK_VEC + w];
            pask_gemm_small_store(p, i, j0 + w, t);
        }
        __syncthreads();
    }
}

/* B[n x k] (transposed): a warp per column, its lanes over 16-byte pieces of
 * the K slice (blockIdx.y) of B's row and A's rows, summed across the warp. */
extern "C" __global__ void __launch_bounds__(256) pask_gemm_small_m_bt(const pask_cuda_gemm_params p) {
    const int M = (int)p.m, lane = threadIdx.x & 31;
    const pask_i64 j = (pask_i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (j >= p.n) return;  // the whole warp: j is the warp's
    const pask_i64 kv = p.k / PASK_VEC, per = (kv + gridDim.y - 1) / gridDim.y;
    const pask_i64 v0 = blockIdx.y * per, v1 = v0 + per < kv ? v0 + per : kv;
    const pask_t *__restrict__ A = (const pask_t *)p.a;
    const pask_t *__restrict__ Bj = (const pask_t *)p.b + j * p.ldb;
    float acc[PASK_CUDA_SMALL_M];
#pragma unroll
    for (int i = 0; i < PASK_CUDA_SMALL_M; ++i) acc[i] = 0.f;
#pragma unroll 2
    for (pask_i64 q = v0 + lane; q < v1; q += 32) {
        const pask_v16 bv = *(const pask_v16 *)(Bj + q * PASK_VEC);
PASK_UNROLL_CUDA
        for (int i = 0; i < PASK_CUDA_SMALL_M; ++i) {
            if (i >= M) break;
            const pask_v16 av = *(const pask_v16 *)(A + i * p.lda + q * PASK_VEC);
#pragma unroll
            for (int v = 0; v < PASK_VEC; ++v) acc[i] += pask_v16_get(av, v) * pask_v16_get(bv, v);
        }
    }
PASK_UNROLL_CUDA
    for (int i = 0; i < PASK_CUDA_SMALL_M; ++i) {
        if (i >= M) break;
        const float t = pask_warp_sum(acc[i]);
        if (lane == 0) pask_gemm_small_store(p, i, j, t);
    }
}
