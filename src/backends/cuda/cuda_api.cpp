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
    void *lib = open_first({env ? env : "", "libcuda.so.1", "libcuda.so"}, tried);
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
    bind(lib, d->cuMemPoolCreate, "cuMemPoolCreate", optional);
    bind(lib, d->cuMemPoolDestroy, "cuMemPoolDestroy", optional);
    bind(lib, d->cuMemPoolSetAttribute, "cuMemPoolSetAttribute", optional);
    bind(lib, d->cuMemAllocFromPoolAsync, "cuMemAllocFromPoolAsync", optional);
    bind(lib, d->cuModuleGetFunctionCount, "cuModuleGetFunctionCount", optional);
    bind(lib, d->cuModuleEnumerateFunctions, "cuModuleEnumerateFunctions", optional);
    bind(lib, d->cuFuncLoad, "cuFuncLoad", optional);
    if (!missing.empty()) {
        failure = "the CUDA driver lacks " + missing;
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

const Nvrtc *load_nvrtc(const std::string &path, std::string *why) {
    static const gpu::RtcNames names{"nvrtc", "NVRTC", "nvrtcGetCUBINSize", "nvrtcGetCUBIN", "cubin"};
    const char *env = std::getenv("PASKDNN_NVRTC");
    return gpu::Rtc::load(names, path + "|" + (env ? env : ""),
                          {path, env ? env : "", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"}, why);
}

}  // namespace pask::cuda
