// A test double of the CUDA driver and cuDNN 9, for tests/test_cudnn_double.py.
//
// It exports the entry points paskdnn dlsyms from libcuda.so.1 and
// libcudnn.so.9, keeps "device" memory in host memory, logs every call that
// matters to the cuDNN provider's contract (one line per call: name, then
// key=value fields) and never computes: results on real hardware are the GPU
// tests' job (tests/test_cudnn.py). Kernel launches of paskdnn's own kernels
// succeed without running anything, so only which kernel ran can be checked.
//
// Behaviour switches: double_set(key, value):
//   heur_a        engine ids mode-A heuristics offer, comma-separated (default "10,11,12")
//   heur_fallback engine ids the fallback list offers (default "10,20")
//   rtc           engine ids that need runtime compilation (default "")
//   fail          engine ids whose plan does not finalise (default "")
//   graph_oom     1: operation graphs report a device allocation failure when they finalise
//   ws_<id>       workspace bytes of engine <id>'s plans (default 0)
//   graph_fail    1: operation graphs do not finalise (an unsupported pattern)
//   oom_async     1: cuMemAllocAsync / cuMemAllocFromPoolAsync report out of memory
//   create_fail   1: cudnnCreate fails
//   finalize_ms   milliseconds each execution plan takes to finalise (default 0)
//   launch_fail   1: cuLaunchKernel fails (else a launch computes nothing and takes time_native us)
//   launch_sleep_ms milliseconds each cuLaunchKernel blocks its caller (a call that stays in flight)
//   time_<id>     microseconds engine <id>'s plans take on the stream's clock (default 10)
//   capturing     a stream (as %p prints it) that cuStreamIsCapturing reports as being captured
//   digest        1: cuDNN executions and poolings write a digest of their inputs' first 8 bytes
//                 (and the engine id) into the output's first 8 bytes, so a chain of calls
//                 has a result that depends on every call, its order and its input data
//   instantiate_fail 1: cuGraphInstantiateWithFlags reports out of memory
//
// Every switch can also come from the environment, as PASKDNN_DOUBLE_<KEY>
// (upper case; double_set wins): what a library reports while it is being
// loaded, before a test could reach double_set, is set that way:
//   driver_version   cuDriverGetVersion (default 12040, CUDA 12.4)
//   cc               compute capability as major*10+minor (default 90)
//   device_name      cuDeviceGetName (default "paskdnn test double")
//   cudnn_version    cudnnGetVersion (default 91900, cuDNN 9.19.0)
//   nvrtc_version    nvrtcVersion as major*1000+minor*10 (default 12040)
//   nvrtc_archs      nvrtcGetSupportedArchs, comma-separated (default "80,86,87,89,90";
//                    "none": the NVRTC lacks nvrtcGetSupportedArchs, as NVRTC < 11.2 does)
// The NVRTC entry points compile nothing: nvrtcCompileProgram fails with a
// log saying so (paskdnn's own kernels come from prebuilt cubins here).
//
// Graph capture (cuStreamBeginCapture_v2 ... cuStreamEndCapture, cuGraphLaunch):
// work queued on a stream being captured (kernel launches, cuDNN executions
// and poolings, stream-ordered allocations) is recorded, logged as
// "capture <call> ...", not run; each cuGraphLaunch logs "cuGraphLaunch" and
// runs the recorded work again on its stream, each call logged as it would be
// eagerly, with " replay=1". The capturing thread's unsafe calls (a
// synchronising copy, cuMemAlloc/cuMemFree, a module load, a synchronisation
// of the captured stream) fail with CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and
// invalidate the capture, as the driver's thread-local mode does (a module
// load among them: paskdnn must never load while capturing, and a test sees
// it if it did). double_live_graphs() counts graphs and executable graphs.
//
// Device time: each stream has a clock; an execution advances it by its
// engine's time, events read it, so paskdnn's device-timed ranking sees the
// times the test sets. Host functions (cuLaunchHostFunc) run on a thread.
#include <chrono>
#include <pthread.h>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#define EXPORT extern "C" __attribute__((visibility("default")))

namespace {

std::mutex g_mu;
std::string g_log;
std::map<std::string, std::string> g_knobs;
std::map<uintptr_t, size_t> g_allocs;  // base -> size
thread_local std::vector<void *> t_ctx;
std::map<void *, double> g_clock;  // per stream, microseconds (under g_mu)

struct Event {
    double t = 0;
};

void advance(void *stream, double us) {
    std::lock_guard<std::mutex> lock(g_mu);
    g_clock[stream] += us;
}

void logf(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    // the thread's id without iostreams: on the GPU machine (torch's Python) a
    // std::ostream in this library crashed during the first logged call
    const std::string tid = std::to_string(static_cast<unsigned long>(pthread_self()));  // what std::thread::id prints
    std::lock_guard<std::mutex> lock(g_mu);
    g_log += std::string(buf) + " thread=" + tid + "\n";
}

std::string knob(const std::string &k, const std::string &dflt = "") {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_knobs.find(k);
    if (it != g_knobs.end()) return it->second;
    std::string name = "PASKDNN_DOUBLE_";
    for (char c : k) name += static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    const char *env = std::getenv(name.c_str());
    return env ? env : dflt;
}
int knob_int(const std::string &k, int dflt) {
    const std::string v = knob(k);
    return v.empty() ? dflt : std::atoi(v.c_str());
}

std::vector<int64_t> ids(const std::string &csv) {
    std::vector<int64_t> out;
    std::stringstream ss(csv);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(std::atoll(item.c_str()));
    return out;
}

bool in(const std::vector<int64_t> &v, int64_t x) {
    for (auto e : v)
        if (e == x) return true;
    return false;
}

void *device_alloc(size_t n) {
    void *p = std::malloc(n ? n : 1);
    std::lock_guard<std::mutex> lock(g_mu);
    g_allocs[reinterpret_cast<uintptr_t>(p)] = n;
    return p;
}

void device_free(void *p) {
    {
        std::lock_guard<std::mutex> lock(g_mu);
        g_allocs.erase(reinterpret_cast<uintptr_t>(p));
    }
    std::free(p);
}

bool is_device(uintptr_t p) {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_allocs.upper_bound(p);
    if (it == g_allocs.begin()) return false;
    --it;
    return p >= it->first && p < it->first + std::max<size_t>(it->second, 1);
}

// ---- graph capture ------------------------------------------------------------------

// Recorded work: replayed on a stream.
struct Recording {
    std::vector<std::function<void(void *stream)>> nodes;
    std::vector<void *> memory;  // graph memory nodes' allocations (freed with the last holder)
    ~Recording() {
        for (void *p : memory) device_free(p);
    }
};
struct Capture {
    std::shared_ptr<Recording> rec = std::make_shared<Recording>();
    std::thread::id thread;
    int mode = 0;
    bool invalidated = false;
};
std::map<void *, Capture> g_captures;                          // by stream (under g_mu)
std::map<void *, std::shared_ptr<Recording>> g_graphs, g_execs;  // live CUgraph / CUgraphExec (under g_mu)

// The recording of stream when it is being captured, else nullptr (then the call runs).
std::shared_ptr<Recording> recording(void *stream) {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_captures.find(stream);
    return it == g_captures.end() ? nullptr : it->second.rec;
}

// An unsafe call on a thread that captures (thread-local or global mode): it
// fails and invalidates the capture, as the driver does.
bool unsafe(const char *what) {
    bool hit = false;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        for (auto &[stream, c] : g_captures)
            if (c.mode != 2 && (c.mode == 0 || c.thread == std::this_thread::get_id())) {
                c.invalidated = true;
                hit = true;
            }
    }
    if (hit) logf("unsafe %s during capture", what);
    return hit;
}
constexpr int kCaptureUnsupported = 900;  // CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED

uint64_t first8(const void *p) {
    uint64_t v = 0;
    if (p) std::memcpy(&v, p, sizeof v);
    return v;
}
// The digest knob: y's first 8 bytes from the inputs' first 8 bytes and the engine.
void write_digest(void *y, int64_t engine, const std::vector<const void *> &inputs) {
    if (knob("digest") != "1" || !y) return;
    uint64_t h = 1469598103934665603ull ^ uint64_t(engine);
    for (const void *p : inputs) h = (h ^ first8(p)) * 1099511628211ull;
    std::memcpy(y, &h, sizeof h);
}

// ---- cuDNN backend descriptors ----------------------------------------------------

size_t type_size(int t) {
    switch (t) {
    case 2: return 1;                          // BOOLEAN
    case 1: case 4: case 7: case 8: case 10: case 11: case 14: case 19: return 4;  // enums (10: NAN_PROPOGATION), FLOAT
    default: return 8;                         // HANDLE, INT64, DOUBLE, VOID_PTR, BACKEND_DESCRIPTOR
    }
}

struct Desc {
    int type;
    std::map<int, std::vector<char>> attrs;
    std::map<int, int64_t> counts;
    bool finalized = false;
    int64_t engine = -1;                // ENGINECFG / ENGINE: the engine id
    std::vector<int64_t> results;       // ENGINEHEUR: the configurations' engines
    int64_t workspace = 0;              // EXECUTION_PLAN

    template <typename T>
    std::vector<T> get(int attr) const {
        auto it = attrs.find(attr);
        std::vector<T> out;
        if (it == attrs.end()) return out;
        out.resize(it->second.size() / sizeof(T));
        std::memcpy(out.data(), it->second.data(), out.size() * sizeof(T));
        return out;
    }
    Desc *desc(int attr, size_t i = 0) const {
        auto v = get<Desc *>(attr);
        return i < v.size() ? v[i] : nullptr;
    }
    int64_t i64(int attr, int64_t dflt = -1) const {
        auto v = get<int64_t>(attr);
        return v.empty() ? dflt : v[0];
    }
};

std::string join(const std::vector<int64_t> &v) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
    return s;
}

std::string tensor_text(const Desc *t) {
    if (!t) return "null";
    auto virt = t->get<char>(907);
    return "uid" + std::to_string(t->i64(906)) + "[" + join(t->get<int64_t>(902)) + "/" + join(t->get<int64_t>(903)) +
           "]dt" + std::to_string(t->get<int32_t>(901).empty() ? -1 : t->get<int32_t>(901)[0]) +
           (!virt.empty() && virt[0] ? "v" : "");
}

// One line per op of a graph: what the provider asked cuDNN to compute.
std::string graph_text(const Desc *g) {
    std::string out;
    for (Desc *op : g->get<Desc *>(801)) {
        if (op->type == 10) {  // convolution forward
            Desc *c = op->desc(702);
            out += " conv(x=" + tensor_text(op->desc(704)) + ",w=" + tensor_text(op->desc(703)) + ",y=" +
                   tensor_text(op->desc(705)) + ",stride=" + join(c->get<int64_t>(103)) + ",pre=" +
                   join(c->get<int64_t>(105)) + ",post=" + join(c->get<int64_t>(104)) + ",dil=" +
                   join(c->get<int64_t>(102)) + ")";
        } else if (op->type == 19) {  // matmul
            out += " matmul(a=" + tensor_text(op->desc(1520)) + ",b=" + tensor_text(op->desc(1521)) + ",c=" +
                   tensor_text(op->desc(1522)) + ")";
        } else if (op->type == 13) {  // pointwise
            Desc *pw = op->desc(750);
            const int mode = pw->get<int32_t>(0).empty() ? -1 : pw->get<int32_t>(0)[0];
            auto clip = pw->get<float>(4);
            auto nan = pw->get<int32_t>(2);  // NAN_PROPAGATION: logged when set (nan=1: propagate)
            auto swish_beta = pw->get<double>(8);  // SWISH_BETA (double)
            const char *name = mode == 0     ? "add"
                               : mode == 100 ? "relu"
                               : mode == 102 ? "sigmoid"
                               : mode == 104 ? "gelu"
                               : mode == 106 ? "swish"
                               : mode == 107 ? "gelu_tanh"
                                             : nullptr;  // SIGMOID_FWD, GELU_FWD, SWISH_FWD, GELU_APPROX_TANH_FWD
            out += std::string(" ") + (name ? std::string(name) : "pw" + std::to_string(mode)) +
                   "(x=" + tensor_text(op->desc(751)) + (op->desc(752) ? ",b=" + tensor_text(op->desc(752)) : "") +
                   ",y=" + tensor_text(op->desc(753)) + (clip.empty() ? "" : ",clip=" + std::to_string(int(clip[0]))) +
                   (nan.empty() ? "" : ",nan=" + std::to_string(nan[0])) +
                   (swish_beta.empty() ? "" : ",beta=" + std::to_string(swish_beta[0])) + ")";
        }
    }
    return out;
}

struct Handle {
    void *stream = nullptr;
};

}  // namespace

// ---- controls -----------------------------------------------------------------------

EXPORT const char *double_log() {
    static std::string copy;
    std::lock_guard<std::mutex> lock(g_mu);
    copy = g_log;
    return copy.c_str();
}
EXPORT void double_log_clear() {
    std::lock_guard<std::mutex> lock(g_mu);
    g_log.clear();
}
EXPORT void double_set(const char *key, const char *value) {
    std::lock_guard<std::mutex> lock(g_mu);
    if (value) g_knobs[key] = value;
    else g_knobs.erase(key);
}
EXPORT int double_live_graphs() {
    std::lock_guard<std::mutex> lock(g_mu);
    return static_cast<int>(g_graphs.size() + g_execs.size());
}
EXPORT int double_live_allocations() {
    std::lock_guard<std::mutex> lock(g_mu);
    return static_cast<int>(g_allocs.size());
}

// ---- CUDA driver ----------------------------------------------------------------------

EXPORT int cuInit(unsigned) { return 0; }
EXPORT int cuDeviceGetCount(int *n) {
    *n = 1;
    return 0;
}
EXPORT int cuDeviceGet(int *d, int i) {
    *d = i;
    return 0;
}
EXPORT int cuDeviceGetAttribute(int *v, int attr, int) {
    const int cc = knob_int("cc", 90);
    *v = attr == 16 ? 132 : attr == 75 ? cc / 10 : attr == 76 ? cc % 10 : 0;  // SM count, compute capability
    return 0;
}
EXPORT int cuDriverGetVersion(int *v) {
    *v = knob_int("driver_version", 12040);
    return 0;
}
EXPORT int cuDeviceGetName(char *name, int len, int) {
    std::snprintf(name, static_cast<size_t>(len), "%s", knob("device_name", "paskdnn test double").c_str());
    return 0;
}
EXPORT int cuDevicePrimaryCtxRetain(void **ctx, int dev) {
    *ctx = reinterpret_cast<void *>(uintptr_t(0xC0DE0) + uintptr_t(dev));
    return 0;
}
EXPORT int cuDevicePrimaryCtxRelease_v2(int) { return 0; }
EXPORT int cuCtxGetCurrent(void **c) {
    *c = t_ctx.empty() ? nullptr : t_ctx.back();
    return 0;
}
EXPORT int cuCtxPushCurrent_v2(void *c) {
    t_ctx.push_back(c);
    return 0;
}
EXPORT int cuCtxPopCurrent_v2(void **c) {
    if (t_ctx.empty()) return 201;  // CUDA_ERROR_INVALID_CONTEXT
    if (c) *c = t_ctx.back();
    t_ctx.pop_back();
    return 0;
}
EXPORT int cuCtxSynchronize() { return unsafe("cuCtxSynchronize") ? kCaptureUnsupported : 0; }
// Logs what it was given: an ELF file (a cubin) or not, and the SM of a cubin
// (the second byte of its e_flags).
EXPORT int cuModuleLoadData(void **m, const void *image) {
    if (unsafe("cuModuleLoadData")) return kCaptureUnsupported;
    const auto *p = static_cast<const unsigned char *>(image);
    const bool elf = p && p[0] == 0x7f && p[1] == 'E' && p[2] == 'L' && p[3] == 'F';
    unsigned flags = 0;
    if (elf) std::memcpy(&flags, p + 48, sizeof flags);
    logf("cuModuleLoadData elf=%d sm=%u", elf ? 1 : 0, (flags >> 8) & 0xFFu);
    *m = device_alloc(1);
    return 0;
}
EXPORT int cuModuleUnload(void *m) {
    device_free(m);
    return 0;
}
// Function handles name their entry point (every module "has" every entry),
// so launches can be told apart in the log.
std::mutex g_fn_mu;
std::map<std::string, void *> g_fn_by_name;
std::map<void *, std::string> g_fn_names;
void *function_named(const std::string &name) {
    std::lock_guard<std::mutex> lock(g_fn_mu);
    void *&f = g_fn_by_name[name];
    if (!f) {
        f = reinterpret_cast<void *>(uintptr_t(0xF00) + 16 * g_fn_by_name.size());
        g_fn_names[f] = name;
    }
    return f;
}
std::string function_name(void *f) {
    std::lock_guard<std::mutex> lock(g_fn_mu);
    auto it = g_fn_names.find(f);
    return it == g_fn_names.end() ? "?" : it->second;
}
EXPORT int cuModuleGetFunction(void **f, void *, const char *name) {
    *f = function_named(name);
    return 0;
}
// CUDA 12.4's module enumeration: a module of paskdnn's holds an entry and its
// split-K reduction; the double reports two functions and logs each cuFuncLoad.
EXPORT int cuModuleGetFunctionCount(unsigned *count, void *) {
    *count = 2;
    return 0;
}
EXPORT int cuModuleEnumerateFunctions(void **fns, unsigned n, void *) {
    for (unsigned i = 0; i < n; ++i) fns[i] = function_named("enumerated" + std::to_string(i));
    return 0;
}
EXPORT int cuFuncLoad(void *f) {
    logf("cuFuncLoad fn=%s", function_name(f).c_str());
    return 0;
}
EXPORT int cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned, unsigned, unsigned, unsigned smem,
                          void *stream, void **, void **) {
    if (knob("launch_fail") == "1") {
        logf("cuLaunchKernel stream=%p failed", stream);
        return 801;  // CUDA_ERROR_NOT_SUPPORTED
    }
    if (const int ms = knob_int("launch_sleep_ms", 0); ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    // No GPU code runs here: a launch only advances the stream's clock.
    const double us = std::atof(knob("time_native", "30").c_str());
    const std::string fn = function_name(f);
    if (auto rec = recording(stream)) {
        rec->nodes.push_back([us, fn, gx, gy, gz](void *s) {
            advance(s, us);
            logf("cuLaunchKernel stream=%p fn=%s grid=%u,%u,%u replay=1", s, fn.c_str(), gx, gy, gz);
        });
        logf("capture cuLaunchKernel stream=%p fn=%s grid=%u,%u,%u", stream, fn.c_str(), gx, gy, gz);
        return 0;
    }
    advance(stream, us);
    logf("cuLaunchKernel stream=%p fn=%s grid=%u,%u,%u smem=%u", stream, fn.c_str(), gx, gy, gz, smem);
    return 0;
}
EXPORT int cuMemAlloc_v2(unsigned long long *p, size_t n) {
    if (unsafe("cuMemAlloc")) return kCaptureUnsupported;
    *p = reinterpret_cast<uintptr_t>(device_alloc(n));
    return 0;
}
EXPORT int cuMemFree_v2(unsigned long long p) {
    if (unsafe("cuMemFree")) return kCaptureUnsupported;
    device_free(reinterpret_cast<void *>(uintptr_t(p)));
    return 0;
}
EXPORT int cuMemcpyHtoD_v2(unsigned long long d, const void *s, size_t n) {
    if (unsafe("cuMemcpyHtoD")) return kCaptureUnsupported;
    std::memcpy(reinterpret_cast<void *>(uintptr_t(d)), s, n);
    return 0;
}
EXPORT int cuMemcpyDtoH_v2(void *d, unsigned long long s, size_t n) {
    if (unsafe("cuMemcpyDtoH")) return kCaptureUnsupported;
    std::memcpy(d, reinterpret_cast<void *>(uintptr_t(s)), n);
    return 0;
}
EXPORT int cuMemcpyDtoD_v2(unsigned long long d, unsigned long long s, size_t n) {
    if (unsafe("cuMemcpyDtoD")) return kCaptureUnsupported;
    std::memmove(reinterpret_cast<void *>(uintptr_t(d)), reinterpret_cast<void *>(uintptr_t(s)), n);
    return 0;
}
EXPORT int cuStreamSynchronize(void *stream) {
    if (recording(stream)) {  // from any thread: the captured stream cannot be waited for
        unsafe("cuStreamSynchronize");
        std::lock_guard<std::mutex> lock(g_mu);
        g_captures[stream].invalidated = true;
        return kCaptureUnsupported;
    }
    return 0;
}
EXPORT int cuPointerGetAttribute(void *data, int attr, unsigned long long p) {
    if (attr != 2) return 1;
    *static_cast<unsigned *>(data) = is_device(uintptr_t(p)) ? 2u : 1u;  // DEVICE : HOST
    return 0;
}
EXPORT int cuGetErrorString(int, const char **s) {
    *s = "error from the CUDA double";
    return 0;
}
EXPORT int cuFuncSetAttribute(void *, int, int) { return 0; }
EXPORT int cuMemAllocAsync(unsigned long long *p, size_t n, void *stream) {
    if (t_ctx.empty()) return 201;  // CUDA_ERROR_INVALID_CONTEXT
    if (knob("oom_async") == "1") {
        logf("cuMemAllocAsync bytes=%zu stream=%p oom", n, stream);
        return 2;  // CUDA_ERROR_OUT_OF_MEMORY
    }
    *p = reinterpret_cast<uintptr_t>(device_alloc(n));
    if (auto rec = recording(stream)) {  // a graph memory node: the graph owns it
        rec->memory.push_back(reinterpret_cast<void *>(uintptr_t(*p)));
        logf("capture cuMemAllocAsync bytes=%zu stream=%p ptr=%p", n, stream, reinterpret_cast<void *>(uintptr_t(*p)));
        return 0;
    }
    logf("cuMemAllocAsync bytes=%zu stream=%p ptr=%p", n, stream, reinterpret_cast<void *>(uintptr_t(*p)));
    return 0;
}
// Memory pools: one handle per cuMemPoolCreate; allocations as cuMemAllocAsync's.
EXPORT int cuMemPoolCreate(void **pool, const void *props) {
    *pool = device_alloc(1);
    const int *f = static_cast<const int *>(props);  // allocType, handleTypes, location type, location id
    logf("cuMemPoolCreate pool=%p alloc_type=%d location_type=%d device=%d", *pool, f[0], f[2], f[3]);
    return 0;
}
EXPORT int cuMemPoolDestroy(void *pool) {
    logf("cuMemPoolDestroy pool=%p", pool);
    device_free(pool);
    return 0;
}
EXPORT int cuMemPoolSetAttribute(void *pool, int attr, void *value) {
    logf("cuMemPoolSetAttribute pool=%p attr=%d value=%llu", pool, attr,
         static_cast<unsigned long long>(*static_cast<uint64_t *>(value)));
    return 0;
}
EXPORT int cuMemAllocFromPoolAsync(unsigned long long *p, size_t n, void *pool, void *stream) {
    if (recording(stream)) {  // paskdnn takes cuMemAllocAsync while capturing
        logf("cuMemAllocFromPoolAsync during capture stream=%p", stream);
        return kCaptureUnsupported;
    }
    if (knob("oom_async") == "1") {
        logf("cuMemAllocFromPoolAsync bytes=%zu pool=%p stream=%p oom", n, pool, stream);
        return 2;  // CUDA_ERROR_OUT_OF_MEMORY
    }
    *p = reinterpret_cast<uintptr_t>(device_alloc(n));
    logf("cuMemAllocFromPoolAsync bytes=%zu pool=%p stream=%p ptr=%p", n, pool, stream,
         reinterpret_cast<void *>(uintptr_t(*p)));
    return 0;
}
EXPORT int cuMemFreeAsync(unsigned long long p, void *stream) {
    if (recording(stream)) {  // a graph's free node: the memory goes with the graph
        logf("capture cuMemFreeAsync ptr=%p stream=%p", reinterpret_cast<void *>(uintptr_t(p)), stream);
        return 0;
    }
    logf("cuMemFreeAsync ptr=%p stream=%p", reinterpret_cast<void *>(uintptr_t(p)), stream);
    device_free(reinterpret_cast<void *>(uintptr_t(p)));
    return 0;
}
EXPORT int cuStreamCreate(void **s, unsigned flags) {
    if (t_ctx.empty()) return 201;  // CUDA_ERROR_INVALID_CONTEXT: no context current
    *s = device_alloc(1);
    logf("cuStreamCreate stream=%p flags=%u", *s, flags);
    return 0;
}
EXPORT int cuStreamDestroy_v2(void *s) {
    logf("cuStreamDestroy stream=%p", s);
    device_free(s);
    return 0;
}

EXPORT int cuEventCreate(Event **e, unsigned) {
    *e = new Event;
    return 0;
}
EXPORT int cuEventDestroy_v2(Event *e) {
    delete e;
    return 0;
}
EXPORT int cuEventRecord(Event *e, void *stream) {
    {
        std::lock_guard<std::mutex> lock(g_mu);
        e->t = g_clock[stream];
    }
    logf("cuEventRecord stream=%p", stream);
    return 0;
}
EXPORT int cuEventQuery(Event *) { return 0; }
EXPORT int cuEventElapsedTime_v2(float *ms, Event *a, Event *b) {
    *ms = static_cast<float>((b->t - a->t) / 1000.0);
    return 0;
}
EXPORT int cuStreamIsCapturing(void *stream, int *status) {
    char self[32];
    std::snprintf(self, sizeof self, "%p", stream);
    *status = knob("capturing") == self || recording(stream) ? 1 : 0;  // CU_STREAM_CAPTURE_STATUS_ACTIVE
    return 0;
}
EXPORT int cuLaunchHostFunc(void *stream, void (*fn)(void *), void *data) {
    if (auto rec = recording(stream)) {  // a host node
        rec->nodes.push_back([fn, data](void *) { std::thread(fn, data).detach(); });
        logf("capture cuLaunchHostFunc stream=%p", stream);
        return 0;
    }
    std::thread(fn, data).detach();
    return 0;
}

EXPORT int cuStreamBeginCapture_v2(void *stream, int mode) {
    if (!stream) {
        logf("cuStreamBeginCapture stream=(nil) refused");
        return kCaptureUnsupported;  // the legacy stream cannot be captured
    }
    {
        std::lock_guard<std::mutex> lock(g_mu);
        if (g_captures.count(stream)) return 401;  // CUDA_ERROR_ILLEGAL_STATE
        Capture c;
        c.thread = std::this_thread::get_id();
        c.mode = mode;
        g_captures.emplace(stream, std::move(c));
    }
    logf("cuStreamBeginCapture stream=%p mode=%d", stream, mode);
    return 0;
}
EXPORT int cuStreamEndCapture(void *stream, void **graph) {
    Capture c;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        auto it = g_captures.find(stream);
        if (it == g_captures.end()) return 401;  // CUDA_ERROR_ILLEGAL_STATE: not capturing
        if (it->second.mode != 2 && it->second.thread != std::this_thread::get_id())
            return 904;  // CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD
        c = std::move(it->second);
        g_captures.erase(it);
    }
    *graph = nullptr;
    if (c.invalidated) {
        logf("cuStreamEndCapture stream=%p invalidated", stream);
        return 901;  // CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
    }
    void *g = device_alloc(1);
    {
        std::lock_guard<std::mutex> lock(g_mu);
        g_graphs[g] = c.rec;
    }
    *graph = g;
    logf("cuStreamEndCapture stream=%p graph=%p nodes=%zu", stream, g, c.rec->nodes.size());
    return 0;
}
EXPORT int cuGraphInstantiateWithFlags(void **exec, void *graph, unsigned long long) {
    if (knob("instantiate_fail") == "1") return 2;  // CUDA_ERROR_OUT_OF_MEMORY
    std::shared_ptr<Recording> rec;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        auto it = g_graphs.find(graph);
        if (it == g_graphs.end()) return 400;  // CUDA_ERROR_INVALID_HANDLE
        rec = it->second;
    }
    void *e = device_alloc(1);
    {
        std::lock_guard<std::mutex> lock(g_mu);
        g_execs[e] = rec;
    }
    *exec = e;
    logf("cuGraphInstantiate graph=%p exec=%p", graph, e);
    return 0;
}
EXPORT int cuGraphLaunch(void *exec, void *stream) {
    std::shared_ptr<Recording> rec;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        auto it = g_execs.find(exec);
        if (it == g_execs.end()) return 400;  // CUDA_ERROR_INVALID_HANDLE
        rec = it->second;
    }
    logf("cuGraphLaunch exec=%p stream=%p nodes=%zu", exec, stream, rec->nodes.size());
    for (auto &node : rec->nodes) node(stream);
    return 0;
}
EXPORT int cuGraphExecDestroy(void *exec) {
    std::shared_ptr<Recording> rec;  // released outside the lock
    {
        std::lock_guard<std::mutex> lock(g_mu);
        auto it = g_execs.find(exec);
        if (it == g_execs.end()) return 400;
        rec = std::move(it->second);
        g_execs.erase(it);
    }
    device_free(exec);
    logf("cuGraphExecDestroy exec=%p", exec);
    return 0;
}
EXPORT int cuGraphDestroy(void *graph) {
    std::shared_ptr<Recording> rec;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        auto it = g_graphs.find(graph);
        if (it == g_graphs.end()) return 400;
        rec = std::move(it->second);
        g_graphs.erase(it);
    }
    device_free(graph);
    logf("cuGraphDestroy graph=%p", graph);
    return 0;
}

// ---- cuDNN ---------------------------------------------------------------------------------

EXPORT size_t cudnnGetVersion() { return static_cast<size_t>(knob_int("cudnn_version", 91900)); }
EXPORT const char *cudnnGetErrorString(int s) {
    return s == 3000 ? "CUDNN_STATUS_NOT_SUPPORTED" : s == 0 ? "CUDNN_STATUS_SUCCESS" : "CUDNN_STATUS_(double)";
}
EXPORT void cudnnGetLastErrorString(char *m, size_t n) {
    if (n) m[0] = '\0';
}
EXPORT int cudnnCreate(Handle **h) {
    if (knob("create_fail") == "1") return 4000;
    *h = new Handle;
    logf("cudnnCreate handle=%p", static_cast<void *>(*h));
    return 0;
}
EXPORT int cudnnDestroy(Handle *h) {
    logf("cudnnDestroy handle=%p stream=%p", static_cast<void *>(h), h->stream);
    delete h;
    return 0;
}
EXPORT int cudnnSetStream(Handle *h, void *s) {
    h->stream = s;
    logf("cudnnSetStream handle=%p stream=%p", static_cast<void *>(h), s);
    return 0;
}
EXPORT int cudnnBackendCreateDescriptor(int type, Desc **d) {
    *d = new Desc{type, {}, {}};
    return 0;
}
EXPORT int cudnnBackendDestroyDescriptor(Desc *d) {
    if (d && d->type == 16) logf("destroy variant_pack");
    delete d;
    return 0;
}
EXPORT int cudnnBackendSetAttribute(Desc *d, int name, int type, int64_t count, const void *value) {
    if (!d || (count > 0 && !value)) return 2002;
    const char *p = static_cast<const char *>(value);
    d->attrs[name].assign(p, p + type_size(type) * size_t(count));
    d->counts[name] = count;
    return 0;
}
EXPORT int cudnnBackendFinalize(Desc *d) {
    switch (d->type) {
    case 15:  // operation graph
        if (knob("graph_fail") == "1") return 3001;
        if (knob("graph_oom") == "1") {
            logf("graph out-of-memory");
            return 4004;  // CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED
        }
        logf("graph%s", graph_text(d).c_str());
        break;
    case 4: {  // heuristics
        const int mode = d->get<int32_t>(200).empty() ? -1 : d->get<int32_t>(200)[0];
        d->results = ids(mode == 3 ? knob("heur_a", "10,11,12") : knob("heur_fallback", "10,20"));
        logf("heuristics mode=%s configs=%s", mode == 3 ? "A" : "fallback", join(d->results).c_str());
        break;
    }
    case 5: {  // execution plan
        Desc *cfg = d->desc(401);
        const int64_t engine = cfg ? cfg->engine : -1;
        if (in(ids(knob("fail")), engine)) {
            logf("finalize plan engine=%lld not-supported", static_cast<long long>(engine));
            return 3000;
        }
        if (const int ms = std::atoi(knob("finalize_ms", "0").c_str()); ms > 0)  // a slow build
            std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        d->engine = engine;
        d->workspace = std::atoll(knob("ws_" + std::to_string(engine), "0").c_str());
        logf("finalize plan engine=%lld workspace=%lld", static_cast<long long>(engine),
             static_cast<long long>(d->workspace));
        break;
    }
    case 16:  // variant pack
        logf("finalize variant_pack uids=%s", join(d->get<int64_t>(1000)).c_str());
        break;
    default:
        break;
    }
    d->finalized = true;
    return 0;
}
EXPORT int cudnnBackendGetAttribute(Desc *d, int name, int type, int64_t requested, int64_t *count, void *out) {
    (void)type;
    if (name == 202) {  // heuristics results: configurations
        if (requested == 0) {
            *count = int64_t(d->results.size());
            return 0;
        }
        Desc **cfgs = static_cast<Desc **>(out);
        const int64_t n = std::min<int64_t>(requested, int64_t(d->results.size()));
        for (int64_t i = 0; i < n; ++i) cfgs[i]->engine = d->results[size_t(i)];
        *count = n;
        return 0;
    }
    if (name == 300) {  // the configuration's engine
        static_cast<Desc **>(out)[0]->engine = d->engine;
        *count = 1;
        return 0;
    }
    if (name == 1305) {  // behaviour notes
        const bool rtc = in(ids(knob("rtc")), d->engine);
        if (rtc && requested > 0) static_cast<int32_t *>(out)[0] = 0;  // RUNTIME_COMPILATION
        *count = rtc ? 1 : 0;
        return 0;
    }
    if (name == 1301) {
        *static_cast<int64_t *>(out) = d->engine;
        *count = 1;
        return 0;
    }
    if (name == 402) {
        *static_cast<int64_t *>(out) = d->workspace;
        *count = 1;
        return 0;
    }
    return 2000;
}
EXPORT int cudnnBackendExecute(Handle *h, Desc *plan, Desc *vp) {
    auto uids = vp->get<int64_t>(1000);
    auto ptrs = vp->get<void *>(1001);
    auto ws = vp->get<void *>(1003);
    std::string data;
    for (size_t i = 0; i < uids.size() && i < ptrs.size(); ++i)
        data += (i ? "," : "") + std::to_string(uids[i]) + ":" +
                (is_device(reinterpret_cast<uintptr_t>(ptrs[i])) ? "dev" : "HOST");
    const double us = std::atof(knob("time_" + std::to_string(plan->engine), "10").c_str());
    const long long engine = plan->engine;
    const std::string wstext =
        ws.empty() || !ws[0] ? "none" : (is_device(reinterpret_cast<uintptr_t>(ws[0])) ? "dev" : "HOST");
    // The digest knob: uid 3 is paskdnn's output (y), the others its inputs.
    void *y = nullptr;
    std::vector<const void *> inputs;
    for (size_t i = 0; i < uids.size() && i < ptrs.size(); ++i) {
        if (uids[i] == 3) y = ptrs[i];
        else inputs.push_back(ptrs[i]);
    }
    void *handle = h;
    if (auto rec = recording(h->stream)) {
        rec->nodes.push_back([=](void *s) {
            advance(s, us);
            write_digest(y, engine, inputs);
            logf("cudnnBackendExecute handle=%p stream=%p engine=%lld data=%s workspace=%s replay=1", handle, s,
                 engine, data.c_str(), wstext.c_str());
        });
        logf("capture cudnnBackendExecute handle=%p stream=%p engine=%lld data=%s workspace=%s", handle, h->stream,
             engine, data.c_str(), wstext.c_str());
        return 0;
    }
    advance(h->stream, us);
    write_digest(y, engine, inputs);
    logf("cudnnBackendExecute handle=%p stream=%p engine=%lld ctx=%p data=%s workspace=%s",
         static_cast<void *>(h), h->stream, engine, t_ctx.empty() ? nullptr : t_ctx.back(), data.c_str(),
         wstext.c_str());
    return 0;
}

// legacy pooling
struct Tensor4d {
    int dt = -1, n = 0, c = 0, h = 0, w = 0, ns = 0, cs = 0, hs = 0, ws = 0;
};
struct Pooling {
    int mode = -1, nan = -1, wh = 0, ww = 0, ph = 0, pw = 0, sh = 0, sw = 0;
};
EXPORT int cudnnCreateTensorDescriptor(Tensor4d **t) {
    *t = new Tensor4d;
    return 0;
}
EXPORT int cudnnDestroyTensorDescriptor(Tensor4d *t) {
    delete t;
    return 0;
}
EXPORT int cudnnSetTensor4dDescriptorEx(Tensor4d *t, int dt, int n, int c, int h, int w, int ns, int cs, int hs,
                                        int ws) {
    *t = Tensor4d{dt, n, c, h, w, ns, cs, hs, ws};
    return 0;
}
EXPORT int cudnnCreatePoolingDescriptor(Pooling **p) {
    *p = new Pooling;
    return 0;
}
EXPORT int cudnnDestroyPoolingDescriptor(Pooling *p) {
    delete p;
    return 0;
}
EXPORT int cudnnSetPooling2dDescriptor(Pooling *p, int mode, int nan, int wh, int ww, int ph, int pw, int sh, int sw) {
    *p = Pooling{mode, nan, wh, ww, ph, pw, sh, sw};
    return 0;
}
EXPORT int cudnnPoolingForward(Handle *h, Pooling *p, const void *alpha, Tensor4d *xd, const void *x,
                               const void *beta, Tensor4d *yd, void *y) {
    if (auto rec = recording(h->stream)) {
        void *handle = h;
        rec->nodes.push_back([handle, x, y](void *s) {
            write_digest(y, -2, {x});
            logf("cudnnPoolingForward handle=%p stream=%p replay=1", handle, s);
        });
        logf("capture cudnnPoolingForward handle=%p stream=%p", handle, h->stream);
        return 0;
    }
    write_digest(y, -2, {x});
    logf("cudnnPoolingForward handle=%p stream=%p mode=%d window=%dx%d pad=%d,%d stride=%d,%d alpha=%g beta=%g "
         "x=[%d,%d,%d,%d/%d,%d,%d,%d]dt%d y=[%d,%d,%d,%d/%d,%d,%d,%d] xdev=%d ydev=%d",
         static_cast<void *>(h), h->stream, p->mode, p->wh, p->ww, p->ph, p->pw, p->sh, p->sw,
         double(*static_cast<const float *>(alpha)), double(*static_cast<const float *>(beta)), xd->n, xd->c, xd->h,
         xd->w, xd->ns, xd->cs, xd->hs, xd->ws, xd->dt, yd->n, yd->c, yd->h, yd->w, yd->ns, yd->cs, yd->hs, yd->ws,
         int(is_device(reinterpret_cast<uintptr_t>(x))), int(is_device(reinterpret_cast<uintptr_t>(y))));
    return 0;
}

// ---- NVRTC (only the version and target queries answer; nothing compiles) -------------

namespace {
std::vector<int> nvrtc_archs() {
    std::vector<int> out;
    std::stringstream ss(knob("nvrtc_archs", "80,86,87,89,90"));
    for (std::string a; std::getline(ss, a, ',');)
        if (!a.empty()) out.push_back(std::atoi(a.c_str()));
    return out;
}
const char kNvrtcLog[] = "the CUDA test double's NVRTC compiles nothing";
}  // namespace

EXPORT int nvrtcVersion(int *major, int *minor) {
    const int v = knob_int("nvrtc_version", 12040);
    *major = v / 1000;
    *minor = v % 1000 / 10;
    return 0;
}
EXPORT int nvrtcGetNumSupportedArchs(int *n) {
    if (knob("nvrtc_archs") == "none") return 7;  // NVRTC_ERROR_INVALID_OPTION: as if absent
    *n = static_cast<int>(nvrtc_archs().size());
    return 0;
}
EXPORT int nvrtcGetSupportedArchs(int *archs) {
    if (knob("nvrtc_archs") == "none") return 7;
    for (int a : nvrtc_archs()) *archs++ = a;
    return 0;
}
EXPORT const char *nvrtcGetErrorString(int r) { return r == 0 ? "NVRTC_SUCCESS" : "NVRTC_ERROR_COMPILATION"; }
EXPORT int nvrtcCreateProgram(void **prog, const char *, const char *, int, const char *const *, const char *const *) {
    *prog = new int(0);
    return 0;
}
EXPORT int nvrtcCompileProgram(void *, int, const char *const *) { return 6; }  // NVRTC_ERROR_COMPILATION
EXPORT int nvrtcGetProgramLogSize(void *, size_t *n) {
    *n = sizeof kNvrtcLog;
    return 0;
}
EXPORT int nvrtcGetProgramLog(void *, char *out) {
    std::memcpy(out, kNvrtcLog, sizeof kNvrtcLog);
    return 0;
}
EXPORT int nvrtcGetCUBINSize(void *, size_t *n) {
    *n = 0;
    return 0;
}
EXPORT int nvrtcGetCUBIN(void *, char *) { return 0; }
EXPORT int nvrtcDestroyProgram(void **prog) {
    delete static_cast<int *>(*prog);
    *prog = nullptr;
    return 0;
}
