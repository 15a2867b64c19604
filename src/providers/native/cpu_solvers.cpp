#include "cpu_solvers.hpp"

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "../../backends/cpu/cpu_backend.hpp"
#include "../../core/error.hpp"
#include "../../kernels/cpu/kernel_abi.h"

namespace pask::native::cpu {

namespace {

// Rough rates of these kernels on a 2-core AVX-512 machine; they only need to
// rank solvers correctly (measured run times refine them later).
constexpr double kGemmFlopsPerUs = 140e3;
constexpr double kDirectFlopsPerUs = 4e3;
constexpr double kDepthwiseFlopsPerUs = 12e3;
constexpr double kFewChannelsFlopsPerUs = 200e3;
// Without AVX-512 the kernel keeps 32 channels by 3 pixels in 12 ymm; on the
// 2-core AVX2 VM (Zen 3, 2 threads) ResNet's NCHW 7x7 stem runs 2.3-3.2 ms
// (75-100 GFLOP/s) on it, level with im2col + GEMM (2.5-3.3 ms), behind the
// NHWC indirect GEMM (1.8 ms). Until session 24 its 64-channel blocks spilled
// their sums there (43 ms; 3 GFLOP/s in this model). Rated a little below
// im2col + GEMM so that ties go to the GEMM.
constexpr double kFewChannelsNarrowFlopsPerUs = 60e3;
constexpr double kBytesPerUs = 8e3;

pask_cpu_epilogue epilogue_of(const Problem &p, const OpArgs &a) {
    pask_cpu_epilogue ep;
    ep.alpha = a.alpha;
    ep.beta = a.beta;
    ep.activation = static_cast<int>(p.activation);
    ep.act_params[0] = p.act_params[0];
    ep.act_params[1] = p.act_params[1];
    return ep;
}

void check_kernel_status(int rc, const Kernel &k) {
    if (rc == 0) return;
    if (rc == PASK_ERROR_OUT_OF_MEMORY) fail(PASK_ERROR_OUT_OF_MEMORY, "kernel " + k.key.str() + " ran out of memory for scratch");
    fail(static_cast<pask_status_t>(rc), "kernel " + k.key.str() + " failed with status " + std::to_string(rc));
}

const pask_cpu_runtime *runtime_of(Backend &backend) {
    return static_cast<CpuBackend &>(backend).runtime();
}

class CpuSolver : public Solver {
public:
    constexpr CpuSolver(int id, const char *name, pask_op_t op, const char *object, const char *entry)
        : Solver(id, name, op, PASK_DEVICE_CPU), object_(object), entry_(entry) {}
    KernelKey kernel_for(const Problem &, const std::string &target) const override {
        return KernelKey{"native", "cpu", object_, entry_, target, ""};
    }

private:
    const char *object_;
    const char *entry_;
};

// ---- conv2d ------------------------------------------------------------------

class ConvSolver : public CpuSolver {
public:
    using CpuSolver::CpuSolver;
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &backend) const override {
        const pask_cpu_conv2d_args args = args_of(p, a);
        if (a.packed && k.object) {
            // constant weights: the kernel's packed copy, made on this plan's first call
            // (or ahead of it: pack_constant)
            std::shared_ptr<const float> held = a.packed->get(k.key.str(), [&] { return pack_weights(k, args); });
            auto packed_fn = reinterpret_cast<pask_cpu_conv2d_packed_fn>(k.object->symbol(k.key.entry + "_packed"));
            if (held && packed_fn) {
                check_kernel_status(packed_fn(runtime_of(backend), &args, held.get()), k);
                return;
            }
        }
        auto fn = reinterpret_cast<pask_cpu_conv2d_fn>(k.entry);
        check_kernel_status(fn(runtime_of(backend), &args), k);
    }

    void pack_constant(const Kernel &k, const Problem &p, const OpArgs &a, Backend &) const override {
        if (!a.packed || !a.w || !k.object) return;
        const pask_cpu_conv2d_args args = args_of(p, a);
        a.packed->get(k.key.str(), [&] { return pack_weights(k, args); });
    }

    // The kernel's optional <entry>_reserve (kernel_abi.h): its calling
    // thread's scratch for this Problem, so the first call does not allocate
    // it or take its first-touch page faults (a 224x224 stem's padded input
    // copy: 150 faults, 0.3 ms of MobileNetV2's 7.4 ms first inference).
    void reserve(const Kernel &k, const Problem &p, Backend &) const override {
        if (!k.object) return;
        auto fn = reinterpret_cast<pask_cpu_conv2d_reserve_fn>(k.object->symbol(k.key.entry + "_reserve"));
        if (!fn) return;
        const pask_cpu_conv2d_args args = args_of(p, OpArgs{});
        (void)fn(&args);  // best effort: a failed reservation leaves the scratch to run()
    }

private:
    static pask_cpu_conv2d_args args_of(const Problem &p, const OpArgs &a) {
        pask_cpu_conv2d_args args;
        args.n = p.n; args.c = p.c; args.h = p.h; args.w = p.w;
        args.o = p.o; args.kh = p.kh; args.kw = p.kw; args.oh = p.oh; args.ow = p.ow;
        args.stride_h = p.stride[0]; args.stride_w = p.stride[1];
        args.pad_top = p.pad_pre[0]; args.pad_left = p.pad_pre[1];
        args.dil_h = p.dilation[0]; args.dil_w = p.dilation[1];
        args.groups = p.groups;
        args.layout = p.layout == PASK_LAYOUT_NHWC ? PASK_CPU_LAYOUT_NHWC : PASK_CPU_LAYOUT_NCHW;
        args.weight_layout = p.weight_layout == PASK_LAYOUT_NHWC ? PASK_CPU_LAYOUT_NHWC : PASK_CPU_LAYOUT_NCHW;
        args.x = static_cast<const float *>(a.x);
        args.weight = static_cast<const float *>(a.w);
        args.bias = static_cast<const float *>(a.bias);
        args.residual = static_cast<const float *>(a.residual);
        args.y = static_cast<float *>(a.y);
        args.ep = epilogue_of(p, a);
        return args;
    }

    // The weights packed by the kernel's optional <entry>_pack (kernel_abi.h), or
    // nullptr where it has none or packs nothing for this Problem.
    static std::shared_ptr<const float> pack_weights(const Kernel &k, const pask_cpu_conv2d_args &args) {
        auto pack = reinterpret_cast<pask_cpu_conv2d_pack_fn>(k.object->symbol(k.key.entry + "_pack"));
        if (!pack || !k.object->symbol(k.key.entry + "_packed")) return nullptr;
        const int64_t n = pack(&args, nullptr);
        if (n <= 0) return nullptr;
        const size_t bytes = (size_t(n) * sizeof(float) + 63) / 64 * 64;
        float *buf = static_cast<float *>(std::aligned_alloc(64, bytes));
        if (!buf) fail(PASK_ERROR_OUT_OF_MEMORY, "no memory for the packed weights of " + k.key.str());
        std::shared_ptr<const float> held(buf, [](const float *q) { std::free(const_cast<float *>(q)); });
        const int64_t rc = pack(&args, buf);
        if (rc < 0) check_kernel_status(int(-rc), k);
        return held;
    }
};

bool conv_f32(const Problem &p) { return p.op == PASK_OP_CONV2D && p.dtype == PASK_DTYPE_FLOAT32; }

class ConvDirect final : public ConvSolver {
public:
    using ConvSolver::ConvSolver;
    bool applicable(const Problem &p) const override { return conv_f32(p); }
    double cost_us(const Problem &p) const override { return p.flops() / kDirectFlopsPerUs + 2; }
};

class ConvIm2col final : public ConvSolver {
public:
    using ConvSolver::ConvSolver;
    bool applicable(const Problem &p) const override { return conv_f32(p); }
    double cost_us(const Problem &p) const override {
        double col = double(p.n) * p.oh * p.ow * (p.c / p.groups) * p.kh * p.kw * 4.0 * p.groups;
        // small per-group GEMMs run far below peak
        double eff = std::min(1.0, double(p.o / p.groups) / 32.0);
        return p.flops() / (kGemmFlopsPerUs * std::max(eff, 0.05)) + 2 * col / kBytesPerUs + 5;
    }
};

class ConvGemm1x1 final : public ConvSolver {
public:
    using ConvSolver::ConvSolver;
    bool applicable(const Problem &p) const override {
        return conv_f32(p) && p.kh == 1 && p.kw == 1 && p.stride[0] == 1 && p.stride[1] == 1 &&
               p.pad_pre[0] == 0 && p.pad_pre[1] == 0 && p.pad_post[0] == 0 && p.pad_post[1] == 0 &&
               p.groups == 1;
    }
    double cost_us(const Problem &p) const override { return p.flops() / kGemmFlopsPerUs + 3; }
};

class ConvDepthwise final : public ConvSolver {
public:
    using ConvSolver::ConvSolver;
    bool applicable(const Problem &p) const override {
        return conv_f32(p) && p.groups == p.c && p.groups > 1 && p.o % p.c == 0;
    }
    double cost_us(const Problem &p) const override {
        double bytes = (double(p.n) * p.c * p.h * p.w + double(p.n) * p.o * p.oh * p.ow) * 4.0;
        return p.flops() / kDepthwiseFlopsPerUs + bytes / kBytesPerUs + 2;
    }
};

class ConvFewChannels final : public ConvSolver {
public:
    using ConvSolver::ConvSolver;
    // the kernel's limit (conv_few_channels.cpp): beyond 8 input channels
    // im2col + GEMM has enough depth to run near the GEMM's rate
    bool applicable(const Problem &p) const override { return conv_f32(p) && p.groups == 1 && p.c <= 8; }
    double cost_us(const Problem &p) const override {
        // output channels run 16 to a vector and up to 64 at a time: fewer waste lanes
        double eff = std::min(1.0, double(p.o) / 64.0);
        double vec = double((p.o + 15) / 16 * 16) / double(p.o);
        // NHWC windows wider than a pixel (undilated along W): slower than
        // conv2d.indirect_gemm_nhwc's merged window rows on Zen 4 (ResNet's
        // stem 2.29 against 2.25 ms, MobileNetV2's 0.372 against 0.31)
        static const bool wide = CpuBackend::isa_supported("avx512");
        const double full = wide ? kFewChannelsFlopsPerUs : kFewChannelsNarrowFlopsPerUs;
        const double rate = p.layout == PASK_LAYOUT_NHWC && p.kw > 1 && p.dilation[1] == 1 ? full * 0.7 : full;
        return p.flops() * vec / (rate * std::max(eff, 0.25)) + 3;
    }
};

class ConvImplicitGemmNhwc final : public ConvSolver {
public:
    using ConvSolver::ConvSolver;
    bool applicable(const Problem &p) const override { return conv_f32(p) && p.layout == PASK_LAYOUT_NHWC; }
    double cost_us(const Problem &p) const override {
        // im2col_gemm's GEMM term; its A packing reads the input once per tap
        // (the col bytes, from cache) but writes no col buffer
        double col = double(p.n) * p.oh * p.ow * (p.c / p.groups) * p.kh * p.kw * 4.0 * p.groups;
        double eff = std::min(1.0, double(p.o / p.groups) / 32.0);
        double cost = p.flops() / (kGemmFlopsPerUs * std::max(eff, 0.05)) + 0.5 * col / kBytesPerUs + 4;
        // OIHW weights are reordered to OHWI on every call
        if (p.weight_layout != PASK_LAYOUT_NHWC && (p.kh > 1 || p.kw > 1))
            cost += double(p.o) * (p.c / p.groups) * p.kh * p.kw * 8.0 / kBytesPerUs;
        return cost;
    }
};

class ConvIndirectGemmNhwc final : public ConvSolver {
public:
    using ConvSolver::ConvSolver;
    bool applicable(const Problem &p) const override { return conv_f32(p) && p.layout == PASK_LAYOUT_NHWC; }
    double cost_us(const Problem &p) const override {
        // The GEMM rate without packing the input, measured on Zen 4 (1 thread,
        // constant weights) against conv2d.gemm_1x1 and conv2d.implicit_gemm_nhwc:
        // 3-11% faster on ResNet's 3x3 layers, 0-17% on 1x1 layers with 24 or
        // more output channels (K from 16 to 2048), 12% faster with 16 output
        // channels (MobileNetV2's 112x112 32->16: 0.167 ms against 0.190),
        // narrower ones wasting lanes of its 16-channel vectors. A K run is one
        // tap's Cg channels and costs each tile its 6 pointers: runs shorter
        // than 16 (a depthwise layer's 1) do not pay for them. With fewer than
        // 16 channels (groups 1, W undilated) a run is a window row's KW*C,
        // read from a padded copy: 9 and more measured at the full rate
        // (MobileNetV2's 3x3x3 stem 0.31 ms, conv2d.few_channels 0.372,
        // conv2d.implicit_gemm_nhwc 0.648).
        const double og = double(p.o / p.groups), cg = double(p.c / p.groups);
        const bool merged = p.groups == 1 && p.dilation[1] == 1 && p.kw > 1 && cg < 16;
        const double eff = std::min(1.0, og / 16.0) * std::min(1.0, merged ? cg * double(p.kw) / 8.0 : cg / 16.0);
        double cost = p.flops() / (kGemmFlopsPerUs * 1.08 * std::max(eff, 0.01)) + 4;
        // OIHW weights are reordered to OHWI on every call without packed weights
        if (p.weight_layout != PASK_LAYOUT_NHWC && (p.kh > 1 || p.kw > 1))
            cost += double(p.o) * (p.c / p.groups) * p.kh * p.kw * 8.0 / kBytesPerUs;
        return cost;
    }
};

// ---- gemm --------------------------------------------------------------------

class GemmSolver : public CpuSolver {
public:
    using CpuSolver::CpuSolver;
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &backend) const override {
        pask_cpu_gemm_args args;
        args.trans_a = p.trans_a; args.trans_b = p.trans_b;
        args.m = p.gm; args.n = p.gn; args.k = p.gk;
        args.a = static_cast<const float *>(a.x); args.lda = p.lda;
        args.b = static_cast<const float *>(a.w); args.ldb = p.ldb;
        args.bias = static_cast<const float *>(a.bias);
        args.c = static_cast<float *>(a.y); args.ldc = p.ldc;
        args.ep = epilogue_of(p, a);
        auto fn = reinterpret_cast<pask_cpu_gemm_fn>(k.entry);
        check_kernel_status(fn(runtime_of(backend), &args), k);
    }
};

bool gemm_f32(const Problem &p) { return p.op == PASK_OP_GEMM && p.dtype == PASK_DTYPE_FLOAT32; }

class GemmBlocked final : public GemmSolver {
public:
    using GemmSolver::GemmSolver;
    bool applicable(const Problem &p) const override { return gemm_f32(p); }
    double cost_us(const Problem &p) const override {
        double pack = (double(p.gm) * p.gk + double(p.gk) * p.gn) * 4.0;
        double eff = std::min(1.0, double(std::min(p.gm, p.gn)) / 48.0);
        return p.flops() / (kGemmFlopsPerUs * std::max(eff, 0.02)) + pack / kBytesPerUs + 4;
    }
};

class GemmSmall final : public GemmSolver {
public:
    using GemmSolver::GemmSolver;
    bool applicable(const Problem &p) const override { return gemm_f32(p) && std::min(p.gm, p.gn) <= 8; }
    double cost_us(const Problem &p) const override {
        double bytes = (double(p.gm) * p.gk + double(p.gk) * p.gn + double(p.gm) * p.gn) * 4.0;
        return std::max(p.flops() / (kGemmFlopsPerUs / 4), bytes / kBytesPerUs) + 1;
    }
};

// ---- pool2d ------------------------------------------------------------------

class PoolSolver : public CpuSolver {
public:
    using CpuSolver::CpuSolver;
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &backend) const override {
        pask_cpu_pool2d_args args;
        args.mode = p.pool_mode == PASK_POOL_MAX ? 0 : 1;
        args.n = p.n; args.c = p.c; args.h = p.h; args.w = p.w;
        args.oh = p.oh; args.ow = p.ow; args.kh = p.kh; args.kw = p.kw;
        args.stride_h = p.stride[0]; args.stride_w = p.stride[1];
        args.pad_top = p.pad_pre[0]; args.pad_left = p.pad_pre[1];
        args.pad_bottom = p.pad_post[0]; args.pad_right = p.pad_post[1];
        args.dil_h = p.dilation[0]; args.dil_w = p.dilation[1];
        args.count_include_pad = p.count_include_pad;
        args.divisor_override = p.divisor_override;
        args.layout = p.layout == PASK_LAYOUT_NHWC ? PASK_CPU_LAYOUT_NHWC : PASK_CPU_LAYOUT_NCHW;
        args.x = static_cast<const float *>(a.x);
        args.y = static_cast<float *>(a.y);
        auto fn = reinterpret_cast<pask_cpu_pool2d_fn>(k.entry);
        check_kernel_status(fn(runtime_of(backend), &args), k);
    }
};

bool pool_f32(const Problem &p) { return p.op == PASK_OP_POOL2D && p.dtype == PASK_DTYPE_FLOAT32; }

class PoolDirect final : public PoolSolver {
public:
    using PoolSolver::PoolSolver;
    bool applicable(const Problem &p) const override { return pool_f32(p); }
    double cost_us(const Problem &p) const override { return p.flops() / 2e3 + 1; }
};

class PoolGlobalAvg final : public PoolSolver {
public:
    using PoolSolver::PoolSolver;
    bool applicable(const Problem &p) const override {
        return pool_f32(p) && p.pool_mode == PASK_POOL_AVG && p.kh == p.h && p.kw == p.w && p.oh == 1 &&
               p.ow == 1 && p.pad_pre[0] == 0 && p.pad_pre[1] == 0 && p.pad_post[0] == 0 &&
               p.pad_post[1] == 0 && p.divisor_override == 0;
    }
    double cost_us(const Problem &p) const override { return double(p.n) * p.c * p.h * p.w / 8e3 + 1; }
};

// ---- eltwise, cat ---------------------------------------------------------------

class Eltwise final : public CpuSolver {
public:
    using CpuSolver::CpuSolver;
    bool applicable(const Problem &p) const override {
        return p.op == PASK_OP_ELTWISE && p.dtype == PASK_DTYPE_FLOAT32;
    }
    double cost_us(const Problem &p) const override { return 3.0 * 4.0 * p.flops() / kBytesPerUs + 1; }
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &backend) const override {
        pask_cpu_eltwise_args args{};
        args.n = p.n; args.c = p.c; args.h = p.h; args.w = p.w;
        args.layout = p.layout == PASK_LAYOUT_NHWC ? PASK_CPU_LAYOUT_NHWC : PASK_CPU_LAYOUT_NCHW;
        args.activation = static_cast<int>(p.activation);
        args.act_params[0] = p.act_params[0];
        args.act_params[1] = p.act_params[1];
        args.x = static_cast<const float *>(a.x);
        args.m = static_cast<const float *>(a.m);
        args.a = static_cast<const float *>(a.a);
        if (args.m) broadcast_strides(p.mdims, p.layout, args.m_stride);
        if (args.a) broadcast_strides(p.adims, p.layout, args.a_stride);
        args.y = static_cast<float *>(a.y);
        auto fn = reinterpret_cast<pask_cpu_eltwise_fn>(k.entry);
        check_kernel_status(fn(runtime_of(backend), &args), k);
    }
};

class Cat final : public CpuSolver {
public:
    using CpuSolver::CpuSolver;
    bool applicable(const Problem &p) const override { return p.op == PASK_OP_CAT && p.dtype == PASK_DTYPE_FLOAT32; }
    double cost_us(const Problem &p) const override {
        return 2.0 * 4.0 * double(p.n) * double(p.o) * double(p.h) * double(p.w) / kBytesPerUs + 1;
    }
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &backend) const override {
        pask_cpu_cat_args args{};
        args.n = p.n; args.h = p.h; args.w = p.w;
        args.layout = p.layout == PASK_LAYOUT_NHWC ? PASK_CPU_LAYOUT_NHWC : PASK_CPU_LAYOUT_NCHW;
        args.count = int64_t(p.cat_c.size());
        args.xs = reinterpret_cast<const float *const *>(a.xs);
        args.cs = p.cat_c.data();
        args.c_total = p.o;
        args.y = static_cast<float *>(a.y);
        auto fn = reinterpret_cast<pask_cpu_cat_fn>(k.entry);
        check_kernel_status(fn(runtime_of(backend), &args), k);
    }
};

const ConvDirect k_conv2d_direct(1, "conv2d.direct", PASK_OP_CONV2D, "conv_direct", "pask_conv2d_direct_f32");
const ConvIm2col k_conv2d_im2col(2, "conv2d.im2col_gemm", PASK_OP_CONV2D, "conv_im2col", "pask_conv2d_im2col_f32");
const ConvGemm1x1 k_conv2d_1x1(3, "conv2d.gemm_1x1", PASK_OP_CONV2D, "conv_1x1", "pask_conv2d_1x1_f32");
const ConvDepthwise k_conv2d_dw(4, "conv2d.depthwise", PASK_OP_CONV2D, "conv_depthwise", "pask_conv2d_depthwise_f32");
const GemmBlocked k_gemm_blocked(5, "gemm.blocked", PASK_OP_GEMM, "gemm", "pask_gemm_blocked_f32");
const GemmSmall k_gemm_small(6, "gemm.small", PASK_OP_GEMM, "gemm", "pask_gemm_small_f32");
const PoolDirect k_pool_direct(7, "pool2d.direct", PASK_OP_POOL2D, "pool_direct", "pask_pool2d_direct_f32");
const PoolGlobalAvg k_pool_global(8, "pool2d.global_avg", PASK_OP_POOL2D, "pool_global", "pask_pool2d_global_avg_f32");

const ConvFewChannels k_conv2d_few(40, "conv2d.few_channels", PASK_OP_CONV2D, "conv_few_channels",
                                   "pask_conv2d_few_channels_f32");
const ConvImplicitGemmNhwc k_conv2d_igemm_nhwc(41, "conv2d.implicit_gemm_nhwc", PASK_OP_CONV2D, "conv_igemm_nhwc",
                                               "pask_conv2d_implicit_gemm_nhwc_f32");
const ConvIndirectGemmNhwc k_conv2d_indirect_nhwc(42, "conv2d.indirect_gemm_nhwc", PASK_OP_CONV2D,
                                                  "conv_indirect_nhwc", "pask_conv2d_indirect_gemm_nhwc_f32");
const Eltwise k_eltwise(30, "eltwise.cpu", PASK_OP_ELTWISE, "eltwise", "pask_eltwise_f32");
const Cat k_cat(31, "cat.cpu", PASK_OP_CAT, "eltwise", "pask_cat_f32");

}  // namespace

const Solver &eltwise = k_eltwise;
const Solver &cat = k_cat;
const Solver &conv2d_direct = k_conv2d_direct;
const Solver &conv2d_im2col_gemm = k_conv2d_im2col;
const Solver &conv2d_gemm_1x1 = k_conv2d_1x1;
const Solver &conv2d_depthwise = k_conv2d_dw;
const Solver &conv2d_few_channels = k_conv2d_few;
const Solver &conv2d_implicit_gemm_nhwc = k_conv2d_igemm_nhwc;
const Solver &conv2d_indirect_gemm_nhwc = k_conv2d_indirect_nhwc;
const Solver &gemm_blocked = k_gemm_blocked;
const Solver &gemm_small = k_gemm_small;
const Solver &pool2d_direct = k_pool_direct;
const Solver &pool2d_global_avg = k_pool_global;

}  // namespace pask::native::cpu
