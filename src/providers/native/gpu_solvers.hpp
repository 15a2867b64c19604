// The native provider's GPU solver family: paskdnn's own kernels
// (src/kernels/cuda, one source for CUDA and, through its portable PASK_HIP
// path, HIP). The solvers are templates on a backend trait T that gives what
// differs between the devices:
//
//   using Backend = CudaBackend;                    // launch(fn, grid, block, smem, params)
//   static constexpr pask_device_type_t device;     // PASK_DEVICE_CUDA
//   static constexpr const char *name;              // "cuda": the kernel keys' backend
//   static constexpr double bytes_per_us, launch_us; // the cost model's memory rate and launch cost
//   static constexpr double pool_flops_per_us;
//   static double mma_flops_per_us(const Problem &);     // igemm / gemm
//   static double igemm_layout_penalty(const Problem &);
//   static double depthwise_flops_per_us(const Problem &);
//   static void run_igemm(const Kernel &, const Problem &, pask_cuda_conv2d_params &, Backend &);
//   static bool run_depthwise_vec(const Kernel &, pask_cuda_conv2d_params &, int elem_bytes, Backend &);
//   static void run_gemm(const Kernel &, pask_cuda_gemm_params &, int elem_bytes, Backend &);
//
// cuda_solvers.cpp and hip_solvers.cpp define the traits and the solver
// instances (ids and names).
#pragma once

#include <algorithm>
#include <string>

#include "../../core/solver.hpp"
#include "../../core/tensor.hpp"
#include "../../kernels/cuda/pask_cuda_abi.h"

namespace pask::native::gpu {

inline int dtype_code(pask_dtype_t t) {
    return t == PASK_DTYPE_FLOAT16 ? PASK_CUDA_DTYPE_F16 : t == PASK_DTYPE_BFLOAT16 ? PASK_CUDA_DTYPE_BF16 : PASK_CUDA_DTYPE_F32;
}

inline double elem_bytes(const Problem &p) { return double(dtype_size(p.dtype)); }

inline pask_cuda_conv2d_params conv_params(const Problem &p, const OpArgs &a) {
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
    q.act_p[0] = p.act_params[0]; q.act_p[1] = p.act_params[1];
    return q;
}

inline pask_cuda_gemm_params gemm_params(const Problem &p, const OpArgs &a) {
    pask_cuda_gemm_params q{};
    q.m = p.gm; q.n = p.gn; q.k = p.gk;
    q.lda = p.lda; q.ldb = p.ldb; q.ldc = p.ldc;
    q.trans_a = p.trans_a; q.trans_b = p.trans_b;
    q.a = a.x; q.b = a.w; q.bias = a.bias; q.c = a.y;
    q.alpha = a.alpha; q.beta = a.beta; q.activation = static_cast<int>(p.activation);
    q.act_p[0] = p.act_params[0]; q.act_p[1] = p.act_params[1];
    return q;
}

inline pask_cuda_pool2d_params pool_params(const Problem &p, const OpArgs &a) {
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

template <class T>
class GpuSolver : public Solver {
public:
    constexpr GpuSolver(int id, const char *name, pask_op_t op, const char *object, const char *entry)
        : Solver(id, name, op, T::device), object_(object), entry_(entry) {}
    KernelKey kernel_for(const Problem &p, const std::string &target) const override {
        return KernelKey{"native", T::name, object_, entry_, target, constants(p)};
    }

protected:
    virtual std::string constants(const Problem &p) const { return "dtype=" + std::to_string(dtype_code(p.dtype)); }
    // The tensor-core solvers' constants: float32 at full precision compiles
    // the 3xTF32 main loop (PASK_F32_FULL, pask_cuda_mma.cuh).
    static std::string mma_constants(const Problem &p, const std::string &base) {
        return p.full_fp32 ? base + ",f32_full=1" : base;
    }
    static bool dtype_ok(const Problem &p) { return gpu_float(p, T::device); }
    static void launch(const Kernel &k, Backend &b, const unsigned grid[3], const unsigned block[3], unsigned smem,
                       void *params) {
        static_cast<const typename T::Backend &>(b).launch(k.entry, grid, block, smem, params);
    }

private:
    const char *object_;
    const char *entry_;
};

template <class T>
class ConvIgemm : public GpuSolver<T> {
public:
    using GpuSolver<T>::GpuSolver;
    bool applicable(const Problem &p) const override { return p.op == PASK_OP_CONV2D && this->dtype_ok(p); }
    std::string constants(const Problem &p) const override {
        return this->mma_constants(p, GpuSolver<T>::constants(p));
    }
    double cost_us(const Problem &p) const override {
        const double bytes = (double(p.n) * p.c * p.h * p.w + double(p.n) * p.o * p.oh * p.ow +
                              double(p.o) * (p.c / p.groups) * p.kh * p.kw) * elem_bytes(p);
        // Thin groups (depthwise, few channels per group) leave the tiles
        // mostly empty: the work done is the tile's, not the problem's.
        const double cg = double(p.c / p.groups), og = double(p.o / p.groups);
        const double fill = std::min(1.0, cg * p.kh * p.kw / 32.0) * std::min(1.0, og / 64.0);
        return std::max(p.flops() / T::mma_flops_per_us(p) * T::igemm_layout_penalty(p) / fill,
                        bytes / T::bytes_per_us) +
               T::launch_us;
    }
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &b) const override {
        pask_cuda_conv2d_params q = conv_params(p, a);
        T::run_igemm(k, p, q, static_cast<typename T::Backend &>(b));
    }
};

template <class T>
class ConvDepthwise final : public GpuSolver<T> {
public:
    using GpuSolver<T>::GpuSolver;
    bool applicable(const Problem &p) const override {
        return p.op == PASK_OP_CONV2D && this->dtype_ok(p) && p.groups == p.c && p.groups > 1 && p.o % p.c == 0;
    }
    double cost_us(const Problem &p) const override {
        const double bytes = (double(p.n) * p.c * p.h * p.w + double(p.n) * p.o * p.oh * p.ow) * elem_bytes(p);
        return bytes / T::bytes_per_us + p.flops() / T::depthwise_flops_per_us(p) + T::launch_us;
    }
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &b) const override {
        pask_cuda_conv2d_params q = conv_params(p, a);
        if (T::run_depthwise_vec(k, q, static_cast<int>(dtype_size(p.dtype)), static_cast<typename T::Backend &>(b)))
            return;
        unsigned grid[3], block[3], smem = 0;
        pask_cuda_conv2d_depthwise_launch(&q, grid, block, &smem);
        this->launch(k, b, grid, block, smem, &q);
    }
};

template <class T>
class Gemm final : public GpuSolver<T> {
public:
    using GpuSolver<T>::GpuSolver;
    bool applicable(const Problem &p) const override { return p.op == PASK_OP_GEMM && this->dtype_ok(p); }
    std::string constants(const Problem &p) const override {
        return this->mma_constants(p, GpuSolver<T>::constants(p));
    }
    double cost_us(const Problem &p) const override {
        const double bytes = (double(p.gm) * p.gk + double(p.gk) * p.gn + double(p.gm) * p.gn) * elem_bytes(p);
        return std::max(p.flops() / T::mma_flops_per_us(p), bytes / T::bytes_per_us) + T::launch_us;
    }
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &b) const override {
        pask_cuda_gemm_params q = gemm_params(p, a);
        T::run_gemm(k, q, static_cast<int>(dtype_size(p.dtype)), static_cast<typename T::Backend &>(b));
    }
};

template <class T>
class PoolDirect final : public GpuSolver<T> {
public:
    using GpuSolver<T>::GpuSolver;
    bool applicable(const Problem &p) const override { return p.op == PASK_OP_POOL2D && this->dtype_ok(p); }
    double cost_us(const Problem &p) const override {
        const double bytes = (double(p.n) * p.c * p.h * p.w + double(p.n) * p.c * p.oh * p.ow) * elem_bytes(p);
        return bytes / T::bytes_per_us + p.flops() / T::pool_flops_per_us + T::launch_us;
    }
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &b) const override {
        pask_cuda_pool2d_params q = pool_params(p, a);
        unsigned grid[3], block[3], smem = 0;
        pask_cuda_pool2d_launch(&q, grid, block, &smem);
        this->launch(k, b, grid, block, smem, &q);
    }
};

template <class T>
class PoolGlobalAvg final : public GpuSolver<T> {
public:
    using GpuSolver<T>::GpuSolver;
    bool applicable(const Problem &p) const override {
        return p.op == PASK_OP_POOL2D && this->dtype_ok(p) && p.pool_mode == PASK_POOL_AVG && p.kh == p.h &&
               p.kw == p.w && p.oh == 1 && p.ow == 1 && p.pad_pre[0] == 0 && p.pad_pre[1] == 0 &&
               p.pad_post[0] == 0 && p.pad_post[1] == 0 && p.divisor_override == 0;
    }
    double cost_us(const Problem &p) const override {
        return double(p.n) * p.c * p.h * p.w * elem_bytes(p) / T::bytes_per_us + T::launch_us * 0.8;
    }
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &b) const override {
        pask_cuda_pool2d_params q = pool_params(p, a);
        unsigned grid[3], block[3], smem = 0;
        pask_cuda_pool2d_global_avg_launch(&q, grid, block, &smem);
        this->launch(k, b, grid, block, smem, &q);
    }
};

template <class T>
class Eltwise final : public GpuSolver<T> {
public:
    using GpuSolver<T>::GpuSolver;
    bool applicable(const Problem &p) const override { return p.op == PASK_OP_ELTWISE && this->dtype_ok(p); }
    double cost_us(const Problem &p) const override {
        return 2.0 * p.flops() * elem_bytes(p) / T::bytes_per_us + T::launch_us;
    }
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &b) const override {
        pask_cuda_eltwise_params q{};
        q.n = p.n; q.c = p.c; q.h = p.h; q.w = p.w;
        if (a.m) broadcast_strides(p.mdims, p.layout, q.m_stride);
        if (a.a) broadcast_strides(p.adims, p.layout, q.a_stride);
        q.layout = p.layout == PASK_LAYOUT_NHWC ? PASK_CUDA_LAYOUT_NHWC : PASK_CUDA_LAYOUT_NCHW;
        q.activation = static_cast<int>(p.activation);
        q.act_p[0] = p.act_params[0];
        q.act_p[1] = p.act_params[1];
        q.x = a.x; q.m = a.m; q.a = a.a; q.y = a.y;
        unsigned grid[3], block[3], smem = 0;
        pask_cuda_eltwise_launch(&q, grid, block, &smem);
        this->launch(k, b, grid, block, smem, &q);
    }
};

// A concatenation: one launch per PASK_CUDA_CAT_GROUP inputs, each writing
// its inputs' channel range of y.
template <class T>
class Cat final : public GpuSolver<T> {
public:
    using GpuSolver<T>::GpuSolver;
    bool applicable(const Problem &p) const override { return p.op == PASK_OP_CAT && this->dtype_ok(p); }
    double cost_us(const Problem &p) const override {
        const double groups = double((p.cat_c.size() + PASK_CUDA_CAT_GROUP - 1) / PASK_CUDA_CAT_GROUP);
        return 2.0 * double(p.n) * p.o * p.h * p.w * elem_bytes(p) / T::bytes_per_us + groups * T::launch_us;
    }
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &b) const override {
        const size_t count = p.cat_c.size();
        int64_t base = 0;
        for (size_t g = 0; g < count; g += PASK_CUDA_CAT_GROUP) {
            pask_cuda_cat_params q{};
            q.n = p.n; q.h = p.h; q.w = p.w; q.c_total = p.o; q.c_base = base;
            q.layout = p.layout == PASK_LAYOUT_NHWC ? PASK_CUDA_LAYOUT_NHWC : PASK_CUDA_LAYOUT_NCHW;
            q.y = a.y;
            q.count = static_cast<int>(std::min<size_t>(PASK_CUDA_CAT_GROUP, count - g));
            for (int i = 0; i < q.count; ++i) {
                q.cs[i] = p.cat_c[g + i];
                q.xs[i] = a.xs[g + i];
                q.c_group += q.cs[i];
            }
            unsigned grid[3], block[3], smem = 0;
            pask_cuda_cat_launch(&q, grid, block, &smem);
            this->launch(k, b, grid, block, smem, &q);
            base += q.c_group;
        }
    }
};

}  // namespace pask::native::gpu
