#include "hip_solvers.hpp"

#include <algorithm>

#include "../../backends/hip/hip_backend.hpp"
#include "../../core/error.hpp"
#include "../../core/tensor.hpp"
#include "../../kernels/cuda/pask_cuda_abi.h"

namespace pask::native::hip {

namespace {

// The kernels' portable HIP path runs the tile math as plain FMAs (no matrix
// cores): rough rates that rank these solvers below MIOpen's. Not measured on
// AMD hardware.
constexpr double kFlopsPerUs = 10e6;
constexpr double kBytesPerUs = 1.0e6;
constexpr double kLaunchUs = 6.0;

int dtype_code(pask_dtype_t t) {
    return t == PASK_DTYPE_FLOAT16 ? PASK_CUDA_DTYPE_F16 : t == PASK_DTYPE_BFLOAT16 ? PASK_CUDA_DTYPE_BF16 : PASK_CUDA_DTYPE_F32;
}

bool hip_dtype(const Problem &p) { return gpu_float(p, PASK_DEVICE_HIP); }

double elem_bytes(const Problem &p) { return double(dtype_size(p.dtype)); }

void launch(const Kernel &k, Backend &b, const unsigned grid[3], const unsigned block[3], unsigned smem, void *params) {
    static_cast<const HipBackend &>(b).launch(k.entry, grid, block, smem, params);
}

// An AMD workgroup has 64 KB of LDS: the igemm / gemm kernels always run their
// 64x64 tile there (40 KB), never the 128x128 one (80 KB).
void small_tile_geom(pask_i64 rows, pask_i64 cols, pask_i64 groups, unsigned grid[3], unsigned block[3],
                     unsigned *smem) {
    pask_cuda_mma_geom_(rows, cols, groups, 0, 1, grid, block, smem);  // no split-K on HIP yet
}

class HipSolver : public Solver {
public:
    constexpr HipSolver(int id, const char *name, pask_op_t op, const char *object, const char *entry)
        : Solver(id, name, op, PASK_DEVICE_HIP), object_(object), entry_(entry) {}
    KernelKey kernel_for(const Problem &p, const std::string &target) const override {
        return KernelKey{"native", "hip", object_, entry_, target, "dtype=" + std::to_string(dtype_code(p.dtype))};
    }

private:
    const char *object_;
    const char *entry_;
};

pask_cuda_conv2d_params conv_params(const Problem &p, const OpArgs &a) {
    pask_cuda_conv2d_params q{};
    q.n = p.n; q.c = p.c; q.h = p.h; q.w = p.w;
    q.o = p.o; q.kh = p.kh; q.kw = p.kw; q.oh = p.oh; q.ow = p.ow;
    q.stride_h = p.stride[0]; q.stride_w = p.stride[1];
    q.pad_top = p.pad_pre[0]; q.pad_left = p.pad_pre[1];
    q.dil_h = p.dilation[0]; q.dil_w = p.dilation[1];
    q.groups = p.groups;
    q.layout = p.layout == PASK_LAYOUT_NHWC ? PASK_CUDA_LAYOUT_NHWC : PASK_CUDA_LAYOUT_NCHW;
    q.weight_layout = p.weight_layout == PASK_LAYOUT_NHWC ? PASK_CUDA_LAYOUT_NHWC : PASK_CUDA_LAYOUT_NCHW;
    q.x = a.x; q.weight = a.w; q.bias = a.bias; q.residual = a.residual; q.y = a.y;
    q.alpha = a.alpha; q.beta = a.beta; q.activation = static_cast<int>(p.activation);
    return q;
}

pask_cuda_pool2d_params pool_params(const Problem &p, const OpArgs &a) {
    pask_cuda_pool2d_params q{};
    q.n = p.n; q.c = p.c; q.h = p.h; q.w = p.w; q.oh = p.oh; q.ow = p.ow; q.kh = p.kh; q.kw = p.kw;
    q.stride_h = p.stride[0]; q.stride_w = p.stride[1];
    q.pad_top = p.pad_pre[0]; q.pad_left = p.pad_pre[1]; q.pad_bottom = p.pad_post[0]; q.pad_right = p.pad_post[1];
    q.dil_h = p.dilation[0]; q.dil_w = p.dilation[1];
    q.divisor_override = p.divisor_override;
    q.mode = p.pool_mode == PASK_POOL_MAX ? 0 : 1;
    q.count_include_pad = p.count_include_pad;
    q.layout = p.layout == PASK_LAYOUT_NHWC ? PASK_CUDA_LAYOUT_NHWC : PASK_CUDA_LAYOUT_NCHW;
    q.x = a.x; q.y = a.y;
    return q;
}

class ConvIgemm final : public HipSolver {
public:
    using HipSolver::HipSolver;
    bool applicable(const Problem &p) const override { return p.op == PASK_OP_CONV2D && hip_dtype(p); }
    double cost_us(const Problem &p) const override {
        const double bytes = (double(p.n) * p.c * p.h * p.w + double(p.n) * p.o * p.oh * p.ow +
                              double(p.o) * (p.c / p.groups) * p.kh * p.kw) * elem_bytes(p);
        const double cg = double(p.c / p.groups), og = double(p.o / p.groups);
        const double fill = std::min(1.0, cg * p.kh * p.kw / 32.0) * std::min(1.0, og / 64.0);
        return std::max(p.flops() / kFlopsPerUs / fill, bytes / kBytesPerUs) + kLaunchUs;
    }
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &b) const override {
        pask_cuda_conv2d_params q = conv_params(p, a);
        unsigned grid[3], block[3], smem = 0;
        small_tile_geom(p.n * p.oh * p.ow, p.o / p.groups, p.groups, grid, block, &smem);
        launch(k, b, grid, block, smem, &q);
    }
};

class ConvDepthwise final : public HipSolver {
public:
    using HipSolver::HipSolver;
    bool applicable(const Problem &p) const override {
        return p.op == PASK_OP_CONV2D && hip_dtype(p) && p.groups == p.c && p.groups > 1 && p.o % p.c == 0;
    }
    double cost_us(const Problem &p) const override {
        const double bytes = (double(p.n) * p.c * p.h * p.w + double(p.n) * p.o * p.oh * p.ow) * elem_bytes(p);
        return bytes / kBytesPerUs + p.flops() / kFlopsPerUs + kLaunchUs;
    }
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &b) const override {
        pask_cuda_conv2d_params q = conv_params(p, a);
        unsigned grid[3], block[3], smem = 0;
        pask_cuda_conv2d_depthwise_launch(&q, grid, block, &smem);
        launch(k, b, grid, block, smem, &q);
    }
};

class Gemm final : public HipSolver {
public:
    using HipSolver::HipSolver;
    bool applicable(const Problem &p) const override { return p.op == PASK_OP_GEMM && hip_dtype(p); }
    double cost_us(const Problem &p) const override {
        const double bytes = (double(p.gm) * p.gk + double(p.gk) * p.gn + double(p.gm) * p.gn) * elem_bytes(p);
        return std::max(p.flops() / kFlopsPerUs, bytes / kBytesPerUs) + kLaunchUs;
    }
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &b) const override {
        pask_cuda_gemm_params q{};
        q.m = p.gm; q.n = p.gn; q.k = p.gk;
        q.lda = p.lda; q.ldb = p.ldb; q.ldc = p.ldc;
        q.trans_a = p.trans_a; q.trans_b = p.trans_b;
        q.a = a.x; q.b = a.w; q.bias = a.bias; q.c = a.y;
        q.alpha = a.alpha; q.beta = a.beta; q.activation = static_cast<int>(p.activation);
        unsigned grid[3], block[3], smem = 0;
        small_tile_geom(p.gm, p.gn, 1, grid, block, &smem);
        launch(k, b, grid, block, smem, &q);
    }
};

class PoolDirect final : public HipSolver {
public:
    using HipSolver::HipSolver;
    bool applicable(const Problem &p) const override { return p.op == PASK_OP_POOL2D && hip_dtype(p); }
    double cost_us(const Problem &p) const override {
        const double bytes = (double(p.n) * p.c * p.h * p.w + double(p.n) * p.c * p.oh * p.ow) * elem_bytes(p);
        return bytes / kBytesPerUs + p.flops() / (5 * kFlopsPerUs) + kLaunchUs;
    }
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &b) const override {
        pask_cuda_pool2d_params q = pool_params(p, a);
        unsigned grid[3], block[3], smem = 0;
        pask_cuda_pool2d_launch(&q, grid, block, &smem);
        launch(k, b, grid, block, smem, &q);
    }
};

class PoolGlobalAvg final : public HipSolver {
public:
    using HipSolver::HipSolver;
    bool applicable(const Problem &p) const override {
        return p.op == PASK_OP_POOL2D && hip_dtype(p) && p.pool_mode == PASK_POOL_AVG && p.kh == p.h &&
               p.kw == p.w && p.oh == 1 && p.ow == 1 && p.pad_pre[0] == 0 && p.pad_pre[1] == 0 &&
               p.pad_post[0] == 0 && p.pad_post[1] == 0 && p.divisor_override == 0;
    }
    double cost_us(const Problem &p) const override {
        return double(p.n) * p.c * p.h * p.w * elem_bytes(p) / kBytesPerUs + kLaunchUs * 0.8;
    }
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &b) const override {
        pask_cuda_pool2d_params q = pool_params(p, a);
        unsigned grid[3], block[3], smem = 0;
        pask_cuda_pool2d_global_avg_launch(&q, grid, block, &smem);
        launch(k, b, grid, block, smem, &q);
    }
};

const ConvIgemm k_igemm(19, "conv2d.hip_igemm", PASK_OP_CONV2D, "conv_igemm", "pask_conv2d_igemm");
const ConvDepthwise k_dw(20, "conv2d.hip_depthwise", PASK_OP_CONV2D, "conv_depthwise", "pask_conv2d_depthwise");
const Gemm k_gemm(21, "gemm.hip", PASK_OP_GEMM, "gemm", "pask_gemm");
const PoolDirect k_pool(22, "pool2d.hip_direct", PASK_OP_POOL2D, "pool", "pask_pool2d");
const PoolGlobalAvg k_gpool(23, "pool2d.hip_global_avg", PASK_OP_POOL2D, "pool", "pask_pool2d_global_avg");

}  // namespace

const Solver &conv2d_igemm = k_igemm;
const Solver &conv2d_depthwise = k_dw;
const Solver &gemm = k_gemm;
const Solver &pool2d_direct = k_pool;
const Solver &pool2d_global_avg = k_gpool;

}  // namespace pask::native::hip
