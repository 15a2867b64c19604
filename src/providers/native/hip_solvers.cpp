#include "hip_solvers.hpp"

#include "../../backends/hip/hip_backend.hpp"
#include "../../kernels/cuda/pask_cuda_abi.h"
#include "gpu_solvers.hpp"

namespace pask::native::hip {

namespace {

// An AMD workgroup has 64 KB of LDS: the igemm / gemm kernels always run their
// 64x64 tile there (40 KB), never the 128x128 one (80 KB).
template <class Params>
void launch_small_tile(const Kernel &k, const HipBackend &b, Params &q, pask_i64 rows, pask_i64 cols,
                       pask_i64 groups) {
    unsigned grid[3], block[3], smem = 0;
    pask_cuda_mma_geom_(rows, cols, groups, 0, 1, grid, block, &smem);  // no split-K on HIP yet
    b.launch(k.entry, grid, block, smem, &q);
}

// The HIP trait of the GPU solver family (gpu_solvers.hpp). The kernels'
// portable HIP path runs the tile math as plain FMAs (no matrix cores): rough
// rates that rank these solvers below MIOpen's. Not measured on AMD hardware.
struct Hip {
    using Backend = HipBackend;
    static constexpr pask_device_type_t device = PASK_DEVICE_HIP;
    static constexpr const char *name = "hip";
    static constexpr double flops_per_us = 10e6;
    static constexpr double bytes_per_us = 1.0e6;
    static constexpr double launch_us = 6.0;
    static constexpr double pool_flops_per_us = 5 * flops_per_us;
    static double mma_flops_per_us(const Problem &) { return flops_per_us; }
    static double igemm_layout_penalty(const Problem &) { return 1.0; }
    static double depthwise_flops_per_us(const Problem &) { return flops_per_us; }

    static void run_igemm(const Kernel &k, const Problem &p, pask_cuda_conv2d_params &q, const HipBackend &b) {
        launch_small_tile(k, b, q, p.n * p.oh * p.ow, p.o / p.groups, p.groups);
    }
    static bool run_depthwise_vec(const Kernel &, pask_cuda_conv2d_params &, int, const HipBackend &) {
        return false;
    }
    static void run_gemm(const Kernel &k, pask_cuda_gemm_params &q, int, const HipBackend &b) {
        launch_small_tile(k, b, q, q.m, q.n, 1);
    }
};

const gpu::ConvIgemm<Hip> k_igemm(19, "conv2d.hip_igemm", PASK_OP_CONV2D, "conv_igemm", "pask_conv2d_igemm");
const gpu::ConvDepthwise<Hip> k_dw(20, "conv2d.hip_depthwise", PASK_OP_CONV2D, "conv_depthwise",
                                   "pask_conv2d_depthwise");
const gpu::Gemm<Hip> k_gemm(21, "gemm.hip", PASK_OP_GEMM, "gemm", "pask_gemm");
const gpu::PoolDirect<Hip> k_pool(22, "pool2d.hip_direct", PASK_OP_POOL2D, "pool", "pask_pool2d");
const gpu::PoolGlobalAvg<Hip> k_gpool(23, "pool2d.hip_global_avg", PASK_OP_POOL2D, "pool", "pask_pool2d_global_avg");
const gpu::Eltwise<Hip> k_eltwise(34, "eltwise.hip", PASK_OP_ELTWISE, "eltwise", "pask_eltwise");
const gpu::Cat<Hip> k_cat(35, "cat.hip", PASK_OP_CAT, "eltwise", "pask_cat");

}  // namespace

const Solver &conv2d_igemm = k_igemm;
const Solver &conv2d_depthwise = k_dw;
const Solver &gemm = k_gemm;
const Solver &pool2d_direct = k_pool;
const Solver &pool2d_global_avg = k_gpool;
const Solver &eltwise = k_eltwise;
const Solver &cat = k_cat;

}  // namespace pask::native::hip
