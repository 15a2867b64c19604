#include "hip_backend.hpp"

#include <cctype>
#include <unordered_map>

#include "../../core/error.hpp"
#include "../../core/fsutil.hpp"
#include "../cuda/cuda_backend.hpp"  // cuda_kernel_source: one kernel source for CUDA and HIP
#include "paskdnn.h"

namespace pask {

namespace {

using namespace hip;

// The calling thread's stream per backend (set with pask_set_stream).
thread_local std::unordered_map<const void *, hipStream_t> t_streams;

class HipModule final : public CodeObject {
public:
    HipModule(std::string origin, const HipBackend &backend, hipModule_t m)
        : CodeObject(std::move(origin)), backend_(backend), module_(m) {}
    ~HipModule() override {
        try {
            HipBackend::Scope scope(backend_);
            backend_.runtime().hipModuleUnload(module_);
        } catch (...) {  // the device is gone: nothing left to release
        }
    }
    void *symbol(const std::string &name) const override {
        hipFunction_t fn = nullptr;
        if (backend_.runtime().hipModuleGetFunction(&fn, module_, name.c_str()) != hipSuccess) return nullptr;
        return reinterpret_cast<void *>(fn);
    }

private:
    const HipBackend &backend_;
    hipModule_t module_;
};

}  // namespace

std::string hiprtc_options(const KernelKey &key) {
    // The kernel sources pick their portable path from PASK_HIP (see
    // src/kernels/cuda/pask_hip_compat.cuh); the constants become macros as on CUDA.
    std::string opts = "-std=c++17 -O3 --offload-arch=" + key.target + " -DPASK_HIP=1";
    size_t start = 0;
    while (start < key.constants.size()) {
        size_t comma = key.constants.find(',', start);
        std::string kv = key.constants.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        auto eq = kv.find('=');
        if (eq != std::string::npos) {
            std::string name = kv.substr(0, eq);
            for (auto &ch : name) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
            opts += " -D" + std::string(name == "DTYPE" ? "PASK_DTYPE" : "PASK_FIXED_" + name) + "=" + kv.substr(eq + 1);
        }
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return opts;
}

HipBackend::Scope::Scope(const HipBackend &b) : rt_(b.rt_) {
    int current = -1;
    if (rt_.hipGetDevice(&current) != hipSuccess) current = -1;
    if (current != b.index_) {
        rt_.check(rt_.hipSetDevice(b.index_), "hipSetDevice");
        previous_ = current;
    }
}

HipBackend::Scope::~Scope() {
    if (previous_ >= 0) rt_.hipSetDevice(previous_);
}

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
    rtc_ = hip::Hiprtc::get(hiprtc_path, rt_, &rtc_problem_);
}

HipBackend::~HipBackend() {
    if (!timers_.empty() && rt_.hipEventDestroy) {
        try {
            Scope scope(*this);
            for (auto &t : timers_) {
                if (t.start) rt_.hipEventDestroy(t.start);
                if (t.stop) rt_.hipEventDestroy(t.stop);
            }
        } catch (...) {  // a failing device cannot be cleaned up further
        }
    }
}

std::shared_ptr<CodeObject> HipBackend::load_code_object(const std::string &path) {
    std::string why;
    auto bytes = read_file(path, kMaxCodeObjectBytes, &why);
    if (!bytes) fail(PASK_ERROR_LOAD_FAILED, "cannot load " + why);
    return load_code_object_bytes(*bytes, path);
}

std::shared_ptr<CodeObject> HipBackend::load_code_object_bytes(const std::string &bytes, const std::string &origin) {
    Scope scope(*this);
    hipModule_t m = nullptr;
    hipError_t r = rt_.hipModuleLoadData(&m, bytes.data());
    if (r != hipSuccess) fail(PASK_ERROR_LOAD_FAILED, "hipModuleLoadData(" + origin + ") failed: " + rt_.message(r));
    return std::make_shared<HipModule>(origin, *this, m);
}

std::string HipBackend::compile_material(const KernelKey &key) const {
    const char *src = cuda_kernel_source(key.object);
    return std::string(src ? src : "") + "\n//--\n" + hiprtc_options(key) + "\n" + (rtc_ ? rtc_->version : "") +
           "\n" + key.target;
}

std::string HipBackend::compile(const KernelKey &key) {
    require(rtc_ != nullptr, PASK_ERROR_LOAD_FAILED, "cannot compile " + key.str() + ": " + rtc_problem_);
    const char *src = cuda_kernel_source(key.object);
    require(src != nullptr, PASK_ERROR_LOAD_FAILED, "no kernel source for code object " + key.object);
    return rtc_->compile(src, key.object + ".hip", hiprtc_options(key));
}

hipStream_t HipBackend::stream() const {
    auto it = t_streams.find(this);
    return it == t_streams.end() ? nullptr : it->second;
}

void HipBackend::set_stream(void *s) const { t_streams[this] = static_cast<hipStream_t>(s); }

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

// ---- device run times -----------------------------------------------------------

int64_t HipBackend::timer_start() const {
    if (!rt_.hipEventCreate || !rt_.hipEventRecord || !rt_.hipEventQuery || !rt_.hipEventElapsedTime ||
        !rt_.hipEventDestroy)
        return -1;
    Scope scope(*this);
    std::lock_guard<std::mutex> lock(timer_mu_);
    size_t i = 0;
    while (i < timers_.size() && timers_[i].busy) ++i;
    if (i == timers_.size()) {
        if (timers_.size() >= 256) return -1;
        Timer t;
        if (rt_.hipEventCreate(&t.start) != hipSuccess) return -1;
        if (rt_.hipEventCreate(&t.stop) != hipSuccess) {
            rt_.hipEventDestroy(t.start);
            return -1;
        }
        timers_.push_back(t);
    }
    if (rt_.hipEventRecord(timers_[i].start, stream()) != hipSuccess) return -1;
    timers_[i].busy = true;
    return static_cast<int64_t>(i);
}

void HipBackend::timer_stop(int64_t token) const {
    if (token < 0) return;
    Scope scope(*this);
    std::lock_guard<std::mutex> lock(timer_mu_);
    rt_.hipEventRecord(timers_[static_cast<size_t>(token)].stop, stream());
}

bool HipBackend::timer_poll(int64_t token, double *us) const {
    *us = -1;
    if (token < 0) return true;
    Scope scope(*this);
    std::lock_guard<std::mutex> lock(timer_mu_);
    Timer &t = timers_[static_cast<size_t>(token)];
    hipError_t q = rt_.hipEventQuery(t.stop);
    if (q == hipErrorNotReady) return false;
    float ms = 0;
    if (q == hipSuccess && rt_.hipEventElapsedTime(&ms, t.start, t.stop) == hipSuccess) *us = double(ms) * 1000.0;
    t.busy = false;
    return true;
}

void HipBackend::timer_release(int64_t token) const {
    if (token < 0) return;
    std::lock_guard<std::mutex> lock(timer_mu_);
    timers_[static_cast<size_t>(token)].busy = false;
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
