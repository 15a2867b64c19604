// The HIP runtime and hiprtc, loaded with dlopen at run time: paskdnn has no
// build-time dependency on ROCm. Only the entry points the backend calls are
// declared, with HIP's ABI types. Values are taken from HIP's
// hip_runtime_api.h (ROCm 5.2.3 as packaged by Debian 12, and the ROCm 6.0
// "R0600" versioned device-properties struct); where 5.x and 6.x differ
// (hipMemoryType numbering, the device-properties layout) both are named.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

#include "../gpu/gpu_rtc.hpp"

namespace pask::hip {

using hipError_t = int;
using hipModule_t = struct ihipModule_t *;
using hipFunction_t = struct ihipModuleSymbol_t *;
using hipStream_t = struct ihipStream_t *;
using hipEvent_t = struct ihipEvent_t *;

constexpr int hipSuccess = 0;
constexpr int hipErrorOutOfMemory = 2;
constexpr int hipErrorNoDevice = 100;
constexpr int hipErrorNotReady = 600;

// hipMemcpyKind
constexpr int hipMemcpyHostToDevice = 1;
constexpr int hipMemcpyDeviceToHost = 2;
constexpr int hipMemcpyDeviceToDevice = 3;

// hipPointerAttribute_t: the leading fields are the same in 5.x and 6.x
// (5.x calls the first one memoryType, 6.x type); the enum values are not.
struct PointerAttributes {
    int type;
    int device;
    void *device_pointer;
    void *host_pointer;
    int is_managed;
    unsigned allocation_flags;
};
// HIP >= 6.0: hipMemoryTypeUnregistered 0, Host 1, Device 2, Managed 3.
constexpr int kMemoryTypeDevice6 = 2;
constexpr int kMemoryTypeManaged6 = 3;
// HIP 5.x: hipMemoryTypeHost 0, Device 1, Array 2, Unified 3.
constexpr int kMemoryTypeDevice5 = 1;
constexpr int kMemoryTypeUnified5 = 3;

// hipDeviceProp_t is read into a raw buffer; only gcnArchName (char[256]) is
// used. Its offset: 1160 in hipDeviceProp_tR0600 (hipGetDevicePropertiesR0600,
// ROCm >= 6.0; sizeof 1472), 396 in the 5.x hipDeviceProp_t
// (hipGetDeviceProperties; sizeof 792).
constexpr size_t kPropsBufferBytes = 4096;
constexpr size_t kGcnArchNameOffsetR0600 = 1160;
constexpr size_t kGcnArchNameOffset5 = 396;

struct Runtime {
    hipError_t (*hipInit)(unsigned);
    hipError_t (*hipGetDeviceCount)(int *);
    hipError_t (*hipGetDevice)(int *);
    hipError_t (*hipSetDevice)(int);
    hipError_t (*hipRuntimeGetVersion)(int *);
    hipError_t (*hipModuleLoadData)(hipModule_t *, const void *);
    hipError_t (*hipModuleUnload)(hipModule_t);
    hipError_t (*hipModuleGetFunction)(hipFunction_t *, hipModule_t, const char *);
    hipError_t (*hipModuleLaunchKernel)(hipFunction_t, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                                        unsigned, hipStream_t, void **, void **);
    hipError_t (*hipMalloc)(void **, size_t);
    hipError_t (*hipFree)(void *);
    hipError_t (*hipMemcpy)(void *, const void *, size_t, int);
    hipError_t (*hipStreamSynchronize)(hipStream_t);
    hipError_t (*hipPointerGetAttributes)(PointerAttributes *, const void *);
    const char *(*hipGetErrorString)(hipError_t);
    // One of the two is bound (R0600 preferred): hipGetDeviceProperties(props, device).
    hipError_t (*hipGetDevicePropertiesR0600)(void *, int) = nullptr;
    hipError_t (*hipGetDeviceProperties)(void *, int) = nullptr;
    // Optional (nullptr when absent): stream-ordered allocation (ROCm >= 5.3)
    // and events for device run times.
    hipError_t (*hipMallocAsync)(void **, size_t, hipStream_t) = nullptr;
    hipError_t (*hipFreeAsync)(void *, hipStream_t) = nullptr;
    hipError_t (*hipEventCreate)(hipEvent_t *) = nullptr;
    hipError_t (*hipEventDestroy)(hipEvent_t) = nullptr;
    hipError_t (*hipEventRecord)(hipEvent_t, hipStream_t) = nullptr;
    hipError_t (*hipEventQuery)(hipEvent_t) = nullptr;
    hipError_t (*hipEventElapsedTime)(float *, hipEvent_t, hipEvent_t) = nullptr;
    hipError_t (*hipDriverGetVersion)(int *) = nullptr;  // optional: for the doctor's report

    int version = 0;         // hipRuntimeGetVersion: major * 10000000 + minor * 100000 + patch
    int driver_version = 0;  // hipDriverGetVersion (0: not known)
    std::string path;        // the library loaded (the name dlopen was given)
    std::string file;        // the file that is (a full path where the dynamic linker says)
    void *handle = nullptr;

    // The HIP runtime from `path` (if not empty), else $PASKDNN_HIP, else
    // libamdhip64.so.6 / .so.5 / .so; loaded and hipInit once per distinct
    // path. Throws pask::Error(PASK_ERROR_BACKEND_UNAVAILABLE) saying what
    // was not found.
    static const Runtime &get(const std::string &path);
    // Throws pask::Error with HIP's message when r != hipSuccess.
    void check(hipError_t r, const char *what) const;
    std::string message(hipError_t r) const;
    // The gfx arch of device (e.g. "gfx90a" from "gfx90a:sramecc+:xnack-").
    std::string arch_name(int device) const;
};

// The oldest HIP runtime (and hiprtc) paskdnn accepts: ROCm 5.2, the oldest
// hip_runtime_api.h the declarations here were checked against (5.2.3):
// arch_name() reads gcnArchName at that release's hipDeviceProp_t offset
// (kGcnArchNameOffset5) when hipGetDevicePropertiesR0600 (6.0) is absent, and
// no older layout is known; 5.2 is also where load_hiprtc finds hiprtc inside
// libamdhip64. In hipRuntimeGetVersion's numbering (major * 10000000 + minor *
// 100000 + patch).
constexpr int kMinHipVersion = 50200000;
// "6.0.32830" for 60032830.
std::string hip_version_text(int version);

// hiprtc from `path` (if not empty), else $PASKDNN_HIPRTC, else
// libhiprtc.so.6 / .so.5 / .so, else the HIP runtime library itself
// (ROCm 5.2 ships hiprtc inside libamdhip64). nullptr (with *why set)
// when none loads: the backend then has no run-time compiler. compile()
// turns a source into a code object.
using Hiprtc = gpu::Rtc;
const Hiprtc *load_hiprtc(const std::string &path, const Runtime &runtime, std::string *why);

}  // namespace pask::hip
