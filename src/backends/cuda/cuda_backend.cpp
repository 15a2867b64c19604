#include "cuda_backend.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <unordered_map>

#include "../../core/error.hpp"
#include "../../core/fsutil.hpp"
#include "paskdnn.h"

namespace pask {

namespace {

using namespace cuda;

// The calling thread's stream per backend (set with pask_set_stream).
thread_local std::unordered_map<uint64_t, CUstream> t_streams;
std::atomic<uint64_t> g_next_backend{1};

class CudaModule final : public CodeObject {
public:
    CudaModule(std::string origin, const CudaBackend &backend, const Driver &d, CUmodule m)
        : CodeObject(std::move(origin)), backend_(backend), d_(d), module_(m) {}
    ~CudaModule() override {
        CudaBackend::Scope scope(backend_);
        d_.cuModuleUnload(module_);
    }
    void *symbol(const std::string &name) const override {
        CUfunction fn = nullptr;
        if (d_.cuModuleGetFunction(&fn, module_, name.c_str()) != 0) return nullptr;
        return reinterpret_cast<void *>(fn);
    }

private:
    const CudaBackend &backend_;
    const Driver &d_;
    CUmodule module_;
};

// NVRTC options for a key: the target, and each compile-time constant as a
// macro (dtype -> PASK_DTYPE, anything else x -> PASK_FIXED_X).
std::string nvrtc_options(const KernelKey &key) {
    std::string opts = "-std=c++17 --gpu-architecture=" + key.target + " -default-device -lineinfo";
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

}  // namespace

CudaBackend::Scope::Scope(const CudaBackend &b) : d_(b.d_) { d_.check(d_.cuCtxPushCurrent(b.ctx_), "cuCtxPushCurrent"); }

CudaBackend::Scope::~Scope() {
    CUcontext popped = nullptr;
    d_.cuCtxPopCurrent(&popped);
}

CudaBackend::CudaBackend(int device_index, const std::string &nvrtc_path)
    : d_(Driver::get()), id_(g_next_backend++), index_(device_index) {
    int count = 0;
    d_.check(d_.cuDeviceGetCount(&count), "cuDeviceGetCount");
    require(count > 0, PASK_ERROR_BACKEND_UNAVAILABLE, "no CUDA device found");
    require(device_index >= 0 && device_index < count, PASK_ERROR_INVALID_ARGUMENT,
            "CUDA device " + std::to_string(device_index) + " does not exist (" + std::to_string(count) + " found)");
    d_.check(d_.cuDeviceGet(&dev_, device_index), "cuDeviceGet");
    int major = 0, minor = 0;
    d_.check(d_.cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev_), "cuDeviceGetAttribute");
    d_.check(d_.cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev_), "cuDeviceGetAttribute");
    d_.check(d_.cuDeviceGetAttribute(&sm_count_, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev_), "cuDeviceGetAttribute");
    require(major >= 8, PASK_ERROR_UNSUPPORTED,
            "paskdnn's CUDA kernels need compute capability 8.0 or newer; device " + std::to_string(device_index) +
                " is " + std::to_string(major) + "." + std::to_string(minor));
    targets_.push_back("sm_" + std::to_string(major) + std::to_string(minor));
    d_.check(d_.cuDevicePrimaryCtxRetain(&ctx_, dev_), "cuDevicePrimaryCtxRetain");
    nvrtc_ = cuda::Nvrtc::get(nvrtc_path, &nvrtc_problem_);
    // Set-up work runs on a private non-blocking stream: the legacy NULL
    // stream would wait for (and, under a global-mode graph capture on another
    // thread, break) other libraries' work in this shared primary context.
    Scope scope(*this);
    CUstream setup = nullptr;
    if (d_.cuStreamCreate && d_.cuStreamDestroy && d_.cuStreamCreate(&setup, cuda::CU_STREAM_NON_BLOCKING) == 0) {
        create_scratch_pool(setup);
        prepare_timers(setup);
        d_.cuStreamDestroy(setup);
    }
}

// Scratch memory (cuDNN workspaces, split-K partial sums) comes from a pool of
// this backend's own that keeps up to 256 MB reserved across synchronisations,
// with 32 MB reserved now: the device's default pool gives its memory back at
// every synchronisation (release threshold 0), so its allocations may map
// memory again on the caller's path (in a fresh process's first inference, and
// after each sync). Best effort: without the pool API the default pool serves.
void CudaBackend::create_scratch_pool(CUstream setup) {
    if (!d_.cuMemPoolCreate || !d_.cuMemPoolDestroy || !d_.cuMemPoolSetAttribute || !d_.cuMemAllocFromPoolAsync ||
        !d_.cuMemFreeAsync || !d_.cuStreamSynchronize)
        return;
    cuda::CUmemPoolProps props{};
    props.allocType = cuda::CU_MEM_ALLOCATION_TYPE_PINNED;
    props.locationType = cuda::CU_MEM_LOCATION_TYPE_DEVICE;
    props.locationId = dev_;
    if (d_.cuMemPoolCreate(&pool_, &props) != 0) {
        pool_ = nullptr;
        return;
    }
    uint64_t keep = uint64_t(256) << 20;
    d_.cuMemPoolSetAttribute(pool_, cuda::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &keep);
    CUdeviceptr p = 0;
    if (d_.cuMemAllocFromPoolAsync(&p, size_t(32) << 20, pool_, setup) == 0) {
        d_.cuMemFreeAsync(p, setup);
        d_.cuStreamSynchronize(setup);
    }
}

// The first timed run of a process paid for the driver's first host function
// (it starts the driver's callback thread) and the first events: about 0.3 ms
// of host time on an H100, inside a fresh process's first inference wherever a
// model repeats a layer (its second occurrence is a timed run). Paid here, at
// context creation: a no-op host function on the set-up stream and events
// for kWarmTimers timed runs. Best effort, like the timers themselves.
namespace {
constexpr size_t kWarmTimers = 8;
void no_op_host_function(void *) {}
}  // namespace

void CudaBackend::prepare_timers(CUstream setup) {
    if (!d_.cuEventCreate || !d_.cuEventRecord || !d_.cuEventQuery || !d_.cuEventElapsedTime ||
        !d_.cuEventDestroy || !d_.cuStreamSynchronize)
        return;
    if (d_.cuLaunchHostFunc && d_.cuLaunchHostFunc(setup, &no_op_host_function, nullptr) == 0)
        d_.cuStreamSynchronize(setup);
    std::lock_guard<std::mutex> lock(timer_mu_);
    while (timers_.size() < kWarmTimers) {
        Timer t;
        if (d_.cuEventCreate(&t.start, 0) != 0) return;
        if (d_.cuEventCreate(&t.stop, 0) != 0) {
            d_.cuEventDestroy(t.start);
            return;
        }
        timers_.push_back(t);
    }
}

CudaBackend::~CudaBackend() {
    if (!timers_.empty() && d_.cuEventDestroy) {
        try {
            Scope scope(*this);
            for (auto &t : timers_) {
                if (t.start) d_.cuEventDestroy(t.start);
                if (t.stop) d_.cuEventDestroy(t.stop);
            }
        } catch (...) {  // a failing context cannot be cleaned up further
        }
    }
    if (pool_) {  // outstanding frees complete first (the driver defers the release)
        try {
            Scope scope(*this);
            d_.cuMemPoolDestroy(pool_);
        } catch (...) {
        }
    }
    d_.cuDevicePrimaryCtxRelease(dev_);
}

std::shared_ptr<CodeObject> CudaBackend::load_code_object(const std::string &path) {
    std::string why;
    auto bytes = read_file(path, kMaxCodeObjectBytes, &why);
    if (!bytes) fail(PASK_ERROR_LOAD_FAILED, "cannot load " + why);
    return load_code_object_bytes(*bytes, path);
}

std::shared_ptr<CodeObject> CudaBackend::load_code_object_bytes(const std::string &bytes, const std::string &origin) {
    Scope scope(*this);
    CUmodule m = nullptr;
    CUresult r = d_.cuModuleLoadData(&m, bytes.data());
    if (r != 0) {
        const char *msg = nullptr;
        d_.cuGetErrorString(r, &msg);
        fail(PASK_ERROR_LOAD_FAILED, "cuModuleLoadData(" + origin + ") failed: " + (msg ? msg : std::to_string(r)));
    }
    // Under lazy loading (CUDA's default) each function would load on its first
    // launch, on the caller: load them all here, on the loader thread (a module
    // holds an entry and its split-K reduction). Best effort: a function that
    // fails to load here loads (or fails) at its launch as before.
    unsigned count = 0;
    if (d_.cuModuleGetFunctionCount && d_.cuModuleEnumerateFunctions && d_.cuFuncLoad &&
        d_.cuModuleGetFunctionCount(&count, m) == 0 && count > 0 && count <= 64) {
        std::vector<CUfunction> fns(count);
        if (d_.cuModuleEnumerateFunctions(fns.data(), count, m) == 0)
            for (CUfunction f : fns) d_.cuFuncLoad(f);
    }
    return std::make_shared<CudaModule>(origin, *this, d_, m);
}

std::string CudaBackend::compile_material(const KernelKey &key) const {
    const char *src = cuda_kernel_source(key.object);
    return std::string(src ? src : "") + "\n//--\n" + nvrtc_options(key) + "\n" + (nvrtc_ ? nvrtc_->version : "") +
           "\n" + key.target;
}

std::string CudaBackend::compile(const KernelKey &key) {
    require(nvrtc_ != nullptr, PASK_ERROR_LOAD_FAILED, "cannot compile " + key.str() + ": " + nvrtc_problem_);
    const char *src = cuda_kernel_source(key.object);
    require(src != nullptr, PASK_ERROR_LOAD_FAILED, "no CUDA source for code object " + key.object);
    return nvrtc_->compile(src, key.object + ".cu", nvrtc_options(key));
}

CUstream CudaBackend::stream() const {
    auto it = t_streams.find(id_);
    return it == t_streams.end() ? nullptr : it->second;
}

void CudaBackend::set_stream(void *s) const { t_streams[id_] = static_cast<CUstream>(s); }

void CudaBackend::loader_thread_started() const {
    if (!d_.cuThreadExchangeStreamCaptureMode) return;
    int mode = CU_STREAM_CAPTURE_MODE_RELAXED;
    d_.cuThreadExchangeStreamCaptureMode(&mode);
}

void CudaBackend::launch(void *fn, const unsigned grid[3], const unsigned block[3], unsigned shared_bytes,
                         void *params) const {
    Scope scope(*this);
    if (shared_bytes > 48 * 1024)  // opt in to more than the default 48 KB of dynamic shared memory
        d_.check(d_.cuFuncSetAttribute(static_cast<CUfunction>(fn), CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                       static_cast<int>(shared_bytes)),
                 "cuFuncSetAttribute");
    void *args[] = {params};
    d_.check(d_.cuLaunchKernel(static_cast<CUfunction>(fn), grid[0], grid[1], grid[2], block[0], block[1], block[2],
                               shared_bytes, stream(), args, nullptr),
             "cuLaunchKernel");
}

void CudaBackend::check_device_pointer(const void *p, const char *what) const {
    if (!p) return;
    Scope scope(*this);
    unsigned int type = 0;
    CUresult r = d_.cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                                          static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(p)));
    require(r == 0 && (type == CU_MEMORYTYPE_DEVICE || type == CU_MEMORYTYPE_UNIFIED), PASK_ERROR_INVALID_ARGUMENT,
            std::string(what) + " is not CUDA device memory (a CUDA context needs device pointers)");
}

void *CudaBackend::malloc_device(size_t bytes) const {
    Scope scope(*this);
    CUdeviceptr p = 0;
    d_.check(d_.cuMemAlloc(&p, bytes ? bytes : 1), "cuMemAlloc");
    return reinterpret_cast<void *>(static_cast<uintptr_t>(p));
}

void CudaBackend::free_device(void *p) const {
    if (!p) return;
    Scope scope(*this);
    d_.check(d_.cuMemFree(static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(p))), "cuMemFree");
}

void CudaBackend::copy(void *dst, const void *src, size_t bytes, int kind) const {
    Scope scope(*this);
    auto dptr = [](const void *p) { return static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(p)); };
    // the copy is ordered after the work on the calling thread's stream
    d_.check(d_.cuStreamSynchronize(stream()), "cuStreamSynchronize");
    if (kind == PASK_COPY_HOST_TO_DEVICE) d_.check(d_.cuMemcpyHtoD(dptr(dst), src, bytes), "cuMemcpyHtoD");
    else if (kind == PASK_COPY_DEVICE_TO_HOST) d_.check(d_.cuMemcpyDtoH(dst, dptr(src), bytes), "cuMemcpyDtoH");
    else d_.check(d_.cuMemcpyDtoD(dptr(dst), dptr(src), bytes), "cuMemcpyDtoD");
}

void CudaBackend::synchronize() const {
    Scope scope(*this);
    d_.check(d_.cuStreamSynchronize(stream()), "cuStreamSynchronize");
}

// ---- device run times -----------------------------------------------------------
//
// start event ... work ... stop event measures the work alone only if the
// device does not reach the start event before the work is queued: on an idle
// device it would also count the host's time to queue the work (large for
// cuDNN, small for our kernels) and rank solvers by host overhead. So a timed
// run is queued behind a gate: a host function on the stream that waits until
// the stop event is queued (at most 50 ms, so nothing can hang on it).

struct CudaBackend::Gate {
    std::mutex m;
    std::condition_variable cv;
    bool open = false;
    std::atomic<int> refs{2};  // the host function and the opener
    void release() {
        if (--refs == 0) delete this;
    }
    static void wait(void *p) {
        auto *g = static_cast<Gate *>(p);
        {
            std::unique_lock<std::mutex> lock(g->m);
            g->cv.wait_for(lock, std::chrono::milliseconds(50), [g] { return g->open; });
        }
        g->release();
    }
    void open_now() {
        {
            std::lock_guard<std::mutex> lock(m);
            open = true;
        }
        cv.notify_all();
        release();
    }
};

int64_t CudaBackend::timer_start() const {
    if (!d_.cuEventCreate || !d_.cuEventRecord || !d_.cuEventQuery || !d_.cuEventElapsedTime) return -1;
    Scope scope(*this);
    if (d_.cuStreamIsCapturing) {  // events recorded into a graph capture cannot be timed
        int status = 0;
        if (d_.cuStreamIsCapturing(stream(), &status) != 0 || status != CU_STREAM_CAPTURE_STATUS_NONE) return -1;
    }
    std::lock_guard<std::mutex> lock(timer_mu_);
    size_t i = 0;
    while (i < timers_.size() && timers_[i].busy) ++i;
    if (i == timers_.size()) {
        if (timers_.size() >= 256) return -1;
        Timer t;
        if (d_.cuEventCreate(&t.start, 0) != 0) return -1;
        if (d_.cuEventCreate(&t.stop, 0) != 0) {
            d_.cuEventDestroy(t.start);
            return -1;
        }
        timers_.push_back(t);
    }
    Gate *gate = nullptr;
    if (d_.cuLaunchHostFunc) {
        gate = new Gate;
        if (d_.cuLaunchHostFunc(stream(), &Gate::wait, gate) != 0) {
            delete gate;
            gate = nullptr;
        }
    }
    if (d_.cuEventRecord(timers_[i].start, stream()) != 0) {
        if (gate) gate->open_now();
        return -1;
    }
    timers_[i].busy = true;
    timers_[i].gate = gate;
    return static_cast<int64_t>(i);
}

void CudaBackend::timer_stop(int64_t token) const {
    if (token < 0) return;
    Scope scope(*this);
    std::lock_guard<std::mutex> lock(timer_mu_);
    Timer &t = timers_[static_cast<size_t>(token)];
    d_.cuEventRecord(t.stop, stream());
    if (t.gate) t.gate->open_now();
    t.gate = nullptr;
}

bool CudaBackend::timer_poll(int64_t token, double *us) const {
    *us = -1;
    if (token < 0) return true;
    Scope scope(*this);
    if (d_.cuStreamIsCapturing) {  // querying an event is not allowed while a graph is being captured
        int status = 0;
        if (d_.cuStreamIsCapturing(stream(), &status) != 0 || status != CU_STREAM_CAPTURE_STATUS_NONE) return false;
    }
    std::lock_guard<std::mutex> lock(timer_mu_);
    Timer &t = timers_[static_cast<size_t>(token)];
    CUresult q = d_.cuEventQuery(t.stop);
    if (q == CUDA_ERROR_NOT_READY) return false;
    float ms = 0;
    if (q == 0 && d_.cuEventElapsedTime(&ms, t.start, t.stop) == 0) *us = double(ms) * 1000.0;
    t.busy = false;
    return true;
}

void CudaBackend::timer_release(int64_t token) const {
    if (token < 0) return;
    std::lock_guard<std::mutex> lock(timer_mu_);
    Timer &t = timers_[static_cast<size_t>(token)];
    if (t.gate) t.gate->open_now();
    t.gate = nullptr;
    t.busy = false;
}

// ---- stream-ordered scratch memory --------------------------------------------------

void *CudaBackend::alloc_async(size_t bytes) const {
    if (bytes == 0) return nullptr;
    Scope scope(*this);
    CUdeviceptr p = 0;
    // While a stream is being captured into a CUDA graph the allocation becomes a
    // graph memory node: the default pool's path there (the one measured with graph
    // replay on the H100), not this backend's pool.
    bool capturing = false;
    if (pool_ && d_.cuStreamIsCapturing) {
        int status = 0;
        capturing = d_.cuStreamIsCapturing(stream(), &status) != 0 || status != CU_STREAM_CAPTURE_STATUS_NONE;
    }
    CUresult r = pool_ && !capturing ? d_.cuMemAllocFromPoolAsync(&p, bytes, pool_, stream())
                 : d_.cuMemAllocAsync ? d_.cuMemAllocAsync(&p, bytes, stream())
                                      : d_.cuMemAlloc(&p, bytes);
    if (r == CUDA_ERROR_OUT_OF_MEMORY)
        fail(PASK_ERROR_OUT_OF_MEMORY, "out of device memory for a " + std::to_string(bytes) + "-byte workspace");
    d_.check(r, "stream-ordered allocation");
    return reinterpret_cast<void *>(static_cast<uintptr_t>(p));
}

void CudaBackend::free_async(void *p) const {
    if (!p) return;
    Scope scope(*this);
    const auto dp = static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(p));
    if (d_.cuMemFreeAsync) {
        d_.check(d_.cuMemFreeAsync(dp, stream()), "cuMemFreeAsync");
    } else {  // synchronous fallback: the queued work must finish before the memory is reused
        d_.check(d_.cuStreamSynchronize(stream()), "cuStreamSynchronize");
        d_.check(d_.cuMemFree(dp), "cuMemFree");
    }
}

}  // namespace pask
