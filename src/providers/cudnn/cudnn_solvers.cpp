#include "cudnn_solvers.hpp"

#include <cstdint>

#include "../../core/tensor.hpp"
#include "cudnn_provider.hpp"

namespace pask::cudnn {

namespace {

// Rough H100 rates for cuDNN's kernels: they rank cuDNN against paskdnn's own
// kernels (src/providers/native/cuda_solvers.cpp) before either has run; the
// context then ranks by device-measured run times.
constexpr double kTensorFlopsPerUs = 350e6;  // fp16/bf16
constexpr double kTf32FlopsPerUs = 150e6;
constexpr double kBytesPerUs = 2.2e6;
constexpr double kLaunchUs = 3.0;

bool gpu_dtype(const Problem &p) { return gpu_float(p, PASK_DEVICE_CUDA); }

double elem_bytes(const Problem &p) { return double(dtype_size(p.dtype)); }

bool aligned16(const void *p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// cuDNN's graph API has no pointwise mode for hardswish / hardsigmoid: not
// applicable then, so paskdnn's own kernels run those epilogues.
bool cudnn_activation(const Problem &p) {
    return p.activation == PASK_ACTIVATION_NONE || CudnnProvider::activation_mode(p.activation) >= 0;
}

class CudnnSolver : public Solver {
public:
    // rank: which of the heuristics' configurations (of the precompiled or the
    // runtime-compiled kind) that finalise this solver's plan uses.
    constexpr CudnnSolver(int id, const char *name, pask_op_t op, bool rtc, int rank = 0)
        : Solver(id, name, op, PASK_DEVICE_CUDA), rtc_(rtc), rank_(rank) {}
    KernelKey kernel_for(const Problem &p, const std::string &target) const override {
        return CudnnProvider::key_for(p, rank_, rtc_, target);
    }
    // Plans bake alpha = 1 in, and tensors are declared 16-byte aligned.
    const char *provider() const override { return "cudnn"; }
    const char *requirements() const override { return "cuDNN plans need alpha = 1 and 16-byte aligned tensors"; }
    bool accepts(const OpArgs &a) const override {
        return a.alpha == 1.0f && aligned16(a.x) && aligned16(a.w) && aligned16(a.y) && aligned16(a.bias) &&
               aligned16(a.residual);
    }
    void run(const Kernel &k, const Problem &, const OpArgs &a, Backend &) const override {
        static_cast<const Plan *>(k.entry)->execute(a);
    }

protected:
    // Later configurations rank a little lower before they have run; the
    // device-timed runs then decide (see pask_context::candidates).
    double rank_factor() const { return 1.0 + 0.05 * rank_; }
    bool rtc_;
    int rank_;
};

class Conv final : public CudnnSolver {
public:
    using CudnnSolver::CudnnSolver;
    bool applicable(const Problem &p) const override {
        // float32 at full precision: cuDNN's float32 engines may round to TF32
        // (their numerical notes are not filtered here), paskdnn's 3xTF32 runs it
        if (!gpu_dtype(p) || p.has_beta || !cudnn_activation(p) || p.full_fp32) return false;
        if (p.layout != PASK_LAYOUT_NCHW && p.layout != PASK_LAYOUT_NHWC) return false;
        // runtime compilation only pays where there is an epilogue to fuse
        if (rtc_ && !(p.has_bias || p.has_residual || p.activation != PASK_ACTIVATION_NONE)) return false;
        return true;
    }
    double cost_us(const Problem &p) const override {
        const double bytes = (double(p.n) * p.c * p.h * p.w + double(p.n) * p.o * p.oh * p.ow +
                              double(p.o) * (p.c / p.groups) * p.kh * p.kw) *
                             elem_bytes(p);
        const double rate = p.dtype == PASK_DTYPE_FLOAT32 ? kTf32FlopsPerUs : kTensorFlopsPerUs;
        // grouped and depthwise convolutions run on CUDA cores, bound by memory;
        // NHWC depthwise ran at 0.4-0.6 TFLOPS (H100, cuDNN 9.19, MobileNetV2's
        // layers at batch 1 and 32: 2-10x paskdnn's vectorised kernel)
        const bool nhwc_depthwise = p.groups > 1 && p.groups == p.c && p.layout == PASK_LAYOUT_NHWC;
        const double compute = p.groups == 1 ? p.flops() / rate
                               : nhwc_depthwise ? p.flops() / 0.5e6
                                                : p.flops() / (rate / 8);
        // Runtime-compiled engines cost 0.3-0.9 s each to build: ranked after the
        // precompiled ones, so they are taken only where no precompiled engine
        // runs the Problem (its load then fails and is remembered).
        const double penalty = rtc_ ? 1.15 : 1.0;
        return penalty * rank_factor() * (std::max(compute, bytes / kBytesPerUs) + kLaunchUs);
    }
};

class Gemm final : public CudnnSolver {
public:
    using CudnnSolver::CudnnSolver;
    bool applicable(const Problem &p) const override {
        if (!gpu_dtype(p) || p.has_beta || !cudnn_activation(p) || p.full_fp32) return false;  // as Conv's
        // runtime compilation only pays where there is an epilogue to fuse
        return !rtc_ || p.has_bias || p.activation != PASK_ACTIVATION_NONE;
    }
    double cost_us(const Problem &p) const override {
        const double bytes = (double(p.gm) * p.gk + double(p.gk) * p.gn + double(p.gm) * p.gn) * elem_bytes(p);
        const double rate = p.dtype == PASK_DTYPE_FLOAT32 ? kTf32FlopsPerUs : kTensorFlopsPerUs;
        // ranked after the precompiled configurations, as conv2d.cudnn_rtc
        const double penalty = rtc_ ? 1.15 : 1.0;
        return penalty * rank_factor() * (std::max(p.flops() / rate, bytes / kBytesPerUs) + kLaunchUs);
    }
};

class Pool final : public CudnnSolver {
public:
    using CudnnSolver::CudnnSolver;
    bool applicable(const Problem &p) const override {
        if (!gpu_dtype(p) || (p.layout != PASK_LAYOUT_NCHW && p.layout != PASK_LAYOUT_NHWC)) return false;
        if (p.dilation[0] != 1 || p.dilation[1] != 1 || p.divisor_override != 0) return false;
        // cuDNN pads symmetrically and sizes the output with floor division
        if (p.pad_pre[0] != p.pad_post[0] || p.pad_pre[1] != p.pad_post[1]) return false;
        // and, as PyTorch, no more than half the window (any more is paskdnn's own kernels')
        if (2 * p.pad_pre[0] > p.kh || 2 * p.pad_pre[1] > p.kw) return false;
        if (p.oh != (p.h + 2 * p.pad_pre[0] - p.kh) / p.stride[0] + 1) return false;
        if (p.ow != (p.w + 2 * p.pad_pre[1] - p.kw) / p.stride[1] + 1) return false;
        // its 32-bit descriptor fields
        for (int64_t v : {p.n, p.c, p.h, p.w, p.n * p.c * p.h * p.w})
            if (v > INT32_MAX) return false;
        return true;
    }
    double cost_us(const Problem &p) const override {
        const double bytes = (double(p.n) * p.c * p.h * p.w + double(p.n) * p.c * p.oh * p.ow) * elem_bytes(p);
        return bytes / kBytesPerUs + kLaunchUs;
    }
};

const Conv kConv(15, "conv2d.cudnn", PASK_OP_CONV2D, false);
const Conv kConvRtc(16, "conv2d.cudnn_rtc", PASK_OP_CONV2D, true);
const Gemm kGemm(17, "gemm.cudnn", PASK_OP_GEMM, false);
const Pool kPool(18, "pool2d.cudnn", PASK_OP_POOL2D, false);
const Conv kConvH1(27, "conv2d.cudnn_h1", PASK_OP_CONV2D, false, 1);
const Conv kConvH2(28, "conv2d.cudnn_h2", PASK_OP_CONV2D, false, 2);
const Gemm kGemmH1(29, "gemm.cudnn_h1", PASK_OP_GEMM, false, 1);
// A matmul with a bias or activation epilogue that no precompiled engine fuses
// (issue 17: fp16 m=32 n=1000 k=1280, B transposed, bias, in a context limited
// to cuDNN: "no kernel could be loaded") runs on a runtime-compiled one.
const Gemm kGemmRtc(50, "gemm.cudnn_rtc", PASK_OP_GEMM, true);

}  // namespace

const Solver &conv2d_cudnn = kConv;
const Solver &conv2d_cudnn_rtc = kConvRtc;
const Solver &gemm_cudnn = kGemm;
const Solver &pool2d_cudnn = kPool;
const Solver &conv2d_cudnn_h1 = kConvH1;
const Solver &conv2d_cudnn_h2 = kConvH2;
const Solver &gemm_cudnn_h1 = kGemmH1;
const Solver &gemm_cudnn_rtc = kGemmRtc;

}  // namespace pask::cudnn
