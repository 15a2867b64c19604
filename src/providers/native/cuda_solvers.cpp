#include "cuda_solvers.hpp"

#include <algorithm>

#include "../../backends/cuda/cuda_backend.hpp"
#include "../../core/error.hpp"
#include "../../core/tensor.hpp"
#include "../../kernels/cuda/pask_cuda_abi.h"

namespace pask::native::cuda {

namespace {

// Rough H100 rates; they rank CUDA solvers against each other.
constexpr double kTensorFlopsPerUs = 150e6;   // fp16/bf16 mma.sync, well below peak
constexpr double kTf32FlopsPerUs = 60e6;
constexpr double kBytesPerUs = 1.5e6;         // ~1.5 TB/s achieved
constexpr double kLaunchUs = 4.0;

int dtype_code(pask_dtype_t t) {
    return t == PASK_DTYPE_FLOAT16 ? PASK_CUDA_DTYPE_F16 : t == PASK_DTYPE_BFLOAT16 ? PASK_CUDA_DTYPE_BF16 : PASK_CUDA_DTYPE_F32;
}

bool cuda_dtype(const Problem &p) { return gpu_float(p, PASK_DEVICE_CUDA); }

double elem_bytes(const Problem &p) { return double(dtype_size(p.dtype)); }

double mma_rate(const Problem &p) { return p.dtype == PASK_DTYPE_FLOAT32 ? kTf32FlopsPerUs : kTensorFlopsPerUs; }

const CudaBackend &cuda_of(Backend &b) { return static_cast<const CudaBackend &>(b); }

void launch(const Kernel &k, Backend &b, const unsigned grid[3], const unsigned block[3], unsigned smem, void *params) {
    cuda_of(b).launch(k.entry, grid, block, smem, params);
}

// Launches an mma kernel (conv igemm or gemm) with split-K where its launch
// helper chose it: the slices' float32 partial sums go to stream-ordered
// scratch memory and the object's reduce entry applies the epilogue. Without
// room for the scratch (or without the reduce entry) it runs unsplit.
// entry: the object's function to launch (k.entry when null).
template <class Params, class Geometry, class PartialBytes>
void launch_split_k(const Kernel &k, Backend &b, Params &q, int elem_bytes, pask_i64 outputs, const char *reduce,
                    Geometry geometry, PartialBytes partial_bytes, void *entry = nullptr) {
    const CudaBackend &cb = cuda_of(b);
    unsigned grid[3], block[3], smem = 0;
    geometry(&q, elem_bytes, cb.sm_count(), grid, block, &smem);
    void *reduce_fn = nullptr;
    void *ws = nullptr;
    if (q.splits > 1) {
        reduce_fn = k.object ? k.object->symbol(reduce) : nullptr;
        if (reduce_fn) {
            try {
                ws = cb.alloc_async(static_cast<size_t>(partial_bytes(&q)));
            } catch (const Error &e) {
                if (e.status() != PASK_ERROR_OUT_OF_MEMORY) throw;
            }
        }
        if (!ws) geometry(&q, elem_bytes, 0, grid, block, &smem);  // unsplit
    }
    q.partial = static_cast<float *>(ws);
    try {
        cb.launch(entry ? entry : k.entry, grid, block, smem, &q);
        if (ws) {
            unsigned rgrid[3], rblock[3], rsmem = 0;
            pask_cuda_splitk_reduce_launch(outputs, rgrid, rblock, &rsmem);
            cb.launch(reduce_fn, rgrid, rblock, rsmem, &q);
        }
    } catch (...) {
        if (ws) cb.free_async(ws);
        throw;
    }
    if (ws) cb.free_async(ws);
}

class CudaSolver : public Solver {
public:
    constexpr CudaSolver(int id, const char *name, pask_op_t op, const char *object, const char *entry)
        : Solver(id, name, op, PASK_DEVICE_CUDA), object_(object), entry_(entry) {}
    KernelKey kernel_for(const Problem &p, const std::string &target) const override {
        return KernelKey{"native", "cuda", object_, entry_, target, constants(p)};
    }

protected:
    virtual std::string constants(const Problem &p) const { return "dtype=" + std::to_string(dtype_code(p.dtype)); }

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

class ConvIgemm : public CudaSolver {
public:
    using CudaSolver::CudaSolver;
    bool applicable(const Problem &p) const override { return p.op == PASK_OP_CONV2D && cuda_dtype(p); }
    double cost_us(const Problem &p) const override {
        double bytes = (double(p.n) * p.c * p.h * p.w + double(p.n) * p.o * p.oh * p.ow +
                        double(p.o) * (p.c / p.groups) * p.kh * p.kw) * elem_bytes(p);
        double layout_penalty = p.layout == PASK_LAYOUT_NHWC ? 1.0 : 2.0;
        // Thin groups (depthwise, few channels per group) leave the tensor-core
        // tiles mostly empty: the work done is the tile's, not the problem's.
        const double cg = double(p.c / p.groups), og = double(p.o / p.groups);
        const double fill = std::min(1.0, cg * p.kh * p.kw / 32.0) * std::min(1.0, og / 64.0);
        return std::max(p.flops() / mma_rate(p) * layout_penalty / fill, bytes / kBytesPerUs) + kLaunchUs;
    }
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &b) const override {
        pask_cuda_conv2d_params q = conv_params(p, a);
        const int es = static_cast<int>(dtype_size(p.dtype));
        const CudaBackend &cb = cuda_of(b);
        // Large NCHW layers: x to NHWC and the weight to OHWI in scratch first, so
        // that the kernel reads 16-byte vectors instead of gathering elements; y
        // and the residual stay NCHW. Without room for the scratch: as they are.
        void *tr = k.object && pask_cuda_conv2d_nchw_transposed_ok(&q, es) ? k.object->symbol("pask_transpose") : nullptr;
        void *xt = nullptr, *wt = nullptr;
        if (tr) {
            try {
                xt = cb.alloc_async(static_cast<size_t>(q.n * q.c * q.h * q.w * es));
                wt = cb.alloc_async(static_cast<size_t>(q.o * (q.c / q.groups) * q.kh * q.kw * es));
            } catch (const Error &e) {
                if (xt) cb.free_async(xt);
                if (e.status() != PASK_ERROR_OUT_OF_MEMORY) throw;
                xt = wt = nullptr;
            }
        }
        auto release = [&] {
            if (xt) {
                cb.free_async(xt);
                cb.free_async(wt);
            }
        };
        try {
            if (xt) {
                unsigned grid[3], block[3], smem = 0;
                pask_cuda_transpose_params t{q.n, q.c, q.h * q.w, q.x, xt};  // [n][c][h*w] -> [n][h*w][c]
                pask_cuda_transpose_launch(&t, es, grid, block, &smem);
                cb.launch(tr, grid, block, smem, &t);
                t = pask_cuda_transpose_params{q.o, q.c / q.groups, q.kh * q.kw, q.weight, wt};  // OIHW -> OHWI
                pask_cuda_transpose_launch(&t, es, grid, block, &smem);
                cb.launch(tr, grid, block, smem, &t);
                q.x = xt;
                q.weight = wt;
                q.layout = q.weight_layout = PASK_CUDA_LAYOUT_NHWC;
                q.y_nchw = 1;
            }
            launch_split_k(k, b, q, es, q.n * q.oh * q.ow * q.o, "pask_conv2d_igemm_splitk_reduce",
                           pask_cuda_conv2d_igemm_launch, pask_cuda_conv2d_igemm_partial_bytes);
        } catch (...) {
            release();
            throw;
        }
        release();
    }
};

// The same implicit GEMM with the window geometry baked in at compile time
// (NVRTC, on demand): uniform stride, padding and dilation.
class ConvIgemmFixed final : public ConvIgemm {
public:
    using ConvIgemm::ConvIgemm;
    bool applicable(const Problem &p) const override {
        return ConvIgemm::applicable(p) && p.stride[0] == p.stride[1] && p.dilation[0] == p.dilation[1] &&
               p.pad_pre[0] == p.pad_pre[1] && p.pad_post[0] == p.pad_pre[0] && p.pad_post[1] == p.pad_pre[0] &&
               p.kh <= 7 && p.kw <= 7 && p.stride[0] <= 4 && p.dilation[0] <= 4 && p.pad_pre[0] <= 3;
    }
    double cost_us(const Problem &p) const override { return ConvIgemm::cost_us(p) * 0.9; }

protected:
    std::string constants(const Problem &p) const override {
        return "dtype=" + std::to_string(dtype_code(p.dtype)) + ",kh=" + std::to_string(p.kh) + ",kw=" +
               std::to_string(p.kw) + ",stride=" + std::to_string(p.stride[0]) + ",pad=" + std::to_string(p.pad_pre[0]) +
               ",dil=" + std::to_string(p.dilation[0]);
    }
};

class ConvDepthwise final : public CudaSolver {
public:
    using CudaSolver::CudaSolver;
    bool applicable(const Problem &p) const override {
        return p.op == PASK_OP_CONV2D && cuda_dtype(p) && p.groups == p.c && p.groups > 1 && p.o % p.c == 0;
    }
    double cost_us(const Problem &p) const override {
        double bytes = (double(p.n) * p.c * p.h * p.w + double(p.n) * p.o * p.oh * p.ow) * elem_bytes(p);
        // the vectorised NHWC entries are bound by memory (H100, MobileNetV2's
        // layers: 0.6-1.3x the times of PyTorch's channels-last convolutions);
        // the scalar one is not
        const bool vec = p.layout == PASK_LAYOUT_NHWC && p.o == p.c && p.c % (16 / dtype_size(p.dtype)) == 0;
        return bytes / kBytesPerUs + p.flops() / (vec ? 200e6 : 20e6) + kLaunchUs;
    }
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &b) const override {
        pask_cuda_conv2d_params q = conv_params(p, a);
        unsigned grid[3], block[3], smem = 0;
        const int es = static_cast<int>(dtype_size(p.dtype));
        if (k.object && pask_cuda_depthwise_vec_ok(&q, es)) {
            // NHWC, a channel per group, aligned: 16-byte vectors of channels
            const int pixels = pask_cuda_depthwise_vec_pixels(&q, es);
            if (void *fn = k.object->symbol(pixels == 4 ? "pask_conv2d_depthwise_nhwc_vec4"
                                                        : "pask_conv2d_depthwise_nhwc_vec")) {
                pask_cuda_conv2d_depthwise_vec_launch(&q, es, pixels, grid, block, &smem);
                cuda_of(b).launch(fn, grid, block, smem, &q);
                return;
            }
        }
        pask_cuda_conv2d_depthwise_launch(&q, grid, block, &smem);
        launch(k, b, grid, block, smem, &q);
    }
};

class GemmTc final : public CudaSolver {
public:
    using CudaSolver::CudaSolver;
    bool applicable(const Problem &p) const override { return p.op == PASK_OP_GEMM && cuda_dtype(p); }
    double cost_us(const Problem &p) const override {
        double bytes = (double(p.gm) * p.gk + double(p.gk) * p.gn + double(p.gm) * p.gn) * elem_bytes(p);
        return std::max(p.flops() / mma_rate(p), bytes / kBytesPerUs) + kLaunchUs;
    }
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &b) const override {
        pask_cuda_gemm_params q{};
        q.m = p.gm; q.n = p.gn; q.k = p.gk;
        q.lda = p.lda; q.ldb = p.ldb; q.ldc = p.ldc;
        q.trans_a = p.trans_a; q.trans_b = p.trans_b;
        q.a = a.x; q.b = a.w; q.bias = a.bias; q.c = a.y;
        q.alpha = a.alpha; q.beta = a.beta; q.activation = static_cast<int>(p.activation);
        const int es = static_cast<int>(dtype_size(p.dtype));
        if (k.object && pask_cuda_gemm_small_m_ok(&q, es)) {
            // a few rows (batch-1 classifiers): bound by reading B once, on the CUDA cores
            if (void *fn = k.object->symbol(q.trans_b ? "pask_gemm_small_m_bt" : "pask_gemm_small_m")) {
                launch_split_k(k, b, q, es, q.m * q.n, "pask_gemm_splitk_reduce", pask_cuda_gemm_small_m_launch,
                               pask_cuda_gemm_partial_bytes, fn);
                return;
            }
        }
        launch_split_k(k, b, q, es, q.m * q.n, "pask_gemm_splitk_reduce", pask_cuda_gemm_launch,
                       pask_cuda_gemm_partial_bytes);
    }
};

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

class PoolDirect final : public CudaSolver {
public:
    using CudaSolver::CudaSolver;
    bool applicable(const Problem &p) const override { return p.op == PASK_OP_POOL2D && cuda_dtype(p); }
    double cost_us(const Problem &p) const override {
        double bytes = (double(p.n) * p.c * p.h * p.w + double(p.n) * p.c * p.oh * p.ow) * elem_bytes(p);
        return bytes / kBytesPerUs + p.flops() / 50e6 + kLaunchUs;
    }
    void run(const Kernel &k, const Problem &p, const OpArgs &a, Backend &b) const override {
        pask_cuda_pool2d_params q = pool_params(p, a);
        unsigned grid[3], block[3], smem = 0;
        pask_cuda_pool2d_launch(&q, grid, block, &smem);
        launch(k, b, grid, block, smem, &q);
    }
};

class PoolGlobalAvg final : public CudaSolver {
public:
    using CudaSolver::CudaSolver;
    bool applicable(const Problem &p) const override {
        return p.op == PASK_OP_POOL2D && cuda_dtype(p) && p.pool_mode == PASK_POOL_AVG && p.kh == p.h &&
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

const ConvIgemm k_igemm(9, "conv2d.cuda_igemm", PASK_OP_CONV2D, "conv_igemm", "pask_conv2d_igemm");
const ConvIgemmFixed k_igemm_fixed(10, "conv2d.cuda_igemm_fixed", PASK_OP_CONV2D, "conv_igemm", "pask_conv2d_igemm");
const ConvDepthwise k_dw(11, "conv2d.cuda_depthwise", PASK_OP_CONV2D, "conv_depthwise", "pask_conv2d_depthwise");
const GemmTc k_gemm(12, "gemm.cuda_tc", PASK_OP_GEMM, "gemm", "pask_gemm");
const PoolDirect k_pool(13, "pool2d.cuda_direct", PASK_OP_POOL2D, "pool", "pask_pool2d");
const PoolGlobalAvg k_gpool(14, "pool2d.cuda_global_avg", PASK_OP_POOL2D, "pool", "pask_pool2d_global_avg");

}  // namespace

const Solver &conv2d_igemm = k_igemm;
const Solver &conv2d_igemm_fixed = k_igemm_fixed;
const Solver &conv2d_depthwise = k_dw;
const Solver &gemm_tc = k_gemm;
const Solver &pool2d_direct = k_pool;
const Solver &pool2d_global_avg = k_gpool;

}  // namespace pask::native::cuda
