#include "miopen_solvers.hpp"

#include <algorithm>
#include <climits>
#include <cstdint>

#include "../../core/tensor.hpp"
#include "miopen_provider.hpp"

namespace pask::miopen {

namespace {

// Rough rates for MIOpen's kernels on a recent Instinct GPU: they only rank
// MIOpen against paskdnn's portable HIP kernels (hip_solvers.cpp) before
// either has run; the context then ranks by device-measured run times. Not
// measured on AMD hardware.
constexpr double kHalfFlopsPerUs = 200e6;
constexpr double kFloatFlopsPerUs = 60e6;
constexpr double kBytesPerUs = 1.5e6;
constexpr double kLaunchUs = 6.0;

bool hip_dtype(const Problem &p) {
    return p.device == PASK_DEVICE_HIP && (p.dtype == PASK_DTYPE_FLOAT32 || p.dtype == PASK_DTYPE_FLOAT16);
}

double elem_bytes(const Problem &p) { return double(dtype_size(p.dtype)); }

bool fits_int(std::initializer_list<int64_t> vs) {
    for (int64_t v : vs)
        if (v > INT32_MAX) return false;
    return true;
}

class MiopenSolver : public Solver {
public:
    constexpr MiopenSolver(int id, const char *name, pask_op_t op, int rank)
        : Solver(id, name, op, PASK_DEVICE_HIP), rank_(rank) {}
    const char *provider() const override { return "miopen"; }
    KernelKey kernel_for(const Problem &p, const std::string &target) const override {
        return MiopenProvider::key_for(p, rank_, target);
    }
    // Immediate mode has no alpha / beta: the plan computes alpha = 1, beta = 0.
    bool accepts(const OpArgs &a) const override { return a.alpha == 1.0f && a.beta == 0.0f; }
    void run(const Kernel &k, const Problem &, const OpArgs &a, Backend &) const override {
        static_cast<const Plan *>(k.entry)->execute(a);
    }

protected:
    int rank_;
};

class Conv final : public MiopenSolver {
public:
    using MiopenSolver::MiopenSolver;
    bool applicable(const Problem &p) const override {
        if (!hip_dtype(p) || p.has_beta || !miopen_has_activation(p.activation)) return false;
        // NCHW activations with OIHW weights (the descriptors paskdnn sets up)
        if (p.layout != PASK_LAYOUT_NCHW || p.weight_layout != PASK_LAYOUT_NCHW) return false;
        // MIOpen pads symmetrically
        if (p.pad_pre[0] != p.pad_post[0] || p.pad_pre[1] != p.pad_post[1]) return false;
        return fits_int({p.n * p.c * p.h * p.w, p.n * p.o * p.oh * p.ow, p.o * (p.c / p.groups) * p.kh * p.kw});
    }
    double cost_us(const Problem &p) const override {
        const double bytes = (double(p.n) * p.c * p.h * p.w + double(p.n) * p.o * p.oh * p.ow +
                              double(p.o) * (p.c / p.groups) * p.kh * p.kw) *
                             elem_bytes(p);
        const double rate = p.dtype == PASK_DTYPE_FLOAT32 ? kFloatFlopsPerUs : kHalfFlopsPerUs;
        const double compute = p.groups == 1 ? p.flops() / rate : p.flops() / (rate / 8);
        // each epilogue stage is one more pass over y
        const double passes = (p.has_bias ? 1 : 0) + (p.has_residual ? 1 : 0) + (p.activation ? 1 : 0);
        const double ybytes = double(p.n) * p.o * p.oh * p.ow * elem_bytes(p);
        const double second = rank_ == 0 ? 1.0 : 1.1;  // MIOpen ranked it behind the first
        return second * (std::max(compute, bytes / kBytesPerUs) + kLaunchUs) +
               passes * (2 * ybytes / kBytesPerUs + kLaunchUs);
    }
};

class Pool final : public MiopenSolver {
public:
    using MiopenSolver::MiopenSolver;
    bool applicable(const Problem &p) const override {
        if (!hip_dtype(p) || p.layout != PASK_LAYOUT_NCHW) return false;
        if (p.dilation[0] != 1 || p.dilation[1] != 1 || p.divisor_override != 0) return false;
        // MIOpen pads symmetrically and sizes the output with floor division
        if (p.pad_pre[0] != p.pad_post[0] || p.pad_pre[1] != p.pad_post[1]) return false;
        // and, as PyTorch, no more than half the window (any more is paskdnn's own kernels')
        if (2 * p.pad_pre[0] > p.kh || 2 * p.pad_pre[1] > p.kw) return false;
        if (p.oh != (p.h + 2 * p.pad_pre[0] - p.kh) / p.stride[0] + 1) return false;
        if (p.ow != (p.w + 2 * p.pad_pre[1] - p.kw) / p.stride[1] + 1) return false;
        return fits_int({p.n * p.c * p.h * p.w});
    }
    double cost_us(const Problem &p) const override {
        const double bytes = (double(p.n) * p.c * p.h * p.w + double(p.n) * p.c * p.oh * p.ow) * elem_bytes(p);
        return bytes / kBytesPerUs + kLaunchUs;
    }
};

const Conv kConv(24, "conv2d.miopen", PASK_OP_CONV2D, 0);
const Conv kConvAlt(25, "conv2d.miopen_alt", PASK_OP_CONV2D, 1);
const Pool kPool(26, "pool2d.miopen", PASK_OP_POOL2D, 0);

}  // namespace

const Solver &conv2d_miopen = kConv;
const Solver &conv2d_miopen_alt = kConvAlt;
const Solver &pool2d_miopen = kPool;

}  // namespace pask::miopen
