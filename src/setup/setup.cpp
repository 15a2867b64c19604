// The set-up outside the core: builds each device type's Backend and
// Providers, and the solver table, and registers them with the core
// (core/device_setup.hpp) when the library loads. The core includes none of
// the files included here.
#include "../core/device_setup.hpp"
#include "../core/error.hpp"
#include "../core/json.hpp"
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
        &native::cpu::eltwise,             // eltwise.cpu         y = act(x * m + a), m and a broadcast
        &native::cpu::cat,                 // cat.cpu             channels joined
        &native::cuda::eltwise,            // eltwise.cuda             y = act(x * m + a), m and a broadcast
        &native::cuda::cat,                // cat.cuda                 channels joined, 24 inputs a launch
        &native::hip::eltwise,             // eltwise.hip              as eltwise.cuda (same source)
        &native::hip::cat,                 // cat.hip                  as cat.cuda
        &cudnn::gemm_cudnn_rtc,            // gemm.cudnn_rtc           cuDNN runtime-compiled fusion (matmul + epilogue)
        &native::cpu::conv2d_few_channels, // conv2d.few_channels groups 1, C <= 8 (image stems): direct, no im2col
        &native::cpu::conv2d_implicit_gemm_nhwc, // conv2d.implicit_gemm_nhwc NHWC, any window: GEMM packing the input, no col buffer
        &native::cpu::conv2d_indirect_gemm_nhwc, // conv2d.indirect_gemm_nhwc NHWC, any window: GEMM reading the input through row pointers
    };
    return table;
}

// ---- pask_probe: what each vendor library is on this machine -----------------

using json::quote;

// {"ok": ..., "name": ..., "file": ..., "version": ..., "error": ...}
std::string library_json(bool ok, const std::string &name, const std::string &file, const std::string &version,
                         const std::string &error) {
    return "{\"ok\": " + std::string(ok ? "true" : "false") + ", \"name\": " + quote(name) +
           ", \"file\": " + quote(file) + ", \"version\": " + quote(version) + ", \"error\": " + quote(error) + "}";
}

std::string cache_json(const Options &o) {
    return "\"cache_dir\": " + quote(o.cache_dir) + ", \"cache_from\": " + quote(o.cache_from);
}

std::string probe_cuda(const Options &o) {
    std::string out = "{\"device_type\": \"cuda\", " + cache_json(o) + ", \"driver\": ";
    const cuda::Driver *d = nullptr;
    try {
        d = &cuda::Driver::get();
        out += library_json(true, d->name, d->path, cuda::cuda_version_text(d->version), "");
    } catch (const Error &e) {
        out += library_json(false, "", "", "", e.what());
    }
    std::string why;
    const cuda::Nvrtc *nvrtc = cuda::load_nvrtc(o.nvrtc_library, &why);
    out += ", \"devices\": [";
    int count = 0;
    if (d && d->cuDeviceGetCount(&count) != 0) count = 0;
    for (int i = 0; i < count; ++i) {
        cuda::CUdevice dev = 0;
        int major = 0, minor = 0, sms = 0;
        char name[256] = {0};
        if (d->cuDeviceGet(&dev, i) != 0) continue;
        d->cuDeviceGetAttribute(&major, cuda::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
        d->cuDeviceGetAttribute(&minor, cuda::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
        d->cuDeviceGetAttribute(&sms, cuda::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
        if (d->cuDeviceGetName) d->cuDeviceGetName(name, sizeof name - 1, dev);
        const std::string cc = std::to_string(major) + "." + std::to_string(minor);
        // the same checks as CudaBackend's constructor
        std::string problem = major >= 8 ? "" : "paskdnn's CUDA kernels need compute capability 8.0 or newer; device " +
                                                    std::to_string(i) + " is " + cc;
        std::string compiler = nvrtc ? cuda::nvrtc_target_problem(*nvrtc, major * 10 + minor, d->version) : why;
        out += std::string(i ? ", " : "") + "{\"index\": " + std::to_string(i) + ", \"name\": " + quote(name) +
               ", \"arch\": \"sm_" + std::to_string(major * 10 + minor) + "\", \"compute_capability\": \"" + cc +
               "\", \"multiprocessors\": " + std::to_string(sms) + ", \"problem\": " + quote(problem) +
               ", \"compiler_problem\": " + quote(compiler) + "}";
    }
    out += "], \"compiler\": ";
    out += nvrtc ? library_json(true, nvrtc->path, nvrtc->file,
                                std::to_string(nvrtc->major) + "." + std::to_string(nvrtc->minor), "")
                 : library_json(false, "", "", "", why);
    out += ", \"dnn\": ";
    if (!o.use_cudnn) {
        out += library_json(false, "", "", "", "cuDNN is switched off (option cudnn=0)");
    } else {
        std::string cudnn_why;
        const cudnn::Api *a = cudnn::Api::get(o.cudnn_library, &cudnn_why);
        out += a ? library_json(true, a->path, a->file, cudnn::version_text(a->version), "")
                 : library_json(false, "", "", "", cudnn_why);
    }
    return out + "}";
}

std::string probe_hip(const Options &o) {
    std::string out = "{\"device_type\": \"hip\", " + cache_json(o) + ", \"driver\": ";
    const hip::Runtime *rt = nullptr;
    try {
        rt = &hip::Runtime::get(o.hip_library);
        out += library_json(true, rt->path, rt->file, hip::hip_version_text(rt->version), "");
        out.insert(out.size() - 1, ", \"driver_version\": " +
                                       quote(rt->driver_version > 0 ? hip::hip_version_text(rt->driver_version) : ""));
    } catch (const Error &e) {
        out += library_json(false, "", "", "", e.what());
    }
    out += ", \"devices\": [";
    int count = 0;
    if (rt && rt->hipGetDeviceCount(&count) != 0) count = 0;
    for (int i = 0; i < count; ++i) {
        std::string arch, problem;
        try {
            arch = rt->arch_name(i);
        } catch (const Error &e) {
            problem = e.what();
        }
        out += std::string(i ? ", " : "") + "{\"index\": " + std::to_string(i) + ", \"name\": \"\", \"arch\": " +
               quote(arch) + ", \"problem\": " + quote(problem) + ", \"compiler_problem\": \"\"}";
    }
    out += "], \"compiler\": ";
    std::string why = "the HIP runtime is needed to look for hiprtc";
    const hip::Hiprtc *rtc = rt ? hip::load_hiprtc(o.hiprtc_library, *rt, &why) : nullptr;
    out += rtc ? library_json(true, rtc->path, rtc->file, std::to_string(rtc->major) + "." + std::to_string(rtc->minor),
                              "")
               : library_json(false, "", "", "", why);
    out += ", \"dnn\": ";
    if (!o.use_miopen) {
        out += library_json(false, "", "", "", "MIOpen is switched off (option miopen=0)");
    } else {
        std::string miopen_why;
        const miopen::Api *a = miopen::Api::get(o.miopen_library, &miopen_why);
        out += a ? library_json(true, a->path, a->file, a->version, "") : library_json(false, "", "", "", miopen_why);
    }
    return out + "}";
}

DeviceSetup cpu_setup() {
    DeviceSetup d;
    d.type = PASK_DEVICE_CPU;
    d.device_count = [] { return 1; };
    d.make_backend = [](int, const Options &o) -> std::unique_ptr<Backend> {
        return std::make_unique<CpuBackend>(o.num_threads, o.cpu_isa);
    };
    d.make_providers = [](Backend &, const Options &, Trace *) { return std::vector<std::unique_ptr<Provider>>(); };
    d.probe = [](const Options &o) { return "{\"device_type\": \"cpu\", " + cache_json(o) + "}"; };
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
    d.probe = probe_cuda;
    d.rtc_options = nvrtc_options;
    d.kernel_source = [](const std::string &object) { return cuda_kernel_source(object); };
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
    d.probe = probe_hip;
    d.rtc_options = hiprtc_options;
    d.kernel_source = [](const std::string &object) { return cuda_kernel_source(object); };
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
