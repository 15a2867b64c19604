// The set-up outside the core: builds each device type's Backend and
// Providers, and the solver table, and registers them with the core
// (core/device_setup.hpp) when the library loads. The core includes none of
// the files included here.
#include "../core/device_setup.hpp"
#include "../core/error.hpp"
#include "../backends/cpu/cpu_backend.hpp"
#include "../backends/cuda/cuda_api.hpp"
#include "../backends/cuda/cuda_backend.hpp"
#include "../backends/hip/hip_api.hpp"
#include "../backends/hip/hip_backend.hpp"
#include "../providers/cudnn/cudnn_provider.hpp"
#include "../providers/cudnn/cudnn_solvers.hpp"
#include "../providers/miopen/miopen_provider.hpp"
#include "../providers/miopen/miopen_solvers.hpp"
#include "../providers/native/cpu_solvers.hpp"
#include "../providers/native/cuda_solvers.hpp"
#include "../providers/native/hip_solvers.hpp"

namespace pask {
namespace {

// The solver table. Ids (in each solver's definition) are append-only and
// never reused: recorded hints, persisted load costs and traces refer to them;
// the core checks them unique. To retire a solver, delete its row and leave a
// comment with its name ("conv2d.x removed: ..."). Names and what each does:
const std::vector<const Solver *> &solver_table() {
    static const std::vector<const Solver *> table = {
        &native::cpu::conv2d_direct,       // conv2d.direct       any conv, reference-grade loops
        &native::cpu::conv2d_im2col_gemm,  // conv2d.im2col_gemm  any conv, im2col + blocked GEMM
        &native::cpu::conv2d_gemm_1x1,     // conv2d.gemm_1x1     1x1, stride 1, no padding: one GEMM
        &native::cpu::conv2d_depthwise,    // conv2d.depthwise    groups == C, O multiple of C
        &native::cpu::gemm_blocked,        // gemm.blocked        packed, register-blocked GEMM
        &native::cpu::gemm_small,          // gemm.small          unpacked, for M or N <= 8 (GEMV)
        &native::cpu::pool2d_direct,       // pool2d.direct       max/avg, every parameter
        &native::cpu::pool2d_global_avg,   // pool2d.global_avg   average over the whole plane
        &native::cuda::conv2d_igemm,       // conv2d.cuda_igemm        any conv, implicit GEMM on tensor cores
        &native::cuda::conv2d_igemm_fixed, // conv2d.cuda_igemm_fixed  same, window geometry compiled in (NVRTC)
        &native::cuda::conv2d_depthwise,   // conv2d.cuda_depthwise    groups == C
        &native::cuda::gemm_tc,            // gemm.cuda_tc             tensor-core GEMM
        &native::cuda::pool2d_direct,      // pool2d.cuda_direct       max/avg, every parameter
        &native::cuda::pool2d_global_avg,  // pool2d.cuda_global_avg   average over the whole plane
        &cudnn::conv2d_cudnn,              // conv2d.cudnn             cuDNN graph API, precompiled engines
        &cudnn::conv2d_cudnn_rtc,          // conv2d.cudnn_rtc         cuDNN runtime-compiled fusion (conv + epilogue)
        &cudnn::gemm_cudnn,                // gemm.cudnn               cuDNN matmul graph
        &cudnn::pool2d_cudnn,              // pool2d.cudnn             cudnnPoolingForward
        &native::hip::conv2d_igemm,        // conv2d.hip_igemm         any conv, implicit GEMM (portable FMA path, hiprtc)
        &native::hip::conv2d_depthwise,    // conv2d.hip_depthwise     groups == C
        &native::hip::gemm,                // gemm.hip                 tiled GEMM (portable FMA path)
        &native::hip::pool2d_direct,       // pool2d.hip_direct        max/avg, every parameter
        &native::hip::pool2d_global_avg,   // pool2d.hip_global_avg    average over the whole plane
        &miopen::conv2d_miopen,            // conv2d.miopen            MIOpen immediate mode, first-ranked solution
        &miopen::conv2d_miopen_alt,        // conv2d.miopen_alt        MIOpen immediate mode, second-ranked solution
        &miopen::pool2d_miopen,            // pool2d.miopen            miopenPoolingForward
        &cudnn::conv2d_cudnn_h1,           // conv2d.cudnn_h1          the heuristics' 2nd precompiled configuration
        &cudnn::conv2d_cudnn_h2,           // conv2d.cudnn_h2          ... 3rd
        &cudnn::gemm_cudnn_h1,             // gemm.cudnn_h1            matmul, 2nd configuration
    };
    return table;
}

DeviceSetup cpu_setup() {
    DeviceSetup d;
    d.type = PASK_DEVICE_CPU;
    d.device_count = [] { return 1; };
    d.make_backend = [](int, const Options &o) -> std::unique_ptr<Backend> {
        return std::make_unique<CpuBackend>(o.num_threads, o.cpu_isa);
    };
    d.make_providers = [](Backend &, const Options &, Trace *) { return std::vector<std::unique_ptr<Provider>>(); };
    return d;
}

DeviceSetup cuda_setup() {
    DeviceSetup d;
    d.type = PASK_DEVICE_CUDA;
    d.device_count = [] {
        try {
            const auto &drv = cuda::Driver::get();
            int n = 0;
            return drv.cuDeviceGetCount(&n) == 0 ? n : 0;
        } catch (const Error &) {
            return 0;
        }
    };
    d.make_backend = [](int index, const Options &o) -> std::unique_ptr<Backend> {
        return std::make_unique<CudaBackend>(index, o.nvrtc_library);
    };
    d.make_providers = [](Backend &b, const Options &o, Trace *trace) {
        std::vector<std::unique_ptr<Provider>> out;
        if (o.use_cudnn && o.wants_provider("cudnn"))
            out.push_back(std::make_unique<cudnn::CudnnProvider>(static_cast<CudaBackend &>(b), o.cudnn_library, trace));
        return out;
    };
    return d;
}

DeviceSetup hip_setup() {
    DeviceSetup d;
    d.type = PASK_DEVICE_HIP;
    d.device_count = [] {
        try {
            const auto &rt = hip::Runtime::get("");
            int n = 0;
            return rt.hipGetDeviceCount(&n) == 0 ? n : 0;
        } catch (const Error &) {
            return 0;
        }
    };
    // Empty paths mean $PASKDNN_HIP / $PASKDNN_HIPRTC / $PASKDNN_MIOPEN, else the usual sonames.
    d.make_backend = [](int index, const Options &o) -> std::unique_ptr<Backend> {
        return std::make_unique<HipBackend>(index, o.hip_library, o.hiprtc_library);
    };
    d.make_providers = [](Backend &b, const Options &o, Trace *trace) {
        std::vector<std::unique_ptr<Provider>> out;
        if (o.use_miopen && o.wants_provider("miopen"))
            out.push_back(
                std::make_unique<miopen::MiopenProvider>(static_cast<HipBackend &>(b), o.miopen_library, trace));
        return out;
    };
    return d;
}

// Runs when libpaskdnn loads, before any C API call can.
const bool registered = [] {
    register_solvers(solver_table());
    register_device_setup(cpu_setup());
    register_device_setup(cuda_setup());
    register_device_setup(hip_setup());
    return true;
}();

}  // namespace
}  // namespace pask
