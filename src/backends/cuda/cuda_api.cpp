#include "cuda_api.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include "../../core/dynlib.hpp"
#include "../../core/error.hpp"

namespace pask::cuda {

using dynlib::bind;
using dynlib::open_first;

const Driver &Driver::get() {
    static std::mutex mu;
    static std::unique_ptr<Driver> driver;
    static std::string failure;
    std::lock_guard<std::mutex> lock(mu);
    if (driver) return *driver;
    if (!failure.empty()) fail(PASK_ERROR_BACKEND_UNAVAILABLE, failure);
    std::string tried;
    const char *env = std::getenv("PASKDNN_LIBCUDA");
    std::string used;
    void *lib = open_first({env ? env : "", "libcuda.so.1", "libcuda.so"}, tried, &used);
    if (!lib) {
        failure = "the CUDA driver (libcuda.so.1) could not be loaded: " + tried;
        fail(PASK_ERROR_BACKEND_UNAVAILABLE, failure);
    }
    auto d = std::make_unique<Driver>();
    std::string missing;
    bind(lib, d->cuInit, "cuInit", missing);
    bind(lib, d->cuDeviceGetCount, "cuDeviceGetCount", missing);
    bind(lib, d->cuDeviceGet, "cuDeviceGet", missing);
    bind(lib, d->cuDeviceGetAttribute, "cuDeviceGetAttribute", missing);
    bind(lib, d->cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", missing);
    bind(lib, d->cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", missing);
    bind(lib, d->cuCtxPushCurrent, "cuCtxPushCurrent_v2", missing);
    bind(lib, d->cuCtxPopCurrent, "cuCtxPopCurrent_v2", missing);
    bind(lib, d->cuCtxSynchronize, "cuCtxSynchronize", missing);
    bind(lib, d->cuModuleLoadData, "cuModuleLoadData", missing);
    bind(lib, d->cuModuleUnload, "cuModuleUnload", missing);
    bind(lib, d->cuModuleGetFunction, "cuModuleGetFunction", missing);
    bind(lib, d->cuLaunchKernel, "cuLaunchKernel", missing);
    bind(lib, d->cuMemAlloc, "cuMemAlloc_v2", missing);
    bind(lib, d->cuMemFree, "cuMemFree_v2", missing);
    bind(lib, d->cuMemcpyHtoD, "cuMemcpyHtoD_v2", missing);
    bind(lib, d->cuMemcpyDtoH, "cuMemcpyDtoH_v2", missing);
    bind(lib, d->cuMemcpyDtoD, "cuMemcpyDtoD_v2", missing);
    bind(lib, d->cuStreamSynchronize, "cuStreamSynchronize", missing);
    bind(lib, d->cuPointerGetAttribute, "cuPointerGetAttribute", missing);
    bind(lib, d->cuGetErrorString, "cuGetErrorString", missing);
    bind(lib, d->cuFuncSetAttribute, "cuFuncSetAttribute", missing);
    bind(lib, d->cuDriverGetVersion, "cuDriverGetVersion", missing);
    std::string optional;  // absent optional entry points only switch features off
    bind(lib, d->cuEventCreate, "cuEventCreate", optional);
    bind(lib, d->cuEventDestroy, "cuEventDestroy_v2", optional);
    bind(lib, d->cuEventRecord, "cuEventRecord", optional);
    bind(lib, d->cuEventQuery, "cuEventQuery", optional);
    bind(lib, d->cuEventElapsedTime, "cuEventElapsedTime_v2", optional);
    if (!d->cuEventElapsedTime) bind(lib, d->cuEventElapsedTime, "cuEventElapsedTime", optional);
    bind(lib, d->cuStreamIsCapturing, "cuStreamIsCapturing", optional);
    bind(lib, d->cuCtxGetCurrent, "cuCtxGetCurrent", optional);
    bind(lib, d->cuMemAllocAsync, "cuMemAllocAsync", optional);
    bind(lib, d->cuMemFreeAsync, "cuMemFreeAsync", optional);
    bind(lib, d->cuLaunchHostFunc, "cuLaunchHostFunc", optional);
    bind(lib, d->cuThreadExchangeStreamCaptureMode, "cuThreadExchangeStreamCaptureMode", optional);
    bind(lib, d->cuStreamCreate, "cuStreamCreate", optional);
    bind(lib, d->cuStreamDestroy, "cuStreamDestroy_v2", optional);
    bind(lib, d->cuStreamBeginCapture, "cuStreamBeginCapture_v2", optional);
    bind(lib, d->cuStreamEndCapture, "cuStreamEndCapture", optional);
    bind(lib, d->cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags", optional);
    bind(lib, d->cuGraphLaunch, "cuGraphLaunch", optional);
    bind(lib, d->cuGraphExecDestroy, "cuGraphExecDestroy", optional);
    bind(lib, d->cuGraphDestroy, "cuGraphDestroy", optional);
    bind(lib, d->cuMemPoolCreate, "cuMemPoolCreate", optional);
    bind(lib, d->cuMemPoolDestroy, "cuMemPoolDestroy", optional);
    bind(lib, d->cuMemPoolSetAttribute, "cuMemPoolSetAttribute", optional);
    bind(lib, d->cuMemAllocFromPoolAsync, "cuMemAllocFromPoolAsync", optional);
    bind(lib, d->cuModuleGetFunctionCount, "cuModuleGetFunctionCount", optional);
    bind(lib, d->cuModuleEnumerateFunctions, "cuModuleEnumerateFunctions", optional);
    bind(lib, d->cuFuncLoad, "cuFuncLoad", optional);
    bind(lib, d->cuDeviceGetName, "cuDeviceGetName", optional);
    d->name = used;
    d->path = dynlib::loaded_path(lib, used);
    if (!missing.empty()) {
        failure = "the CUDA driver " + used + " (" + d->path + ") lacks " + missing;
        fail(PASK_ERROR_BACKEND_UNAVAILABLE, failure);
    }
    // Before cuInit: the version query needs no initialised driver, and an old
    // driver is named as old rather than by the error its cuInit gives.
    if (d->cuDriverGetVersion(&d->version) != 0) d->version = 0;
    if (d->version < kMinDriverVersion) {
        failure = "the CUDA driver " + used + " (" + d->path + ") is CUDA " +
                  (d->version > 0 ? cuda_version_text(d->version) : "of unknown version") + "; CUDA " +
                  cuda_version_text(kMinDriverVersion) + " or newer is required";
        fail(PASK_ERROR_BACKEND_UNAVAILABLE, failure);
    }
    CUresult r = d->cuInit(0);
    if (r != 0) {
        const char *msg = nullptr;
        d->cuGetErrorString(r, &msg);
        failure = std::string("cuInit failed: ") + (msg ? msg : std::to_string(r));
        fail(PASK_ERROR_BACKEND_UNAVAILABLE, failure);
    }
    driver = std::move(d);
    return *driver;
}

void Driver::check(CUresult r, const char *what) const {
    if (r == 0) return;
    const char *msg = nullptr;
    cuGetErrorString(r, &msg);
    fail(r == CUDA_ERROR_OUT_OF_MEMORY ? PASK_ERROR_OUT_OF_MEMORY : PASK_ERROR_INTERNAL,
         std::string(what) + " failed: " + (msg ? msg : "CUDA error " + std::to_string(r)));
}

std::string cuda_version_text(int version) {
    return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

namespace {
// The first NVRTC that compiles SASS for each compute capability paskdnn runs
// on, from the CUDA release notes; for NVRTC older than 11.2, which cannot
// list its targets. 0: unknown here (the compile itself will tell).
int first_nvrtc_for(int cc) {
    static const std::map<int, int> first{{80, 11000},  {86, 11010},  {87, 11040},  {89, 11080},
                                          {90, 11080},  {100, 12080}, {101, 12080}, {103, 12090},
                                          {110, 13000}, {120, 12080}, {121, 12090}};
    auto it = first.find(cc);
    return it == first.end() ? 0 : it->second;
}
}  // namespace

std::string nvrtc_target_problem(const gpu::Rtc &nvrtc, int cc, int driver_version) {
    const std::string label = "NVRTC " + std::to_string(nvrtc.major) + "." + std::to_string(nvrtc.minor);
    const std::string sm = "sm_" + std::to_string(cc);
    const int nvrtc_version = nvrtc.major * 1000 + nvrtc.minor * 10;
    int count = 0;
    if (nvrtc.num_supported_archs && nvrtc.supported_archs && nvrtc.num_supported_archs(&count) == 0 && count > 0) {
        std::vector<int> archs(static_cast<size_t>(count));
        if (nvrtc.supported_archs(archs.data()) == 0) {
            bool found = false;
            for (int a : archs) found = found || a == cc;
            if (!found) {
                std::string list;
                for (int a : archs) list += (list.empty() ? "sm_" : ", sm_") + std::to_string(a);
                return label + " (" + nvrtc.file + ") cannot target " + sm + " (it targets " + list + ")";
            }
        }
    } else if (const int first = first_nvrtc_for(cc); first > nvrtc_version) {
        return label + " (" + nvrtc.file + ") cannot target " + sm + "; NVRTC " + cuda_version_text(first) +
               " or newer is required";
    }
    if (driver_version > 0 && nvrtc.major > driver_version / 1000)
        return label + " (" + nvrtc.file + ") makes cubins the CUDA " + cuda_version_text(driver_version) +
               " driver cannot load; NVRTC " + std::to_string(driver_version / 1000) +
               ".x or a CUDA " + std::to_string(nvrtc.major) + " driver is required";
    return "";
}

const Nvrtc *load_nvrtc(const std::string &path, std::string *why) {
    static const gpu::RtcNames names{"nvrtc", "NVRTC", "nvrtcGetCUBINSize", "nvrtcGetCUBIN", "cubin"};
    const char *env = std::getenv("PASKDNN_NVRTC");
    const Nvrtc *n = gpu::Rtc::load(names, path + "|" + (env ? env : ""),
                                    {path, env ? env : "", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"}, why);
    if (n && (n->major < kMinNvrtcMajor || (n->major == kMinNvrtcMajor && n->minor < kMinNvrtcMinor))) {
        if (why)
            *why = "NVRTC " + std::to_string(n->major) + "." + std::to_string(n->minor) + " (" + n->file +
                   ") is too old; NVRTC " + std::to_string(kMinNvrtcMajor) + "." + std::to_string(kMinNvrtcMinor) +
                   " or newer is required";
        return nullptr;
    }
    return n;
}

}  // namespace pask::cuda
