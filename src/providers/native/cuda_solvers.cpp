#include "cuda_solvers.hpp"

#include <algorithm>

#include "../../backends/cuda/cuda_backend.hpp"
#include "../../core/error.hpp"
#include "../../core/tensor.hpp"
#include "../../kernels/cuda/pask_cuda_abi.h"
#include "gpu_solvers.hpp"

namespace pask::native::cuda {

namespace {

// Rough H100 rates; they rank CUDA solvers against each other.
constexpr double kTensorFlopsPerUs = 150e6;   // fp16/bf16 mma.sync, well below peak
constexpr double kTf32FlopsPerUs = 60e6;

// Launches an mma kernel (conv igemm or gemm) with split-K where its launch
// helper chose it: the slices' float32 partial sums go to stream-ordered
// scratch memory and the object's reduce entry applies the epilogue. Without
// room for the scratch (or without the reduce entry) it runs unsplit.
// entry: the object's function to launch (k.entry when null).
template <class Params, class Geometry, class PartialBytes>
void launch_split_k(const Kernel &k, const CudaBackend &b, Params &q, int elem_bytes, pask_i64 outputs, const char *reduce,
                    Geometry geometry, PartialBytes partial_bytes, void *entry = nullptr) {
    unsigned grid[3], block[3], smem = 0;
    geometry(&q, elem_bytes, b.sm_count(), grid, block, &smem);
    void *reduce_fn = nullptr;
    void *ws = nullptr;
    if (q.splits > 1) {
        reduce_fn = k.object ? k.object->symbol(reduce) : nullptr;
        if (reduce_fn) {
            try {
                ws = b.alloc_async(static_cast<size_t>(partial_bytes(&q)));
            } catch (const Error &e) {
                if (e.status() != PASK_ERROR_OUT_OF_MEMORY) throw;
            }
        }
        if (!ws) geometry(&q, elem_bytes, 0, grid, block, &smem);  // unsplit
    }
    q.partial = static_cast<float *>(ws);
    try {
        b.launch(entry ? entry : k.entry, grid, block, smem, &q);
        if (ws) {
            unsigned rgrid[3], rblock[3], rsmem = 0;
            pask_cuda_splitk_reduce_launch(outputs, rgrid, rblock, &rsmem);
            b.launch(reduce_fn, rgrid, rblock, rsmem, &q);
        }
    } catch (...) {
        if (ws) b.free_async(ws);
        throw;
    }
    if (ws) b.free_async(ws);
}

// The CUDA trait of the GPU solver family (gpu_solvers.hpp).
struct Cuda {
    using Backend = CudaBackend;
    static constexpr pask_device_type_t device = PASK_DEVICE_CUDA;
    static constexpr const char *name = "cuda";
    static constexpr double bytes_per_us = 1.5e6;  // ~1.5 TB/s achieved
    static constexpr double launch_us = 4.0;
    static constexpr double pool_flops_per_us = 50e6;
    static double mma_flops_per_us(const Problem &p) {
        // float32 at full precision: three TF32 mmas per product
        return p.dtype == PASK_DTYPE_FLOAT32 ? (p.full_fp32 ? kTf32FlopsPerUs / 3 : kTf32FlopsPerUs) : kTensorFlopsPerUs;
    }
    static double igemm_layout_penalty(const Problem &p) { return p.layout == PASK_LAYOUT_NHWC ? 1.0 : 2.0; }
    // the vectorised NHWC entries are bound by memory (H100, MobileNetV2's
    // layers: 0.6-1.3x the times of PyTorch's channels-last convolutions);
    // the scalar one is not
    static double depthwise_flops_per_us(const Problem &p) {
        const bool vec = p.layout == PASK_LAYOUT_NHWC && p.o == p.c && p.c % (16 / dtype_size(p.dtype)) == 0;
        return vec ? 200e6 : 20e6;
    }

    static void run_igemm(const Kernel &k, const Problem &p, pask_cuda_conv2d_params &q, const CudaBackend &b) {
        const int es = static_cast<int>(dtype_size(p.dtype));
        // Large NCHW layers: x to NHWC and the weight to OHWI in scratch first, so
        // that the kernel reads 16-byte vectors instead of gathering elements; y
        // and the residual stay NCHW. Without room for the scratch: as they are.
        void *tr = k.object && pask_cuda_conv2d_nchw_transposed_ok(&q, es) ? k.object->symbol("pask_transpose") : nullptr;
        void *xt = nullptr, *wt = nullptr;
        if (tr) {
            try {
                xt = b.alloc_async(static_cast<size_t>(q.n * q.c * q.h * q.w * es));
                wt = b.alloc_async(static_cast<size_t>(q.o * (q.c / q.groups) * q.kh * q.kw * es));
            } catch (const Error &e) {
                if (xt) b.free_async(xt);
                if (e.status() != PASK_ERROR_OUT_OF_MEMORY) throw;
                xt = wt = nullptr;
            }
        }
        auto release = [&] {
            if (xt) {
                b.free_async(xt);
                b.free_async(wt);
            }
        };
        try {
            if (xt) {
                unsigned grid[3], block[3], smem = 0;
                pask_cuda_transpose_params t{q.n, q.c, q.h * q.w, q.x, xt};  // [n][c][h*w] -> [n][h*w][c]
                pask_cuda_transpose_launch(&t, es, grid, block, &smem);
                b.launch(tr, grid, block, smem, &t);
                t = pask_cuda_transpose_params{q.o, q.c / q.groups, q.kh * q.kw, q.weight, wt};  // OIHW -> OHWI
                pask_cuda_transpose_launch(&t, es, grid, block, &smem);
                b.launch(tr, grid, block, smem, &t);
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

    static bool run_depthwise_vec(const Kernel &k, pask_cuda_conv2d_params &q, int es, const CudaBackend &b) {
        if (!k.object || !pask_cuda_depthwise_vec_ok(&q, es)) return false;
        // NHWC, a channel per group, aligned: 16-byte vectors of channels
        const int pixels = pask_cuda_depthwise_vec_pixels(&q, es);
        void *fn = k.object->symbol(pask_cuda_depthwise_vec_entry(&q, es, pixels));
        if (!fn) return false;
        unsigned grid[3], block[3], smem = 0;
        pask_cuda_conv2d_depthwise_vec_launch(&q, es, pixels, grid, block, &smem);
        b.launch(fn, grid, block, smem, &q);
        return true;
    }

    static void run_gemm(const Kernel &k, pask_cuda_gemm_params &q, int es, const CudaBackend &b) {
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

// The same implicit GEMM with the window geometry baked in at compile time
// (NVRTC, on demand): uniform stride, padding and dilation.
class ConvIgemmFixed final : public gpu::ConvIgemm<Cuda> {
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
        return mma_constants(p, "dtype=" + std::to_string(gpu::dtype_code(p.dtype)) + ",kh=" + std::to_string(p.kh) +
                                    ",kw=" + std::to_string(p.kw) + ",stride=" + std::to_string(p.stride[0]) +
                                    ",pad=" + std::to_string(p.pad_pre[0]) + ",dil=" + std::to_string(p.dilation[0]));
    }
};

const gpu::ConvIgemm<Cuda> k_igemm(9, "conv2d.cuda_igemm", PASK_OP_CONV2D, "conv_igemm", "pask_conv2d_igemm");
const ConvIgemmFixed k_igemm_fixed(10, "conv2d.cuda_igemm_fixed", PASK_OP_CONV2D, "conv_igemm", "pask_conv2d_igemm");
const gpu::ConvDepthwise<Cuda> k_dw(11, "conv2d.cuda_depthwise", PASK_OP_CONV2D, "conv_depthwise",
                                    "pask_conv2d_depthwise");
const gpu::Gemm<Cuda> k_gemm(12, "gemm.cuda_tc", PASK_OP_GEMM, "gemm", "pask_gemm");
const gpu::PoolDirect<Cuda> k_pool(13, "pool2d.cuda_direct", PASK_OP_POOL2D, "pool", "pask_pool2d");
const gpu::PoolGlobalAvg<Cuda> k_gpool(14, "pool2d.cuda_global_avg", PASK_OP_POOL2D, "pool", "pask_pool2d_global_avg");
const gpu::Eltwise<Cuda> k_eltwise(32, "eltwise.cuda", PASK_OP_ELTWISE, "eltwise", "pask_eltwise");
const gpu::Cat<Cuda> k_cat(33, "cat.cuda", PASK_OP_CAT, "eltwise", "pask_cat");

}  // namespace
const Solver &conv2d_igemm = k_igemm;
const Solver &conv2d_igemm_fixed = k_igemm_fixed;
const Solver &conv2d_depthwise = k_dw;
const Solver &gemm_tc = k_gemm;
const Solver &pool2d_direct = k_pool;
const Solver &pool2d_global_avg = k_gpool;
const Solver &eltwise = k_eltwise;
const Solver &cat = k_cat;

}  // namespace pask::native::cuda
