#include "hip_backend.hpp"

#include "../../core/error.hpp"
#include "paskdnn.h"

namespace pask {

using namespace hip;

std::string hiprtc_options(const KernelKey &key) {
    // The kernel sources pick their portable path from PASK_HIP (see
    // src/kernels/cuda/pask_hip_compat.cuh); the constants become macros as on CUDA.
    return "-std=c++17 -O3 --offload-arch=" + key.target + " -DPASK_HIP=1" + gpu::constant_macros(key);
}

std::string HipBackend::rtc_options(const KernelKey &key) const { return hiprtc_options(key); }

HipBackend::HipBackend(int device_index, const std::string &hip_path, const std::string &hiprtc_path)
    : rt_(Runtime::get(hip_path)), index_(device_index) {
    int count = 0;
    hipError_t r = rt_.hipGetDeviceCount(&count);
    require(r == hipSuccess || r == hipErrorNoDevice, PASK_ERROR_BACKEND_UNAVAILABLE,
            "hipGetDeviceCount failed: " + rt_.message(r));
    require(r == hipSuccess && count > 0, PASK_ERROR_BACKEND_UNAVAILABLE, "no HIP device found (" + rt_.path + ")");
    require(device_index >= 0 && device_index < count, PASK_ERROR_INVALID_ARGUMENT,
            "HIP device " + std::to_string(device_index) + " does not exist (" + std::to_string(count) + " found)");
    targets_.push_back(rt_.arch_name(device_index));
    rtc_ = hip::load_hiprtc(hiprtc_path, rt_, &rtc_problem_);
}

HipBackend::~HipBackend() { release_timers(); }

int HipBackend::enter_device() const {
    int current = -1;
    if (rt_.hipGetDevice(&current) != hipSuccess) current = -1;
    if (current == index_) return -1;
    rt_.check(rt_.hipSetDevice(index_), "hipSetDevice");
    return current;
}

void HipBackend::leave_device(int previous) const {
    if (previous >= 0) rt_.hipSetDevice(previous);
}

std::shared_ptr<CodeObject> HipBackend::load_code_object_bytes(const std::string &bytes, const std::string &origin) {
    Scope scope(*this);
    hipModule_t m = nullptr;
    hipError_t r = rt_.hipModuleLoadData(&m, bytes.data());
    if (r != hipSuccess) fail(PASK_ERROR_LOAD_FAILED, "hipModuleLoadData(" + origin + ") failed: " + rt_.message(r));
    return wrap_module(origin, m);
}

void HipBackend::module_unload(void *module) const {
    Scope scope(*this);
    rt_.hipModuleUnload(static_cast<hipModule_t>(module));
}

void *HipBackend::module_function(void *module, const char *name) const {
    hipFunction_t fn = nullptr;
    if (rt_.hipModuleGetFunction(&fn, static_cast<hipModule_t>(module), name) != hipSuccess) return nullptr;
    return reinterpret_cast<void *>(fn);
}

void HipBackend::launch(void *fn, const unsigned grid[3], const unsigned block[3], unsigned shared_bytes,
                        void *params) const {
    Scope scope(*this);
    void *args[] = {params};
    rt_.check(rt_.hipModuleLaunchKernel(static_cast<hipFunction_t>(fn), grid[0], grid[1], grid[2], block[0], block[1],
                                        block[2], shared_bytes, stream(), args, nullptr),
              "hipModuleLaunchKernel");
}

void HipBackend::check_device_pointer(const void *p, const char *what) const {
    if (!p) return;
    Scope scope(*this);
    PointerAttributes attr{};
    hipError_t r = rt_.hipPointerGetAttributes(&attr, p);
    bool device = false;
    if (r == hipSuccess) {
        if (rt_.version >= 60000000) device = attr.type == kMemoryTypeDevice6 || attr.type == kMemoryTypeManaged6;
        else device = attr.type == kMemoryTypeDevice5 || attr.type == kMemoryTypeUnified5 || attr.is_managed;
    }
    require(device, PASK_ERROR_INVALID_ARGUMENT,
            std::string(what) + " is not HIP device memory (a HIP context needs device pointers)");
}

void *HipBackend::malloc_device(size_t bytes) const {
    Scope scope(*this);
    void *p = nullptr;
    rt_.check(rt_.hipMalloc(&p, bytes ? bytes : 1), "hipMalloc");
    return p;
}

void HipBackend::free_device(void *p) const {
    if (!p) return;
    Scope scope(*this);
    rt_.check(rt_.hipFree(p), "hipFree");
}

void HipBackend::copy(void *dst, const void *src, size_t bytes, int kind) const {
    Scope scope(*this);
    // the copy is ordered after the work on the calling thread's stream
    rt_.check(rt_.hipStreamSynchronize(stream()), "hipStreamSynchronize");
    const int k = kind == PASK_COPY_HOST_TO_DEVICE   ? hipMemcpyHostToDevice
                  : kind == PASK_COPY_DEVICE_TO_HOST ? hipMemcpyDeviceToHost
                                                     : hipMemcpyDeviceToDevice;
    rt_.check(rt_.hipMemcpy(dst, src, bytes, k), "hipMemcpy");
}

void HipBackend::synchronize() const {
    Scope scope(*this);
    rt_.check(rt_.hipStreamSynchronize(stream()), "hipStreamSynchronize");
}

// ---- device run times (the timers are GpuBackend's) -------------------------------

bool HipBackend::events_available() const {
    return rt_.hipEventCreate && rt_.hipEventRecord && rt_.hipEventQuery && rt_.hipEventElapsedTime &&
           rt_.hipEventDestroy;
}

bool HipBackend::event_create(void **event) const {
    hipEvent_t e = nullptr;
    if (rt_.hipEventCreate(&e) != hipSuccess) return false;
    *event = e;
    return true;
}

void HipBackend::event_destroy(void *event) const { rt_.hipEventDestroy(static_cast<hipEvent_t>(event)); }

bool HipBackend::event_record(void *event, void *stream) const {
    return rt_.hipEventRecord(static_cast<hipEvent_t>(event), static_cast<hipStream_t>(stream)) == hipSuccess;
}

HipBackend::Query HipBackend::event_query(void *event) const {
    const hipError_t q = rt_.hipEventQuery(static_cast<hipEvent_t>(event));
    return q == hipSuccess ? Query::ready : q == hipErrorNotReady ? Query::not_ready : Query::failed;
}

bool HipBackend::event_elapsed(float *ms, void *start, void *stop) const {
    return rt_.hipEventElapsedTime(ms, static_cast<hipEvent_t>(start), static_cast<hipEvent_t>(stop)) == hipSuccess;
}

// ---- stream-ordered scratch memory --------------------------------------------------

void *HipBackend::alloc_async(size_t bytes) const {
    if (bytes == 0) return nullptr;
    Scope scope(*this);
    void *p = nullptr;
    hipError_t r = rt_.hipMallocAsync ? rt_.hipMallocAsync(&p, bytes, stream()) : rt_.hipMalloc(&p, bytes);
    if (r == hipErrorOutOfMemory)
        fail(PASK_ERROR_OUT_OF_MEMORY, "out of device memory for a " + std::to_string(bytes) + "-byte workspace");
    rt_.check(r, rt_.hipMallocAsync ? "hipMallocAsync" : "hipMalloc");
    return p;
}

void HipBackend::free_async(void *p) const {
    if (!p) return;
    Scope scope(*this);
    if (rt_.hipFreeAsync) {
        rt_.check(rt_.hipFreeAsync(p, stream()), "hipFreeAsync");
    } else {  // synchronous fallback: the queued work must finish before the memory is reused
        rt_.check(rt_.hipStreamSynchronize(stream()), "hipStreamSynchronize");
        rt_.check(rt_.hipFree(p), "hipFree");
    }
}

}  // namespace pask
