#include "hip_api.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include "../../core/dynlib.hpp"
#include "../../core/error.hpp"

namespace pask::hip {

using dynlib::bind;
using dynlib::open_first;

const Runtime &Runtime::get(const std::string &path) {
    static std::mutex mu;
    static std::map<std::string, std::unique_ptr<Runtime>> loaded;
    static std::map<std::string, std::string> failures;
    const char *env = std::getenv("PASKDNN_HIP");
    const std::string env_path = env ? env : "";
    const std::string key = path + "|" + env_path;
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = loaded.find(key); it != loaded.end()) return *it->second;
    if (auto it = failures.find(key); it != failures.end()) fail(PASK_ERROR_BACKEND_UNAVAILABLE, it->second);
    auto fail_with = [&](const std::string &msg) {
        failures[key] = msg;
        fail(PASK_ERROR_BACKEND_UNAVAILABLE, msg);
    };
    std::string tried, used;
    std::vector<std::string> names;
    if (!path.empty()) names = {path};
    else if (!env_path.empty()) names = {env_path};
    else names = {"libamdhip64.so.6", "libamdhip64.so.5", "libamdhip64.so"};
    void *lib = open_first(names, tried, &used);
    if (!lib)
        fail_with("the HIP runtime (libamdhip64.so) could not be loaded: " + tried +
                  " (install ROCm, or set the hip_library option or PASKDNN_HIP to its path)");
    auto r = std::make_unique<Runtime>();
    std::string missing;
    bind(lib, r->hipInit, "hipInit", missing);
    bind(lib, r->hipGetDeviceCount, "hipGetDeviceCount", missing);
    bind(lib, r->hipGetDevice, "hipGetDevice", missing);
    bind(lib, r->hipSetDevice, "hipSetDevice", missing);
    bind(lib, r->hipRuntimeGetVersion, "hipRuntimeGetVersion", missing);
    bind(lib, r->hipModuleLoadData, "hipModuleLoadData", missing);
    bind(lib, r->hipModuleUnload, "hipModuleUnload", missing);
    bind(lib, r->hipModuleGetFunction, "hipModuleGetFunction", missing);
    bind(lib, r->hipModuleLaunchKernel, "hipModuleLaunchKernel", missing);
    bind(lib, r->hipMalloc, "hipMalloc", missing);
    bind(lib, r->hipFree, "hipFree", missing);
    bind(lib, r->hipMemcpy, "hipMemcpy", missing);
    bind(lib, r->hipStreamSynchronize, "hipStreamSynchronize", missing);
    bind(lib, r->hipPointerGetAttributes, "hipPointerGetAttributes", missing);
    bind(lib, r->hipGetErrorString, "hipGetErrorString", missing);
    std::string optional;  // absent optional entry points only switch features off
    bind(lib, r->hipGetDevicePropertiesR0600, "hipGetDevicePropertiesR0600", optional);
    if (!r->hipGetDevicePropertiesR0600) bind(lib, r->hipGetDeviceProperties, "hipGetDeviceProperties", missing);
    bind(lib, r->hipMallocAsync, "hipMallocAsync", optional);
    bind(lib, r->hipFreeAsync, "hipFreeAsync", optional);
    bind(lib, r->hipEventCreate, "hipEventCreate", optional);
    bind(lib, r->hipEventDestroy, "hipEventDestroy", optional);
    bind(lib, r->hipEventRecord, "hipEventRecord", optional);
    bind(lib, r->hipEventQuery, "hipEventQuery", optional);
    bind(lib, r->hipEventElapsedTime, "hipEventElapsedTime", optional);
    bind(lib, r->hipDriverGetVersion, "hipDriverGetVersion", optional);
    r->file = dynlib::loaded_path(lib, used);
    if (!missing.empty()) {
        ::dlclose(lib);
        fail_with("the HIP runtime " + used + " (" + r->file + ") lacks " + missing);
    }
    // Before hipInit: an old runtime is named as old rather than by what fails in it.
    if (r->hipRuntimeGetVersion(&r->version) != hipSuccess) r->version = 0;
    if (r->version < kMinHipVersion) {
        const std::string msg = "the HIP runtime " + used + " (" + r->file + ") is HIP " +
                                (r->version > 0 ? hip_version_text(r->version) : "of unknown version") + "; HIP " +
                                hip_version_text(kMinHipVersion) + " (ROCm 5.2) or newer is required";
        ::dlclose(lib);
        fail_with(msg);
    }
    hipError_t e = r->hipInit(0);
    if (e != hipSuccess) {
        std::string msg = "the HIP runtime " + used + " cannot be used: hipInit failed: " + r->message(e);
        ::dlclose(lib);
        fail_with(msg);
    }
    if (r->hipDriverGetVersion && r->hipDriverGetVersion(&r->driver_version) != hipSuccess) r->driver_version = 0;
    r->path = used;
    r->handle = lib;
    const Runtime &out = *r;
    loaded.emplace(key, std::move(r));
    return out;  // the library stays loaded for the process
}

std::string Runtime::message(hipError_t r) const {
    const char *msg = hipGetErrorString ? hipGetErrorString(r) : nullptr;
    return (msg ? std::string(msg) : std::string("HIP error")) + " (" + std::to_string(r) + ")";
}

void Runtime::check(hipError_t r, const char *what) const {
    if (r == hipSuccess) return;
    fail(r == hipErrorOutOfMemory ? PASK_ERROR_OUT_OF_MEMORY : PASK_ERROR_INTERNAL,
         std::string(what) + " failed: " + message(r));
}

std::string Runtime::arch_name(int device) const {
    std::vector<char> props(kPropsBufferBytes, 0);
    size_t offset = 0;
    if (hipGetDevicePropertiesR0600) {
        check(hipGetDevicePropertiesR0600(props.data(), device), "hipGetDevicePropertiesR0600");
        offset = kGcnArchNameOffsetR0600;
    } else {
        check(hipGetDeviceProperties(props.data(), device), "hipGetDeviceProperties");
        offset = kGcnArchNameOffset5;
    }
    const char *name = props.data() + offset;
    const size_t len = ::strnlen(name, 256);
    std::string arch(name, len);
    arch = arch.substr(0, arch.find(':'));  // "gfx90a:sramecc+:xnack-" -> "gfx90a"
    // A layout this code does not know would put something else here: say so
    // rather than compile for a made-up target.
    require(len < 256 && arch.size() > 3 && arch.compare(0, 3, "gfx") == 0, PASK_ERROR_BACKEND_UNAVAILABLE,
            "cannot read the gfx architecture of HIP device " + std::to_string(device) + " from " + path +
                " (HIP runtime version " + std::to_string(version) + ")");
    return arch;
}

std::string hip_version_text(int v) {
    return std::to_string(v / 10000000) + "." + std::to_string(v / 100000 % 100) + "." + std::to_string(v % 100000);
}

const Hiprtc *load_hiprtc(const std::string &path, const Runtime &runtime, std::string *why) {
    static const gpu::RtcNames names{"hiprtc", "hiprtc", "hiprtcGetCodeSize", "hiprtcGetCode", "code object"};
    const char *env = std::getenv("PASKDNN_HIPRTC");
    std::vector<std::string> candidates;
    if (!path.empty()) candidates = {path};
    else if (env && *env) candidates = {env};
    else candidates = {"libhiprtc.so.6", "libhiprtc.so.5", "libhiprtc.so", runtime.path};
    const Hiprtc *h = gpu::Rtc::load(names, path + "|" + (env ? env : "") + "|" + runtime.path, candidates, why);
    const int min_major = kMinHipVersion / 10000000, min_minor = kMinHipVersion / 100000 % 100;
    if (h && (h->major < min_major || (h->major == min_major && h->minor < min_minor))) {
        if (why)
            *why = "hiprtc " + std::to_string(h->major) + "." + std::to_string(h->minor) + " (" + h->file +
                   ") is too old; hiprtc " + std::to_string(min_major) + "." + std::to_string(min_minor) +
                   " (ROCm 5.2) or newer is required";
        return nullptr;
    }
    return h;
}

}  // namespace pask::hip
