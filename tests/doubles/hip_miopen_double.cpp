// A test double of the HIP runtime, hiprtc and MIOpen: exports the C entry
// points paskdnn dlsyms (src/backends/hip/hip_api.*, src/providers/miopen/
// miopen_api.*), records every call into a log the tests read, and computes
// MIOpen's results on the CPU. Built only by the tests (tests/test_hip.py
// compiles it with the system C++ compiler); never shipped.
//
//  * device memory is host memory (malloc), tracked so pointer checks work;
//  * hiprtc "compiles" a kernel source into a text code object
//    ("PASKDOUBLE-CO1\n" + options + "\n" + source) that hipModuleLoadData
//    accepts, as it accepts an AMDGPU ELF from a real hiprtc; hipModuleGetFunction
//    finds entries named in the source (or the ELF's string tables); kernels
//    cannot run here (hipModuleLaunchKernel fails with hipErrorNotSupported);
//  * MIOpen lists three convolution solutions (ids 85, 26, 11, by time), with
//    a workspace for 85; CompileSolution marks (problem, solution) compiled;
//    Immediate checks workspace and pointers and computes the convolution in
//    double precision; bias, tensor add, activation and pooling likewise.
// Behaviour switches: double_set(key, value) (see cfg() uses below).
#include <algorithm>
#include <pthread.h>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
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
std::vector<std::string> g_log;
std::string g_log_text;
std::map<std::string, std::string> g_cfg;
std::map<uintptr_t, size_t> g_allocs;  // device allocations: base -> bytes
std::set<std::string> g_compiled;      // "<problem>#<solution>" compiled by CompileSolution
int g_next_handle = 1;

// A switch not set with double_set comes from $PASKDNN_DOUBLE_<KEY> (upper
// case), else dflt: what a library reports while it is being loaded is set
// that way (hip_version: hipRuntimeGetVersion, default 60032830;
// hip_driver_version: hipDriverGetVersion, default the runtime's;
// hiprtc_version: hiprtcVersion as major*100+minor, default 600;
// miopen_major / miopen_minor: miopenGetVersion, default 3.2).
std::string cfg(const std::string &key, const std::string &dflt = "") {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_cfg.find(key);
    if (it != g_cfg.end()) return it->second;
    std::string name = "PASKDNN_DOUBLE_";
    for (char c : key) name += static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    const char *env = std::getenv(name.c_str());
    return env ? env : dflt;
}

void log(const std::string &line) {
    const std::string tid = std::to_string(static_cast<unsigned long>(pthread_self()));  // what std::thread::id prints
    std::lock_guard<std::mutex> lock(g_mu);
    g_log.push_back(line + " tid=" + tid);
}

bool is_device(const void *p, size_t bytes = 1) {
    std::lock_guard<std::mutex> lock(g_mu);
    const auto u = reinterpret_cast<uintptr_t>(p);
    auto it = g_allocs.upper_bound(u);
    if (it == g_allocs.begin()) return false;
    --it;
    return u >= it->first && u + bytes <= it->first + it->second;
}

bool in_list(const std::string &list, const std::string &item) {
    std::string s = "," + list + ",";
    return s.find("," + item + ",") != std::string::npos;
}

// ---- element types (miopenDataType_t: 0 half, 1 float, 5 bfloat16) ----
double half_to_double(uint16_t h) {
    const int sign = h >> 15, exp = (h >> 10) & 31, man = h & 1023;
    double v;
    if (exp == 0) v = std::ldexp(man, -24);
    else if (exp == 31) v = man ? NAN : INFINITY;
    else v = std::ldexp(man + 1024, exp - 25);
    return sign ? -v : v;
}
uint16_t float_to_half(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const int exp = int((x >> 23) & 255) - 127 + 15;
    uint32_t man = x & 0x7fffffu;
    if (((x >> 23) & 255) == 255) return uint16_t(sign | 0x7c00u | (man ? 0x200u : 0u));
    if (exp >= 31) return uint16_t(sign | 0x7c00u);
    if (exp <= 0) {
        if (exp < -10) return uint16_t(sign);
        man |= 0x800000u;
        const int shift = 14 - exp;
        uint32_t h = man >> shift;
        const uint32_t rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) ++h;
        return uint16_t(sign | h);
    }
    uint32_t h = (uint32_t(exp) << 10) | (man >> 13);
    const uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;
    return uint16_t(sign | h);
}
double load(const void *p, int dt, int64_t i) {
    if (dt == 1) return static_cast<const float *>(p)[i];
    const uint16_t v = static_cast<const uint16_t *>(p)[i];
    if (dt == 0) return half_to_double(v);
    uint32_t u = uint32_t(v) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
void store(void *p, int dt, int64_t i, double v) {
    const float f = static_cast<float>(v);
    if (dt == 1) {
        static_cast<float *>(p)[i] = f;
    } else if (dt == 0) {
        static_cast<uint16_t *>(p)[i] = float_to_half(f);
    } else {
        uint32_t u;
        std::memcpy(&u, &f, 4);
        static_cast<uint16_t *>(p)[i] = uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
}
int elem_size(int dt) { return dt == 1 ? 4 : 2; }

}  // namespace

// ---- test controls ------------------------------------------------------------------

EXPORT const char *double_log() {
    std::lock_guard<std::mutex> lock(g_mu);
    g_log_text.clear();
    for (const auto &l : g_log) g_log_text += l + "\n";
    return g_log_text.c_str();
}
EXPORT void double_log_clear() {
    std::lock_guard<std::mutex> lock(g_mu);
    g_log.clear();
}
EXPORT void double_set(const char *key, const char *value) {
    std::lock_guard<std::mutex> lock(g_mu);
    if (value) g_cfg[key] = value;
    else g_cfg.erase(key);
}
EXPORT void double_reset() {
    std::lock_guard<std::mutex> lock(g_mu);
    g_cfg.clear();
    g_log.clear();
    g_compiled.clear();
}
EXPORT int double_live_allocations() {
    std::lock_guard<std::mutex> lock(g_mu);
    return static_cast<int>(g_allocs.size());
}

// ---- HIP runtime ---------------------------------------------------------------------

namespace {
thread_local int t_device = 0;
struct Module {
    std::string text;
};
struct Function {
    std::string name;
};
constexpr int hipSuccess = 0, hipErrorInvalidValue = 1, hipErrorOutOfMemory = 2, hipErrorNoDevice = 100,
              hipErrorInvalidDevice = 101, hipErrorInvalidImage = 200, hipErrorNotFound = 500,
              hipErrorNotSupported = 801;
const char kCodeMagic[] = "PASKDOUBLE-CO1\n";
int devices() { return std::atoi(cfg("devices", "1").c_str()); }
}  // namespace

EXPORT int hipInit(unsigned flags) {
    log("hipInit flags=" + std::to_string(flags));
    return hipSuccess;
}
EXPORT int hipGetDeviceCount(int *n) {
    *n = devices();
    log("hipGetDeviceCount n=" + std::to_string(*n));
    return *n > 0 ? hipSuccess : hipErrorNoDevice;
}
EXPORT int hipGetDevice(int *d) {
    *d = t_device;
    return hipSuccess;
}
EXPORT int hipSetDevice(int d) {
    if (d < 0 || d >= devices()) return hipErrorInvalidDevice;
    t_device = d;
    return hipSuccess;
}
EXPORT int hipRuntimeGetVersion(int *v) {
    *v = std::atoi(cfg("hip_version", "60032830").c_str());  // "6.0.32830", as ROCm 6.0 reports it
    return hipSuccess;
}
EXPORT int hipDriverGetVersion(int *v) {
    *v = std::atoi(cfg("hip_driver_version", cfg("hip_version", "60032830")).c_str());
    return hipSuccess;
}
EXPORT int hipGetDevicePropertiesR0600(void *props, int device) {
    if (device < 0 || device >= devices()) return hipErrorInvalidDevice;
    char *p = static_cast<char *>(props);
    std::memset(p, 0, 1472);  // sizeof(hipDeviceProp_tR0600)
    std::strcpy(p, "paskdnn test double");
    const std::string arch = cfg("arch", "gfx90a:sramecc+:xnack-");
    std::strncpy(p + 1160, arch.c_str(), 255);  // gcnArchName
    log("hipGetDevicePropertiesR0600 device=" + std::to_string(device));
    return hipSuccess;
}
EXPORT const char *hipGetErrorString(int e) {
    switch (e) {
    case hipSuccess: return "hipSuccess";
    case hipErrorInvalidValue: return "hipErrorInvalidValue";
    case hipErrorOutOfMemory: return "hipErrorOutOfMemory";
    case hipErrorNoDevice: return "hipErrorNoDevice";
    case hipErrorInvalidImage: return "hipErrorInvalidImage";
    case hipErrorNotFound: return "hipErrorNotFound";
    case hipErrorNotSupported: return "hipErrorNotSupported (test double: cannot run device code)";
    default: return "hipErrorUnknown";
    }
}
EXPORT int hipMalloc(void **p, size_t bytes) {
    const std::string limit = cfg("malloc_limit");
    if (!limit.empty() && bytes > std::strtoull(limit.c_str(), nullptr, 10)) {
        log("hipMalloc bytes=" + std::to_string(bytes) + " -> out of memory");
        return hipErrorOutOfMemory;
    }
    *p = std::malloc(bytes ? bytes : 1);
    {
        std::lock_guard<std::mutex> lock(g_mu);
        g_allocs[reinterpret_cast<uintptr_t>(*p)] = bytes ? bytes : 1;
    }
    log("hipMalloc bytes=" + std::to_string(bytes));
    return hipSuccess;
}
EXPORT int hipFree(void *p) {
    {
        std::lock_guard<std::mutex> lock(g_mu);
        if (!g_allocs.erase(reinterpret_cast<uintptr_t>(p))) return hipErrorInvalidValue;
    }
    std::free(p);
    log("hipFree");
    return hipSuccess;
}
EXPORT int hipMallocAsync(void **p, size_t bytes, void *stream) {
    const int r = hipMalloc(p, bytes);
    std::ostringstream s;
    s << "hipMallocAsync bytes=" << bytes << " stream=" << stream << " ptr=" << (r == hipSuccess ? *p : nullptr);
    log(s.str());
    return r;
}
EXPORT int hipFreeAsync(void *p, void *stream) {
    std::ostringstream s;
    s << "hipFreeAsync ptr=" << p << " stream=" << stream;
    log(s.str());
    return hipFree(p);
}
EXPORT int hipMemcpy(void *dst, const void *src, size_t bytes, int kind) {
    log("hipMemcpy bytes=" + std::to_string(bytes) + " kind=" + std::to_string(kind));
    if ((kind == 1 || kind == 3) && !is_device(dst, bytes)) return hipErrorInvalidValue;
    if ((kind == 2 || kind == 3) && !is_device(src, bytes)) return hipErrorInvalidValue;
    std::memmove(dst, src, bytes);
    return hipSuccess;
}
EXPORT int hipStreamSynchronize(void *stream) {
    std::ostringstream s;
    s << "hipStreamSynchronize stream=" << stream;
    log(s.str());
    return hipSuccess;
}
struct DoublePointerAttributes {
    int type, device;
    void *device_pointer, *host_pointer;
    int is_managed;
    unsigned flags;
};
EXPORT int hipPointerGetAttributes(DoublePointerAttributes *a, const void *p) {
    std::memset(a, 0, sizeof *a);
    if (is_device(p)) {
        a->type = 2;  // hipMemoryTypeDevice (HIP >= 6.0 numbering)
        a->device_pointer = const_cast<void *>(p);
    } else {
        a->type = 0;  // hipMemoryTypeUnregistered
    }
    return hipSuccess;
}
// A real hiprtc's output is an AMDGPU ELF (e_machine 224); its size is where
// the section header table ends.
bool amdgpu_elf(const unsigned char *b, size_t *size) {
    if (std::memcmp(b, "\x7f" "ELF", 4) != 0 || b[4] != 2) return false;
    uint16_t machine, shentsize, shnum;
    uint64_t shoff;
    std::memcpy(&machine, b + 18, 2);
    std::memcpy(&shoff, b + 0x28, 8);
    std::memcpy(&shentsize, b + 0x3A, 2);
    std::memcpy(&shnum, b + 0x3C, 2);
    *size = size_t(shoff + uint64_t(shentsize) * shnum);
    return machine == 224;
}

EXPORT int hipModuleLoadData(Module **m, const void *image) {
    const char *text = static_cast<const char *>(image);
    size_t elf_size = 0;
    if (amdgpu_elf(static_cast<const unsigned char *>(image), &elf_size)) {
        *m = new Module{std::string(text, elf_size)};
        log("hipModuleLoadData elf machine=224 bytes=" + std::to_string(elf_size));
        return hipSuccess;
    }
    if (std::strncmp(text, kCodeMagic, sizeof kCodeMagic - 1) != 0) {
        log("hipModuleLoadData -> invalid image");
        return hipErrorInvalidImage;
    }
    *m = new Module{text};
    log("hipModuleLoadData bytes=" + std::to_string(std::strlen(text)));
    return hipSuccess;
}
EXPORT int hipModuleUnload(Module *m) {
    log("hipModuleUnload");
    delete m;
    return hipSuccess;
}
EXPORT int hipModuleGetFunction(Function **f, Module *m, const char *name) {
    const bool elf = m->text.compare(0, 4, "\x7f" "ELF") == 0;  // the symbol's name in .dynstr / .strtab
    const bool found = elf ? m->text.find(std::string(name) + std::string(1, '\0')) != std::string::npos
                           : m->text.find(std::string(") ") + name + "(const ") != std::string::npos ||  // after __launch_bounds__(...)
                                 m->text.find(std::string("void ") + name + "(") != std::string::npos;
    log(std::string("hipModuleGetFunction name=") + name + (found ? "" : " -> not found"));
    if (!found) return hipErrorNotFound;
    static std::mutex fmu;
    static std::map<std::string, Function *> functions;  // leaked on purpose: handles stay valid
    std::lock_guard<std::mutex> lock(fmu);
    auto &slot = functions[name];
    if (!slot) slot = new Function{name};
    *f = slot;
    return hipSuccess;
}
// Events: a recorded event is complete at once; the elapsed time between two
// is double_set("event_ms", ...) (default 0.25 ms).
namespace {
struct Event {
    int id;
    bool recorded = false;
};
int g_next_event = 1;
}  // namespace
EXPORT int hipEventCreate(Event **e) {
    std::lock_guard<std::mutex> lock(g_mu);
    *e = new Event{g_next_event++};
    return hipSuccess;
}
EXPORT int hipEventDestroy(Event *e) {
    delete e;
    return hipSuccess;
}
EXPORT int hipEventRecord(Event *e, void *stream) {
    e->recorded = true;
    std::ostringstream s;
    s << "hipEventRecord event=" << e->id << " stream=" << stream;
    log(s.str());
    return hipSuccess;
}
EXPORT int hipEventQuery(Event *e) { return e->recorded ? hipSuccess : 600; }
EXPORT int hipEventElapsedTime(float *ms, Event *start, Event *stop) {
    if (!start->recorded || !stop->recorded) return hipErrorInvalidValue;
    *ms = std::strtof(cfg("event_ms", "0.25").c_str(), nullptr);
    log("hipEventElapsedTime start=" + std::to_string(start->id) + " stop=" + std::to_string(stop->id));
    return hipSuccess;
}

EXPORT int hipModuleLaunchKernel(Function *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                                 unsigned bz, unsigned shared, void *stream, void **, void **) {
    std::ostringstream s;
    s << "hipModuleLaunchKernel name=" << f->name << " grid=" << gx << "," << gy << "," << gz << " block=" << bx << ","
      << by << "," << bz << " shared=" << shared << " stream=" << stream;
    log(s.str());
    return hipErrorNotSupported;
}

// ---- hiprtc -----------------------------------------------------------------------------

namespace {
struct Program {
    std::string source, name, log, code;
};
}  // namespace

EXPORT int hiprtcVersion(int *major, int *minor) {
    const int v = std::atoi(cfg("hiprtc_version", "600").c_str());
    *major = v / 100;
    *minor = v % 100;
    return 0;
}
EXPORT const char *hiprtcGetErrorString(int r) {
    return r == 0 ? "HIPRTC_SUCCESS" : r == 6 ? "HIPRTC_ERROR_COMPILATION" : "HIPRTC_ERROR_INVALID_INPUT";
}
EXPORT int hiprtcCreateProgram(Program **prog, const char *src, const char *name, int, const char **, const char **) {
    *prog = new Program{src, name ? name : "", "", ""};
    return 0;
}
EXPORT int hiprtcCompileProgram(Program *prog, int n, const char **options) {
    std::string opts;
    for (int i = 0; i < n; ++i) opts += std::string(i ? " " : "") + options[i];
    log("hiprtcCompileProgram name=" + prog->name + " options=" + opts);
    if (!cfg("hiprtc_fail").empty()) {
        prog->log = prog->name + ":1:1: error: " + cfg("hiprtc_fail");
        return 6;
    }
    prog->code = std::string(kCodeMagic) + opts + "\n" + prog->source;
    return 0;
}
EXPORT int hiprtcGetProgramLogSize(Program *prog, size_t *size) {
    *size = prog->log.size() + 1;
    return 0;
}
EXPORT int hiprtcGetProgramLog(Program *prog, char *out) {
    std::memcpy(out, prog->log.c_str(), prog->log.size() + 1);
    return 0;
}
EXPORT int hiprtcGetCodeSize(Program *prog, size_t *size) {
    *size = prog->code.size();
    return 0;
}
EXPORT int hiprtcGetCode(Program *prog, char *out) {
    std::memcpy(out, prog->code.data(), prog->code.size());
    return 0;
}
EXPORT int hiprtcDestroyProgram(Program **prog) {
    delete *prog;
    *prog = nullptr;
    return 0;
}

// ---- MIOpen -----------------------------------------------------------------------------

namespace {
constexpr int miopenStatusSuccess = 0, miopenStatusBadParm = 3, miopenStatusInternalError = 5;
struct Handle {
    int id;
    void *stream = nullptr;
};
struct Tensor {
    int dt = 1;
    int dims[4] = {0, 0, 0, 0}, strides[4] = {0, 0, 0, 0};
    std::string str() const {
        return std::to_string(dims[0]) + "x" + std::to_string(dims[1]) + "x" + std::to_string(dims[2]) + "x" +
               std::to_string(dims[3]);
    }
    int64_t at(int n, int c, int h, int w) const {
        return int64_t(n) * strides[0] + int64_t(c) * strides[1] + int64_t(h) * strides[2] + int64_t(w) * strides[3];
    }
    int64_t bytes() const {
        int64_t last = 0;
        for (int i = 0; i < 4; ++i) last += int64_t(dims[i] - 1) * strides[i];
        return (last + 1) * elem_size(dt);
    }
};
struct Conv {
    int mode = 0, pad[2] = {0, 0}, stride[2] = {1, 1}, dil[2] = {1, 1}, groups = 1;
};
struct Pool {
    int mode = 0, k[2] = {1, 1}, pad[2] = {0, 0}, stride[2] = {1, 1};
};
struct Activ {
    int mode = 0;
    double alpha = 0, beta = 0, gamma = 0;
};
struct ConvSolution {
    float time;
    size_t workspace_size;
    uint64_t solution_id;
    int algorithm;
};

std::string problem_text(const Tensor *w, const Tensor *x, const Conv *c) {
    return "x=" + x->str() + " w=" + w->str() + " dt=" + std::to_string(x->dt) + " g=" + std::to_string(c->groups) +
           " pad=" + std::to_string(c->pad[0]) + "," + std::to_string(c->pad[1]) + " stride=" +
           std::to_string(c->stride[0]) + "," + std::to_string(c->stride[1]) + " dil=" + std::to_string(c->dil[0]) +
           "," + std::to_string(c->dil[1]);
}

// Checks the descriptors agree (as MIOpen does before any solution query).
bool conv_shapes_ok(const Tensor *w, const Tensor *x, const Conv *c, const Tensor *y) {
    if (x->dt != w->dt || x->dt != y->dt || c->groups < 1) return false;
    if (x->dims[1] % c->groups || w->dims[0] % c->groups || w->dims[1] * c->groups != x->dims[1]) return false;
    for (int i = 0; i < 2; ++i) {
        const int in = x->dims[2 + i], k = w->dims[2 + i];
        const int out = (in + 2 * c->pad[i] - c->dil[i] * (k - 1) - 1) / c->stride[i] + 1;
        if (out != y->dims[2 + i]) return false;
    }
    return y->dims[0] == x->dims[0] && y->dims[1] == w->dims[0];
}

std::vector<ConvSolution> solutions_for(const Tensor *w, const Tensor *, const Conv *, const Tensor *y) {
    // 85: a GEMM solution with an im2col workspace; 26: direct; 11: implicit GEMM
    const size_t col = size_t(w->dims[1]) * w->dims[2] * w->dims[3] * y->dims[2] * y->dims[3] * 4;
    return {{1.0f, col, 85, 0}, {2.0f, 0, 26, 1}, {3.0f, 0, 11, 5}};
}

size_t workspace_of(const Tensor *w, const Tensor *x, const Conv *c, const Tensor *y, uint64_t id) {
    for (const auto &s : solutions_for(w, x, c, y))
        if (s.solution_id == id) return s.workspace_size;
    return 0;
}
}  // namespace

EXPORT int miopenGetVersion(size_t *major, size_t *minor, size_t *patch) {
    *major = std::strtoull(cfg("miopen_major", "3").c_str(), nullptr, 10);
    *minor = std::strtoull(cfg("miopen_minor", "2").c_str(), nullptr, 10);
    *patch = 0;
    return miopenStatusSuccess;
}
EXPORT const char *miopenGetErrorString(int s) {
    switch (s) {
    case 0: return "miopenStatusSuccess";
    case 3: return "miopenStatusBadParm";
    case 4: return "miopenStatusAllocFailed";
    case 5: return "miopenStatusInternalError";
    default: return "miopenStatusUnknownError";
    }
}
EXPORT int miopenCreate(Handle **h) {
    int id;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        id = g_next_handle++;
    }
    *h = new Handle{id};
    log("miopenCreate h=" + std::to_string(id));
    return miopenStatusSuccess;
}
EXPORT int miopenDestroy(Handle *h) {
    log("miopenDestroy h=" + std::to_string(h->id));
    delete h;
    return miopenStatusSuccess;
}
EXPORT int miopenSetStream(Handle *h, void *stream) {
    h->stream = stream;
    std::ostringstream s;
    s << "miopenSetStream h=" << h->id << " stream=" << stream;
    log(s.str());
    return miopenStatusSuccess;
}
EXPORT int miopenCreateTensorDescriptor(Tensor **t) {
    *t = new Tensor;
    return miopenStatusSuccess;
}
EXPORT int miopenSet4dTensorDescriptorEx(Tensor *t, int dt, int n, int c, int h, int w, int ns, int cs, int hs, int ws) {
    if (dt != 0 && dt != 1 && dt != 5) return miopenStatusBadParm;
    if (n < 1 || c < 1 || h < 1 || w < 1) return miopenStatusBadParm;
    t->dt = dt;
    const int d[4] = {n, c, h, w}, s[4] = {ns, cs, hs, ws};
    std::memcpy(t->dims, d, sizeof d);
    std::memcpy(t->strides, s, sizeof s);
    log("miopenSet4dTensorDescriptorEx dt=" + std::to_string(dt) + " dims=" + t->str() + " strides=" +
        std::to_string(ns) + "," + std::to_string(cs) + "," + std::to_string(hs) + "," + std::to_string(ws));
    return miopenStatusSuccess;
}
EXPORT int miopenDestroyTensorDescriptor(Tensor *t) {
    delete t;
    log("miopenDestroyTensorDescriptor");
    return miopenStatusSuccess;
}
EXPORT int miopenCreateConvolutionDescriptor(Conv **c) {
    *c = new Conv;
    return miopenStatusSuccess;
}
EXPORT int miopenInitConvolutionDescriptor(Conv *c, int mode, int ph, int pw, int sh, int sw, int dh, int dw) {
    if (mode != 0 || sh < 1 || sw < 1 || dh < 1 || dw < 1 || ph < 0 || pw < 0) return miopenStatusBadParm;
    *c = Conv{mode, {ph, pw}, {sh, sw}, {dh, dw}, 1};
    log("miopenInitConvolutionDescriptor pad=" + std::to_string(ph) + "," + std::to_string(pw) + " stride=" +
        std::to_string(sh) + "," + std::to_string(sw) + " dil=" + std::to_string(dh) + "," + std::to_string(dw));
    return miopenStatusSuccess;
}
EXPORT int miopenSetConvolutionGroupCount(Conv *c, int groups) {
    if (groups < 1) return miopenStatusBadParm;
    c->groups = groups;
    log("miopenSetConvolutionGroupCount groups=" + std::to_string(groups));
    return miopenStatusSuccess;
}
EXPORT int miopenDestroyConvolutionDescriptor(Conv *c) {
    delete c;
    log("miopenDestroyConvolutionDescriptor");
    return miopenStatusSuccess;
}
EXPORT int miopenConvolutionForwardGetSolutionCount(Handle *h, Tensor *w, Tensor *x, Conv *c, Tensor *y, size_t *n) {
    if (!conv_shapes_ok(w, x, c, y)) {
        log("miopenConvolutionForwardGetSolutionCount -> bad descriptors");
        return miopenStatusBadParm;
    }
    *n = cfg("no_solutions").empty() ? solutions_for(w, x, c, y).size() : 0;
    log("miopenConvolutionForwardGetSolutionCount h=" + std::to_string(h->id) + " " + problem_text(w, x, c) +
        " n=" + std::to_string(*n));
    return miopenStatusSuccess;
}
EXPORT int miopenConvolutionForwardGetSolution(Handle *h, Tensor *w, Tensor *x, Conv *c, Tensor *y, size_t max,
                                               size_t *n, ConvSolution *out) {
    if (!conv_shapes_ok(w, x, c, y)) return miopenStatusBadParm;
    auto sols = solutions_for(w, x, c, y);
    if (!cfg("no_solutions").empty()) sols.clear();
    *n = std::min(max, sols.size());
    for (size_t i = 0; i < *n; ++i) out[i] = sols[i];
    log("miopenConvolutionForwardGetSolution h=" + std::to_string(h->id) + " max=" + std::to_string(max) +
        " n=" + std::to_string(*n));
    return miopenStatusSuccess;
}
EXPORT int miopenConvolutionForwardGetSolutionWorkspaceSize(Handle *h, Tensor *w, Tensor *x, Conv *c, Tensor *y,
                                                            uint64_t id, size_t *ws) {
    *ws = workspace_of(w, x, c, y, id);
    log("miopenConvolutionForwardGetSolutionWorkspaceSize h=" + std::to_string(h->id) + " sol=" + std::to_string(id) +
        " ws=" + std::to_string(*ws));
    return miopenStatusSuccess;
}
EXPORT int miopenConvolutionForwardCompileSolution(Handle *h, Tensor *w, Tensor *x, Conv *c, Tensor *y, uint64_t id) {
    if (!conv_shapes_ok(w, x, c, y)) return miopenStatusBadParm;
    const int ms = std::atoi(cfg("compile_ms", "0").c_str());
    if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    const bool failing = in_list(cfg("fail_compile"), std::to_string(id));
    log("miopenConvolutionForwardCompileSolution h=" + std::to_string(h->id) + " sol=" + std::to_string(id) + " " +
        problem_text(w, x, c) + (failing ? " -> failed" : ""));
    if (failing) return miopenStatusInternalError;
    std::lock_guard<std::mutex> lock(g_mu);
    g_compiled.insert(problem_text(w, x, c) + "#" + std::to_string(id));
    return miopenStatusSuccess;
}
EXPORT int miopenConvolutionForwardImmediate(Handle *h, Tensor *wd, const void *w, Tensor *xd, const void *x, Conv *c,
                                             Tensor *yd, void *y, void *ws, size_t ws_size, uint64_t id) {
    bool compiled;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        compiled = g_compiled.count(problem_text(wd, xd, c) + "#" + std::to_string(id)) != 0;
    }
    const size_t need = workspace_of(wd, xd, c, yd, id);
    std::ostringstream s;
    s << "miopenConvolutionForwardImmediate h=" << h->id << " sol=" << id << " ws=" << ws_size << " wsptr=" << ws
      << " compiled=" << (compiled ? 1 : 0) << " stream=" << h->stream << " " << problem_text(wd, xd, c);
    log(s.str());
    if (!conv_shapes_ok(wd, xd, c, yd) || ws_size < need || (need > 0 && !is_device(ws, need))) return miopenStatusBadParm;
    if (!is_device(x, size_t(xd->bytes())) || !is_device(w, size_t(wd->bytes())) || !is_device(y, size_t(yd->bytes())))
        return miopenStatusBadParm;
    const int N = xd->dims[0], C = xd->dims[1], H = xd->dims[2], W = xd->dims[3];
    const int O = wd->dims[0], Cg = wd->dims[1], KH = wd->dims[2], KW = wd->dims[3];
    const int OH = yd->dims[2], OW = yd->dims[3], G = c->groups, Og = O / G;
    (void)C;
    for (int n = 0; n < N; ++n)
        for (int o = 0; o < O; ++o) {
            const int g = o / Og;
            for (int oh = 0; oh < OH; ++oh)
                for (int ow = 0; ow < OW; ++ow) {
                    double acc = 0;
                    for (int ci = 0; ci < Cg; ++ci)
                        for (int kh = 0; kh < KH; ++kh) {
                            const int ih = oh * c->stride[0] - c->pad[0] + kh * c->dil[0];
                            if (ih < 0 || ih >= H) continue;
                            for (int kw = 0; kw < KW; ++kw) {
                                const int iw = ow * c->stride[1] - c->pad[1] + kw * c->dil[1];
                                if (iw < 0 || iw >= W) continue;
                                acc += load(x, xd->dt, xd->at(n, g * Cg + ci, ih, iw)) *
                                       load(w, wd->dt, wd->at(o, ci, kh, kw));
                            }
                        }
                    store(y, yd->dt, yd->at(n, o, oh, ow), acc);
                }
        }
    return miopenStatusSuccess;
}
EXPORT int miopenConvolutionForwardBias(Handle *h, const float *alpha, Tensor *bd, const void *b, const float *beta,
                                        Tensor *yd, void *y) {
    log("miopenConvolutionForwardBias h=" + std::to_string(h->id) + " b=" + bd->str() + " y=" + yd->str());
    if (bd->dims[1] != yd->dims[1] || !is_device(b) || !is_device(y)) return miopenStatusBadParm;
    for (int n = 0; n < yd->dims[0]; ++n)
        for (int c = 0; c < yd->dims[1]; ++c)
            for (int hh = 0; hh < yd->dims[2]; ++hh)
                for (int ww = 0; ww < yd->dims[3]; ++ww) {
                    const int64_t i = yd->at(n, c, hh, ww);
                    const double v = load(y, yd->dt, i);
                    store(y, yd->dt, i, *alpha * v + *alpha * load(b, bd->dt, bd->at(0, c, 0, 0)) + *beta * v);
                }
    return miopenStatusSuccess;
}
EXPORT int miopenOpTensor(Handle *h, int op, const float *a1, Tensor *ad, const void *A, const float *a2, Tensor *bd,
                          const void *B, const float *beta, Tensor *cd, void *C) {
    log("miopenOpTensor h=" + std::to_string(h->id) + " op=" + std::to_string(op) + " c=" + cd->str());
    if (op != 0 || ad->str() != cd->str() || bd->str() != cd->str() || !is_device(A) || !is_device(B) || !is_device(C))
        return miopenStatusBadParm;
    for (int n = 0; n < cd->dims[0]; ++n)
        for (int c = 0; c < cd->dims[1]; ++c)
            for (int hh = 0; hh < cd->dims[2]; ++hh)
                for (int ww = 0; ww < cd->dims[3]; ++ww) {
                    const double va = load(A, ad->dt, ad->at(n, c, hh, ww)), vb = load(B, bd->dt, bd->at(n, c, hh, ww));
                    const int64_t i = cd->at(n, c, hh, ww);
                    const double vc = *beta != 0 ? load(C, cd->dt, i) : 0.0;
                    store(C, cd->dt, i, *a1 * va + *a2 * vb + *beta * vc);
                }
    return miopenStatusSuccess;
}
EXPORT int miopenCreateActivationDescriptor(Activ **a) {
    *a = new Activ;
    return miopenStatusSuccess;
}
EXPORT int miopenSetActivationDescriptor(Activ *a, int mode, double alpha, double beta, double gamma) {
    *a = Activ{mode, alpha, beta, gamma};
    log("miopenSetActivationDescriptor mode=" + std::to_string(mode) + " alpha=" + std::to_string(alpha));
    return miopenStatusSuccess;
}
EXPORT int miopenActivationForward(Handle *h, Activ *a, const float *alpha, Tensor *xd, const void *x,
                                   const float *beta, Tensor *yd, void *y) {
    log("miopenActivationForward h=" + std::to_string(h->id) + " mode=" + std::to_string(a->mode));
    // the double knows LOGISTIC, RELU and CLIPPEDRELU
    if (a->mode != 1 && a->mode != 3 && a->mode != 7) return miopenStatusBadParm;
    for (int n = 0; n < yd->dims[0]; ++n)
        for (int c = 0; c < yd->dims[1]; ++c)
            for (int hh = 0; hh < yd->dims[2]; ++hh)
                for (int ww = 0; ww < yd->dims[3]; ++ww) {
                    double v = load(x, xd->dt, xd->at(n, c, hh, ww));
                    if (a->mode == 1) {
                        v = 1.0 / (1.0 + std::exp(-v));  // LOGISTIC
                    } else {
                        v = v > 0 ? v : 0;
                        if (a->mode == 7) v = std::min(v, a->alpha);
                    }
                    const int64_t i = yd->at(n, c, hh, ww);
                    const double prev = *beta != 0 ? load(y, yd->dt, i) : 0.0;
                    store(y, yd->dt, i, *alpha * v + *beta * prev);
                }
    return miopenStatusSuccess;
}
EXPORT int miopenDestroyActivationDescriptor(Activ *a) {
    delete a;
    return miopenStatusSuccess;
}
EXPORT int miopenCreatePoolingDescriptor(Pool **p) {
    *p = new Pool;
    return miopenStatusSuccess;
}
EXPORT int miopenSet2dPoolingDescriptor(Pool *p, int mode, int kh, int kw, int ph, int pw, int sh, int sw) {
    if (mode < 0 || mode > 2 || kh < 1 || kw < 1 || sh < 1 || sw < 1) return miopenStatusBadParm;
    *p = Pool{mode, {kh, kw}, {ph, pw}, {sh, sw}};
    log("miopenSet2dPoolingDescriptor mode=" + std::to_string(mode) + " k=" + std::to_string(kh) + "," +
        std::to_string(kw) + " pad=" + std::to_string(ph) + "," + std::to_string(pw) + " stride=" +
        std::to_string(sh) + "," + std::to_string(sw));
    return miopenStatusSuccess;
}
EXPORT int miopenPoolingForward(Handle *h, Pool *p, const float *alpha, Tensor *xd, const void *x, const float *beta,
                                Tensor *yd, void *y, bool do_backward, void *ws, size_t ws_size) {
    std::ostringstream s;
    s << "miopenPoolingForward h=" << h->id << " mode=" << p->mode << " backward=" << do_backward << " ws=" << ws_size
      << " wsptr=" << ws;
    log(s.str());
    if (!is_device(x, size_t(xd->bytes())) || !is_device(y, size_t(yd->bytes()))) return miopenStatusBadParm;
    const int H = xd->dims[2], W = xd->dims[3];
    for (int n = 0; n < yd->dims[0]; ++n)
        for (int c = 0; c < yd->dims[1]; ++c)
            for (int oh = 0; oh < yd->dims[2]; ++oh)
                for (int ow = 0; ow < yd->dims[3]; ++ow) {
                    double acc = p->mode == 0 ? -INFINITY : 0.0;
                    int count = 0;
                    for (int kh = 0; kh < p->k[0]; ++kh)
                        for (int kw = 0; kw < p->k[1]; ++kw) {
                            const int ih = oh * p->stride[0] - p->pad[0] + kh, iw = ow * p->stride[1] - p->pad[1] + kw;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                            const double v = load(x, xd->dt, xd->at(n, c, ih, iw));
                            acc = p->mode == 0 ? std::max(acc, v) : acc + v;
                            ++count;
                        }
                    double v = acc;
                    if (p->mode == 1) v = count ? acc / count : 0.0;
                    if (p->mode == 2) v = acc / (p->k[0] * p->k[1]);
                    const int64_t i = yd->at(n, c, oh, ow);
                    const double prev = *beta != 0 ? load(y, yd->dt, i) : 0.0;
                    store(y, yd->dt, i, *alpha * v + *beta * prev);
                }
    return miopenStatusSuccess;
}
EXPORT int miopenDestroyPoolingDescriptor(Pool *p) {
    delete p;
    return miopenStatusSuccess;
}
