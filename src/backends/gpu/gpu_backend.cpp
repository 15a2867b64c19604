#include "gpu_backend.hpp"

#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <unordered_map>

#include "../../core/error.hpp"
#include "../../core/fsutil.hpp"
#include "paskdnn.h"

namespace pask::gpu {

namespace {

// The calling thread's stream per backend id (set with pask_set_stream).
thread_local std::unordered_map<uint64_t, void *> t_streams;
std::atomic<uint64_t> g_next_backend{1};

class GpuModule final : public CodeObject {
public:
    GpuModule(std::string origin, const GpuBackend &backend, void *m)
        : CodeObject(std::move(origin)), backend_(backend), module_(m) {}
    ~GpuModule() override {
        try {
            backend_.module_unload(module_);
        } catch (...) {  // the device is gone: nothing left to release
        }
    }
    void *symbol(const std::string &name) const override { return backend_.module_function(module_, name.c_str()); }

private:
    const GpuBackend &backend_;
    void *module_;
};

}  // namespace

std::string constant_macros(const KernelKey &key) {
    std::string opts;
    size_t start = 0;
    while (start < key.constants.size()) {
        size_t comma = key.constants.find(',', start);
        std::string kv = key.constants.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        auto eq = kv.find('=');
        if (eq != std::string::npos) {
            std::string name = kv.substr(0, eq);
            for (auto &ch : name) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
            // dtype=, f32_full=: the element type and its precision; the rest: window constants
            const std::string macro = name == "DTYPE" ? "PASK_DTYPE" : name == "F32_FULL" ? "PASK_F32_FULL"
                                                                                          : "PASK_FIXED_" + name;
            opts += " -D" + macro + "=" + kv.substr(eq + 1);
        }
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return opts;
}

GpuBackend::GpuBackend() : id_(g_next_backend++) {}

std::shared_ptr<CodeObject> GpuBackend::load_code_object(const std::string &path) {
    std::string why;
    auto bytes = read_file(path, kMaxCodeObjectBytes, &why);
    if (!bytes) fail(PASK_ERROR_LOAD_FAILED, "cannot load " + why);
    return load_code_object_bytes(*bytes, path);
}

std::shared_ptr<CodeObject> GpuBackend::wrap_module(const std::string &origin, void *module) const {
    return std::make_shared<GpuModule>(origin, *this, module);
}

std::string GpuBackend::compile_material(const KernelKey &key) const {
    const char *src = cuda_kernel_source(key.object);
    return std::string(src ? src : "") + "\n//--\n" + rtc_options(key) + "\n" + (rtc_ ? rtc_->version : "") + "\n" +
           key.target;
}

std::string GpuBackend::compile(const KernelKey &key) {
    require(rtc_ != nullptr, PASK_ERROR_LOAD_FAILED, "cannot compile " + key.str() + ": " + rtc_problem_);
    const char *src = cuda_kernel_source(key.object);
    require(src != nullptr, PASK_ERROR_LOAD_FAILED, std::string("no ") + source_noun() + " for code object " + key.object);
    return rtc_->compile(src, key.object + source_suffix(), rtc_options(key));
}

void *GpuBackend::current_stream() const {
    auto it = t_streams.find(id_);
    return it == t_streams.end() ? nullptr : it->second;
}

void GpuBackend::set_stream(void *s) const { t_streams[id_] = s; }

// ---- device run times -----------------------------------------------------------
//
// start event ... work ... stop event measures the work alone only if the
// device does not reach the start event before the work is queued: on an idle
// device it would also count the host's time to queue the work (large for
// cuDNN, small for our kernels) and rank solvers by host overhead. So where
// the backend can queue host functions, a timed run is queued behind a gate: a
// host function on the stream that waits until the stop event is queued (at
// most 50 ms, so nothing can hang on it).

struct GpuBackend::Gate {
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

// Under timer_mu_: one more event pair, false when it cannot be created.
bool GpuBackend::add_timer() const {
    Timer t;
    if (!event_create(&t.start)) return false;
    if (!event_create(&t.stop)) {
        event_destroy(t.start);
        return false;
    }
    timers_.push_back(t);
    return true;
}

void GpuBackend::warm_timers(size_t n) {
    if (!events_available()) return;
    std::lock_guard<std::mutex> lock(timer_mu_);
    while (timers_.size() < n)
        if (!add_timer()) return;
}

void GpuBackend::release_timers() {
    if (timers_.empty()) return;
    try {
        DeviceScope scope(*this);
        for (auto &t : timers_) {
            if (t.start) event_destroy(t.start);
            if (t.stop) event_destroy(t.stop);
        }
    } catch (...) {  // a failing device cannot be cleaned up further
    }
    timers_.clear();
}

int64_t GpuBackend::timer_start() const {
    if (!events_available()) return -1;
    DeviceScope scope(*this);
    if (stream_capturing()) return -1;  // events recorded into a graph capture cannot be timed
    std::lock_guard<std::mutex> lock(timer_mu_);
    size_t i = 0;
    while (i < timers_.size() && timers_[i].busy) ++i;
    if (i == timers_.size() && (timers_.size() >= 256 || !add_timer())) return -1;
    Gate *gate = new Gate;
    if (!queue_host_function(&Gate::wait, gate)) {
        delete gate;
        gate = nullptr;
    }
    if (!event_record(timers_[i].start, current_stream())) {
        if (gate) gate->open_now();
        return -1;
    }
    timers_[i].busy = true;
    timers_[i].gate = gate;
    return static_cast<int64_t>(i);
}

void GpuBackend::timer_stop(int64_t token) const {
    if (token < 0) return;
    DeviceScope scope(*this);
    std::lock_guard<std::mutex> lock(timer_mu_);
    Timer &t = timers_[static_cast<size_t>(token)];
    event_record(t.stop, current_stream());
    if (t.gate) t.gate->open_now();
    t.gate = nullptr;
}

bool GpuBackend::timer_poll(int64_t token, double *us) const {
    *us = -1;
    if (token < 0) return true;
    DeviceScope scope(*this);
    if (stream_capturing()) return false;  // querying an event is not allowed while a graph is being captured
    std::lock_guard<std::mutex> lock(timer_mu_);
    Timer &t = timers_[static_cast<size_t>(token)];
    const Query q = event_query(t.stop);
    if (q == Query::not_ready) return false;
    float ms = 0;
    if (q == Query::ready && event_elapsed(&ms, t.start, t.stop)) *us = double(ms) * 1000.0;
    t.busy = false;
    return true;
}

void GpuBackend::timer_release(int64_t token) const {
    if (token < 0) return;
    std::lock_guard<std::mutex> lock(timer_mu_);
    Timer &t = timers_[static_cast<size_t>(token)];
    if (t.gate) t.gate->open_now();
    t.gate = nullptr;
    t.busy = false;
}

}  // namespace pask::gpu
