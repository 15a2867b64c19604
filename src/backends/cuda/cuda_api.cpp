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

const Nvrtc *Nvrtc::get(const std::string &path, std::string *why) {
    static std::mutex mu;
    static std::map<std::string, std::unique_ptr<Nvrtc>> loaded;
    std::lock_guard<std::mutex> lock(mu);
    const char *env = std::getenv("PASKDNN_NVRTC");
    std::vector<std::string> names = {path, env ? env : "", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"};
    std::string key = path + "|" + (env ? env : "");
    auto it = loaded.find(key);
    if (it != loaded.end()) return it->second.get();
    std::string tried;
    void *lib = open_first(names, tried);
    if (!lib) {
        if (why) *why = "NVRTC could not be loaded (" + tried + ")";
        return nullptr;
    }
    auto n = std::make_unique<Nvrtc>();
    std::string missing;
    bind(lib, n->nvrtcVersion, "nvrtcVersion", missing);
    bind(lib, n->nvrtcCreateProgram, "nvrtcCreateProgram", missing);
    bind(lib, n->nvrtcCompileProgram, "nvrtcCompileProgram", missing);
    bind(lib, n->nvrtcGetProgramLogSize, "nvrtcGetProgramLogSize", missing);
    bind(lib, n->nvrtcGetProgramLog, "nvrtcGetProgramLog", missing);
    bind(lib, n->nvrtcGetCUBINSize, "nvrtcGetCUBINSize", missing);
    bind(lib, n->nvrtcGetCUBIN, "nvrtcGetCUBIN", missing);
    bind(lib, n->nvrtcDestroyProgram, "nvrtcDestroyProgram", missing);
    bind(lib, n->nvrtcGetErrorString, "nvrtcGetErrorString", missing);
    if (!missing.empty()) {
        if (why) *why = "NVRTC lacks " + missing;
        return nullptr;
    }
    int major = 0, minor = 0;
    n->nvrtcVersion(&major, &minor);
    n->version = "nvrtc-" + std::to_string(major) + "." + std::to_string(minor);
    const Nvrtc *out = n.get();
    loaded.emplace(key, std::move(n));
    return out;
}

std::string Nvrtc::compile(const std::string &source, const std::string &name, const std::string &options) const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> opts;
    std::istringstream ss(options);
    for (std::string o; ss >> o;) opts.push_back(o);
    std::vector<const char *> argv;
    for (const auto &o : opts) argv.push_back(o.c_str());
    nvrtcProgram prog = nullptr;
    nvrtcResult r = nvrtcCreateProgram(&prog, source.c_str(), name.c_str(), 0, nullptr, nullptr);
    if (r != 0) fail(PASK_ERROR_LOAD_FAILED, std::string("nvrtcCreateProgram: ") + nvrtcGetErrorString(r));
    r = nvrtcCompileProgram(prog, static_cast<int>(argv.size()), argv.data());
    std::string log;
    size_t log_size = 0;
    if (nvrtcGetProgramLogSize(prog, &log_size) == 0 && log_size > 1) {
        log.resize(log_size);
        nvrtcGetProgramLog(prog, &log[0]);
    }
    if (r != 0) {
        nvrtcDestroyProgram(&prog);
        fail(PASK_ERROR_LOAD_FAILED, "NVRTC failed to compile " + name + " (" + options + "): " +
                                         nvrtcGetErrorString(r) + "\n" + log.substr(0, 4000));
    }
    size_t size = 0;
    std::string cubin;
    if (nvrtcGetCUBINSize(prog, &size) == 0 && size > 0) {
        cubin.resize(size);
        nvrtcGetCUBIN(prog, &cubin[0]);
    }
    nvrtcDestroyProgram(&prog);
    if (cubin.empty()) fail(PASK_ERROR_LOAD_FAILED, "NVRTC produced no cubin for " + name);
    return cubin;
}

}  // namespace pask::cuda
