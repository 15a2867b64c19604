#include "cuda_backend.hpp"

#include <atomic>
#include <memory>

#include "../../core/error.hpp"
#include "paskdnn.h"

namespace pask {

using namespace cuda;

CudaBackend::CudaBackend(int device_index, const std::string &nvrtc_path)
    : d_(Driver::get()), index_(device_index) {
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
    rtc_ = cuda::load_nvrtc(nvrtc_path, &rtc_problem_);
    if (rtc_) {  // one that cannot make cubins for this device and driver is left out, with why
        std::string problem = cuda::nvrtc_target_problem(*rtc_, major * 10 + minor, d_.version);
        if (!problem.empty()) rtc_ = nullptr, rtc_problem_ = problem;
    }
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
    if (!events_available() || !d_.cuEventDestroy || !d_.cuStreamSynchronize) return;
    if (d_.cuLaunchHostFunc && d_.cuLaunchHostFunc(setup, &no_op_host_function, nullptr) == 0)
        d_.cuStreamSynchronize(setup);
    warm_timers(kWarmTimers);
}

CudaBackend::~CudaBackend() {
    release_timers();
    if (pool_) {  // outstanding frees complete first (the driver defers the release)
        try {
            Scope scope(*this);
            d_.cuMemPoolDestroy(pool_);
        } catch (...) {
        }
    }
    d_.cuDevicePrimaryCtxRelease(dev_);
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
    return wrap_module(origin, m);
}

void CudaBackend::module_unload(void *module) const {
    Scope scope(*this);
    d_.cuModuleUnload(static_cast<CUmodule>(module));
}

void *CudaBackend::module_function(void *module, const char *name) const {
    CUfunction fn = nullptr;
    if (d_.cuModuleGetFunction(&fn, static_cast<CUmodule>(module), name) != 0) return nullptr;
    return reinterpret_cast<void *>(fn);
}

// NVRTC options for a key: the target, and each compile-time constant as a
// macro (dtype -> PASK_DTYPE, anything else x -> PASK_FIXED_X).
std::string nvrtc_options(const KernelKey &key) {
    return "-std=c++17 --gpu-architecture=" + key.target + " -default-device -lineinfo" + gpu::constant_macros(key);
}

std::string CudaBackend::rtc_options(const KernelKey &key) const { return nvrtc_options(key); }

int CudaBackend::enter_device() const {
    // Already current (a framework such as PyTorch made the primary context
    // current on this thread): nothing to push. Measured on an H200, a push
    // and pop cost several times a cuCtxGetCurrent, and every call makes a few.
    CUcontext current = nullptr;
    if (d_.cuCtxGetCurrent && d_.cuCtxGetCurrent(&current) == 0 && current == ctx_) return 0;
    d_.check(d_.cuCtxPushCurrent(ctx_), "cuCtxPushCurrent");
    return 1;
}

void CudaBackend::leave_device(int pushed) const {
    if (!pushed) return;
    CUcontext popped = nullptr;
    d_.cuCtxPopCurrent(&popped);
}

void CudaBackend::loader_thread_started() const {
    if (!d_.cuThreadExchangeStreamCaptureMode) return;
    int mode = CU_STREAM_CAPTURE_MODE_RELAXED;
    d_.cuThreadExchangeStreamCaptureMode(&mode);
}

// ---- streams of our own and graph capture ----------------------------------------------

namespace {

class CudaGraphExec final : public GraphExec {
public:
    CudaGraphExec(const CudaBackend &b, const Driver &d, CUgraph g, CUgraphExec e) : b_(b), d_(d), graph_(g), exec_(e) {}
    ~CudaGraphExec() override {
        try {
            CudaBackend::Scope scope(b_);
            d_.cuGraphExecDestroy(exec_);
            d_.cuGraphDestroy(graph_);
        } catch (...) {  // the device is gone: nothing left to release
        }
    }
    void launch(void *stream) const override {
        CudaBackend::Scope scope(b_);
        d_.check(d_.cuGraphLaunch(exec_, static_cast<CUstream>(stream)), "cuGraphLaunch");
    }

private:
    const CudaBackend &b_;
    const Driver &d_;
    CUgraph graph_;
    CUgraphExec exec_;
};

std::string driver_message(const Driver &d, CUresult r) {
    const char *msg = nullptr;
    d.cuGetErrorString(r, &msg);
    return msg ? msg : "CUDA error " + std::to_string(r);
}

}  // namespace

std::string CudaBackend::capture_problem() const {
    std::string missing;
    auto need = [&](const void *fn, const char *name) {
        if (!fn) missing += (missing.empty() ? "" : ", ") + std::string(name);
    };
    need(reinterpret_cast<const void *>(d_.cuStreamCreate), "cuStreamCreate");
    need(reinterpret_cast<const void *>(d_.cuStreamDestroy), "cuStreamDestroy_v2");
    need(reinterpret_cast<const void *>(d_.cuStreamBeginCapture), "cuStreamBeginCapture_v2");
    need(reinterpret_cast<const void *>(d_.cuStreamEndCapture), "cuStreamEndCapture");
    need(reinterpret_cast<const void *>(d_.cuGraphInstantiateWithFlags), "cuGraphInstantiateWithFlags");
    need(reinterpret_cast<const void *>(d_.cuGraphLaunch), "cuGraphLaunch");
    need(reinterpret_cast<const void *>(d_.cuGraphExecDestroy), "cuGraphExecDestroy");
    need(reinterpret_cast<const void *>(d_.cuGraphDestroy), "cuGraphDestroy");
    if (missing.empty()) return std::string();
    return "graph capture needs CUDA 11.4's graph API; the CUDA driver " + d_.name + " (" + d_.path + ") lacks " +
           missing;
}

void *CudaBackend::stream_create() const {
    require(d_.cuStreamCreate && d_.cuStreamDestroy, PASK_ERROR_UNSUPPORTED,
            "the CUDA driver " + d_.name + " lacks cuStreamCreate / cuStreamDestroy_v2");
    Scope scope(*this);
    CUstream s = nullptr;
    d_.check(d_.cuStreamCreate(&s, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
    return s;
}

void CudaBackend::stream_destroy(void *stream) const {
    require(d_.cuStreamDestroy != nullptr, PASK_ERROR_UNSUPPORTED, "the CUDA driver " + d_.name + " lacks cuStreamDestroy_v2");
    Scope scope(*this);
    d_.check(d_.cuStreamDestroy(static_cast<CUstream>(stream)), "cuStreamDestroy");
}

// Thread-local mode: the driver refuses this thread's unsafe calls (a
// synchronising copy, cuMemAlloc, a module load) during the capture, and
// leaves other threads alone (loader threads use the relaxed mode anyway).
void CudaBackend::capture_begin(void *stream) const {
    const std::string problem = capture_problem();
    require(problem.empty(), PASK_ERROR_UNSUPPORTED, problem);
    Scope scope(*this);
    const CUresult r = d_.cuStreamBeginCapture(static_cast<CUstream>(stream), CU_STREAM_CAPTURE_MODE_THREAD_LOCAL);
    if (r != 0)
        fail(PASK_ERROR_INVALID_ARGUMENT, "cuStreamBeginCapture failed: " + driver_message(d_, r) +
                                              " (a stream of this context that no one captures is needed)");
}

std::unique_ptr<GraphExec> CudaBackend::capture_end(void *stream) const {
    Scope scope(*this);
    CUgraph graph = nullptr;
    CUresult r = d_.cuStreamEndCapture(static_cast<CUstream>(stream), &graph);
    if (r != 0) {
        if (graph) d_.cuGraphDestroy(graph);
        fail(PASK_ERROR_UNSUPPORTED, "cuStreamEndCapture failed: " + driver_message(d_, r) +
                                         " (work queued on the stream during the capture, outside paskdnn, may have "
                                         "invalidated it); nothing was kept");
    }
    CUgraphExec exec = nullptr;
    r = d_.cuGraphInstantiateWithFlags(&exec, graph, 0);
    if (r != 0) {
        d_.cuGraphDestroy(graph);
        fail(r == CUDA_ERROR_OUT_OF_MEMORY ? PASK_ERROR_OUT_OF_MEMORY : PASK_ERROR_INTERNAL,
             "cuGraphInstantiateWithFlags failed: " + driver_message(d_, r));
    }
    try {
        return std::make_unique<CudaGraphExec>(*this, d_, graph, exec);
    } catch (...) {
        d_.cuGraphExecDestroy(exec);
        d_.cuGraphDestroy(graph);
        throw;
    }
}

void CudaBackend::capture_abort(void *stream) const noexcept {
    if (!d_.cuStreamEndCapture) return;
    try {
        Scope scope(*this);
        CUgraph graph = nullptr;
        d_.cuStreamEndCapture(static_cast<CUstream>(stream), &graph);
        if (graph && d_.cuGraphDestroy) d_.cuGraphDestroy(graph);
    } catch (...) {  // the device is gone: nothing to end
    }
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

namespace {

// Device allocations whose pointers this thread has checked, for one backend:
// a pointer inside one needs no driver query (each costs a few hundred ns and
// a call checks up to five). Emptied when the backend differs or paskdnn
// frees device memory (g_frees); a buffer freed by another allocator and
// reused as host memory would go unnoticed, which UVA's reserved device
// address ranges make unlikely; the check exists for clear errors, not safety.
std::atomic<uint64_t> g_frees{0};
struct CheckedRanges {
    uint64_t backend = 0, frees = 0;
    uintptr_t lo[8] = {}, hi[8] = {};
    int next = 0;
};
thread_local CheckedRanges t_checked;

}  // namespace

void CudaBackend::check_device_pointer(const void *p, const char *what) const {
    if (!p) return;
    const auto a = reinterpret_cast<uintptr_t>(p);
    CheckedRanges &c = t_checked;
    const uint64_t frees = g_frees.load(std::memory_order_relaxed);
    if (c.backend != id() || c.frees != frees) c = CheckedRanges{id(), frees};
    for (int i = 0; i < 8; ++i)
        if (a >= c.lo[i] && a < c.hi[i]) return;
    // Pointer attributes need no current context (unified addressing).
    unsigned int type = 0;
    CUresult r = d_.cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, static_cast<CUdeviceptr>(a));
    require(r == 0 && (type == CU_MEMORYTYPE_DEVICE || type == CU_MEMORYTYPE_UNIFIED), PASK_ERROR_INVALID_ARGUMENT,
            std::string(what) + " is not CUDA device memory (a CUDA context needs device pointers)");
    CUdeviceptr start = 0;
    size_t size = 0;
    if (d_.cuPointerGetAttribute(&start, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, static_cast<CUdeviceptr>(a)) == 0 &&
        d_.cuPointerGetAttribute(&size, CU_POINTER_ATTRIBUTE_RANGE_SIZE, static_cast<CUdeviceptr>(a)) == 0 && size) {
        c.lo[c.next] = static_cast<uintptr_t>(start);
        c.hi[c.next] = static_cast<uintptr_t>(start) + size;
        c.next = (c.next + 1) % 8;
    }
}

void *CudaBackend::malloc_device(size_t bytes) const {
    Scope scope(*this);
    CUdeviceptr p = 0;
    d_.check(d_.cuMemAlloc(&p, bytes ? bytes : 1), "cuMemAlloc");
    return reinterpret_cast<void *>(static_cast<uintptr_t>(p));
}

void CudaBackend::free_device(void *p) const {
    if (!p) return;
    g_frees.fetch_add(1, std::memory_order_relaxed);
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
    else {
        d_.check(d_.cuMemcpyDtoD(dptr(dst), dptr(src), bytes), "cuMemcpyDtoD");
        // A device-to-device cuMemcpy returns before the copy is done (no host
        // synchronisation); pask_memcpy returns when it is, so that work queued
        // next on any stream (a non-blocking one: graph.Runner's) sees it.
        d_.check(d_.cuStreamSynchronize(nullptr), "cuStreamSynchronize");
    }
}

void CudaBackend::synchronize() const {
    Scope scope(*this);
    d_.check(d_.cuStreamSynchronize(stream()), "cuStreamSynchronize");
}

// ---- device run times (the timers are GpuBackend's) -------------------------------

bool CudaBackend::events_available() const {
    return d_.cuEventCreate && d_.cuEventRecord && d_.cuEventQuery && d_.cuEventElapsedTime;
}

bool CudaBackend::event_create(void **event) const {
    CUevent e = nullptr;
    if (d_.cuEventCreate(&e, 0) != 0) return false;
    *event = e;
    return true;
}

void CudaBackend::event_destroy(void *event) const {
    if (d_.cuEventDestroy) d_.cuEventDestroy(static_cast<CUevent>(event));
}

bool CudaBackend::event_record(void *event, void *stream) const {
    return d_.cuEventRecord(static_cast<CUevent>(event), static_cast<CUstream>(stream)) == 0;
}

CudaBackend::Query CudaBackend::event_query(void *event) const {
    const CUresult q = d_.cuEventQuery(static_cast<CUevent>(event));
    return q == 0 ? Query::ready : q == CUDA_ERROR_NOT_READY ? Query::not_ready : Query::failed;
}

bool CudaBackend::event_elapsed(float *ms, void *start, void *stop) const {
    return d_.cuEventElapsedTime(ms, static_cast<CUevent>(start), static_cast<CUevent>(stop)) == 0;
}

// Events recorded into a graph capture cannot be timed, nor queried during one.
bool CudaBackend::stream_capturing() const {
    if (!d_.cuStreamIsCapturing) return false;
    int status = 0;
    return d_.cuStreamIsCapturing(stream(), &status) != 0 || status != CU_STREAM_CAPTURE_STATUS_NONE;
}

bool CudaBackend::queue_host_function(void (*fn)(void *), void *arg) const {
    return d_.cuLaunchHostFunc && d_.cuLaunchHostFunc(stream(), fn, arg) == 0;
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
