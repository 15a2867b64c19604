#include "context.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../backends/cpu/cpu_backend.hpp"
#include "../backends/cuda/cuda_backend.hpp"
#include "../providers/cudnn/cudnn_provider.hpp"
#include "../backends/hip/hip_backend.hpp"
#include "../providers/miopen/miopen_provider.hpp"
#include "error.hpp"
#include "fsutil.hpp"
#include "json.hpp"
#include "registry.hpp"

using pask::Error;
using pask::fail;
using pask::require;
using pask::this_thread_tid;

namespace pask {

const char *policy_name(Policy p) {
    switch (p) {
    case Policy::Reactive: return "reactive";
    case Policy::Proactive: return "proactive";
    case Policy::Reuse: return "reuse";
    case Policy::Pask: return "pask";
    }
    return "?";
}

namespace {

// Before a kernel's load has been measured: a host shared object loads in
// about a millisecond.
constexpr double kDefaultLoadMs = 1.0;
// ... and an NVRTC compile of one of our kernels takes 40-60 ms on an H100 host.
constexpr double kDefaultCompileMs = 100.0;

// Per-(solver, Problem) run times and run counts are bounded like the trace
// (200k events) and the record (100k Problems): a process that sees millions
// of distinct shapes forgets an old one for each new one.
constexpr size_t kMaxRunEntries = 200000;
template <typename Map>
void bound_for_insert(Map &m, uint64_t key) {
    if (m.size() >= kMaxRunEntries && m.find(key) == m.end()) m.erase(m.begin());
}

int parse_int(const std::string &key, const std::string &value, long lo, long hi) {
    errno = 0;
    char *end = nullptr;
    long v = std::strtol(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || errno != 0 || v < lo || v > hi)
        fail(PASK_ERROR_INVALID_ARGUMENT, "option " + key + " must be an integer in [" + std::to_string(lo) + ", " +
                                              std::to_string(hi) + "], got '" + value + "'");
    return static_cast<int>(v);
}

// The default cache folder and where it came from (named in errors).
std::string default_cache_dir(std::string *from) {
    if (const char *d = std::getenv("PASKDNN_CACHE_DIR"); d && *d) return *from = "$PASKDNN_CACHE_DIR", d;
    if (const char *d = std::getenv("XDG_CACHE_HOME"); d && *d) return *from = "$XDG_CACHE_HOME", std::string(d) + "/paskdnn";
    if (const char *d = std::getenv("HOME"); d && *d) return *from = "$HOME", std::string(d) + "/.cache/paskdnn";
    return "";
}

// Resolved once, at creation: a later chdir() must not move where the context
// writes (load_costs.json at close) away from where it read.
std::string absolute(const std::string &path) {
    if (path.empty() || path[0] == '/') return path;
    std::string cwd(4096, '\0');
    if (!::getcwd(&cwd[0], cwd.size())) return path;
    cwd.resize(std::strlen(cwd.c_str()));
    return cwd + "/" + path;
}

// A killed writer's temporary older than this is swept at start (fsutil.hpp).
constexpr double kStaleTemporaryS = 3600;

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

// ---- LoadCosts ------------------------------------------------------------------

void LoadCosts::load_file(const std::string &path) {
    // Missing (no record yet), oversized, not a regular file: ignored, like a damaged one.
    auto content = read_file(path, kMaxLoadCostsBytes);
    if (!content) return;
    const std::string &text = *content;
    try {
        json::Value doc = json::parse(text);
        const json::Value *loads = doc.get("load_ms");
        if (!loads || loads->kind != json::Value::Object) return;
        std::lock_guard<std::mutex> lock(mu_);
        for (const auto &[key, v] : loads->obj) {
            if (ms_.size() >= kMaxEntries) break;
            if (v.kind == json::Value::Number && v.num >= 0 && v.num < 1e7 && looks_like_kernel_key(key)) ms_[key] = v.num;
        }
    } catch (const Error &) {
        // a damaged record is a miss, never an error
    }
}

void LoadCosts::save_file(const std::string &path) const {
    std::string out = "{\"format\": \"paskdnn-load-costs\", \"version\": 1, \"load_ms\": {";
    {
        std::lock_guard<std::mutex> lock(mu_);
        bool first = true;
        for (const auto &[key, ms] : ms_) {
            char buf[64];
            std::snprintf(buf, sizeof buf, "%.6g", ms);
            out += std::string(first ? "\n  " : ",\n  ") + json::quote(key) + ": " + buf;
            first = false;
        }
    }
    out += "\n}}\n";
    write_file_atomic(path, out);
}

void LoadCosts::record(const KernelKey &key, double ms) {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string k = key.str();
    auto it = ms_.find(k);
    if (it != ms_.end()) {
        it->second = 0.5 * it->second + 0.5 * ms;
    } else {
        if (ms_.size() >= kMaxEntries) ms_.erase(ms_.begin());  // bounded: any old entry makes room
        ms_.emplace(k, ms);
    }
    dirty_ = true;
}

// What KernelKey::str() writes: provider/backend/object:entry@target[...],
// printable, bounded. Anything else in the file was not written by paskdnn.
bool LoadCosts::looks_like_kernel_key(const std::string &k) {
    if (k.empty() || k.size() > 512) return false;
    for (char c : k)
        if (c < 0x21 || c > 0x7e) return false;
    const size_t slash = k.find('/'), colon = k.find(':'), at = k.find('@');
    return slash != std::string::npos && colon != std::string::npos && at != std::string::npos && slash < colon &&
           colon < at;
}

double LoadCosts::estimate_ms(const KernelKey &key, bool needs_compile) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = ms_.find(key.str());
    return it != ms_.end() ? it->second : needs_compile ? kDefaultCompileMs : kDefaultLoadMs;
}

bool LoadCosts::dirty() const {
    std::lock_guard<std::mutex> lock(mu_);
    return dirty_;
}

}  // namespace pask

using namespace pask;  // the helpers above

// ---- context ----------------------------------------------------------------------

pask_context::pask_context(pask_device_type_t type, int index, const pask_options *options)
    : device_type(type), device_index(index) {
    require(type == PASK_DEVICE_CPU || type == PASK_DEVICE_CUDA || type == PASK_DEVICE_HIP, PASK_ERROR_INVALID_ARGUMENT,
            "unknown device type " + std::to_string(int(type)));
    require(type != PASK_DEVICE_CPU || index == 0, PASK_ERROR_INVALID_ARGUMENT,
            "the CPU device has index 0, got " + std::to_string(index));

    int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    // GPU contexts build vendor plans (cuDNN heuristics, CPU-bound) on their
    // loader threads: more of them where the host has the cores.
    int loader_threads = type == PASK_DEVICE_CPU || std::thread::hardware_concurrency() < 8 ? 2 : 4;
    int lookahead = 64, delay_ms = 0, capacity = 256;
    bool trace_on = true;
    std::string kernel_dir, isa, hints_file, nvrtc_library, cudnn_library;
    bool use_cudnn = true;
    if (const char *c = std::getenv("PASKDNN_CUDNN"); c && *c) cudnn_library = c;
    // HIP: empty paths mean $PASKDNN_HIP / $PASKDNN_HIPRTC / $PASKDNN_MIOPEN, else the usual sonames
    std::string hip_library, hiprtc_library, miopen_library;
    bool use_miopen = true;
    std::string hints_from, cache_from;
    if (const char *h = std::getenv("PASKDNN_HINTS"); h && *h) hints_file = h, hints_from = "$PASKDNN_HINTS";
    cache_dir = default_cache_dir(&cache_from);
    if (options) {
        for (const auto &[key, value] : options->values) {
            if (key == "policy") {
                if (value == "reactive") policy = pask::Policy::Reactive;
                else if (value == "proactive") policy = pask::Policy::Proactive;
                else if (value == "reuse") policy = pask::Policy::Reuse;
                else if (value == "pask") policy = pask::Policy::Pask;
                else fail(PASK_ERROR_INVALID_ARGUMENT, "policy must be reactive, proactive, reuse or pask, got '" + value + "'");
            } else if (key == "num_threads") {
                threads = parse_int(key, value, 1, 1024);
            } else if (key == "loader_threads") {
                loader_threads = parse_int(key, value, 0, 64);
            } else if (key == "lookahead") {
                lookahead = parse_int(key, value, 1, 1000000);
            } else if (key == "resident_capacity") {
                capacity = parse_int(key, value, 0, 1000000);
            } else if (key == "trace") {
                trace_on = parse_int(key, value, 0, 1) != 0;
            } else if (key == "debug_load_delay_ms") {
                delay_ms = parse_int(key, value, 0, 600000);
            } else if (key == "kernel_dir") {
                require(!value.empty(), PASK_ERROR_INVALID_ARGUMENT, "kernel_dir must not be empty");
                kernel_dir = value;
            } else if (key == "cache_dir") {
                require(!value.empty(), PASK_ERROR_INVALID_ARGUMENT, "cache_dir must not be empty");
                cache_dir = value;
                cache_from = "option cache_dir";
            } else if (key == "hints_file") {
                hints_file = value;
                hints_from = "option hints_file";
            } else if (key == "cpu_isa") {
                isa = value;
            } else if (key == "nvrtc_library") {
                nvrtc_library = value;
            } else if (key == "cudnn_library") {
                cudnn_library = value;
            } else if (key == "cudnn") {
                use_cudnn = parse_int(key, value, 0, 1) != 0;
            } else if (key == "explore") {
                explore_ = parse_int(key, value, 0, 1) != 0;
            } else if (key == "hip_library") {
                hip_library = value;
            } else if (key == "hiprtc_library") {
                hiprtc_library = value;
            } else if (key == "miopen_library") {
                miopen_library = value;
            } else if (key == "miopen") {
                use_miopen = parse_int(key, value, 0, 1) != 0;
            } else if (key == "solvers") {
                size_t start = 0;
                while (start <= value.size()) {
                    size_t comma = value.find(',', start);
                    std::string name = value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
                    if (!name.empty()) {
                        const pask::Solver *s = pask::find_solver(name);
                        if (!s) {
                            std::string known;
                            for (const auto *k : pask::all_solvers()) known += std::string(known.empty() ? "" : ", ") + k->name();
                            fail(PASK_ERROR_INVALID_ARGUMENT, "unknown solver '" + name + "'; known solvers: " + known);
                        }
                        allowed.push_back(s);
                    }
                    if (comma == std::string::npos) break;
                    start = comma + 1;
                }
                require(!allowed.empty(), PASK_ERROR_INVALID_ARGUMENT, "option solvers names no solver");
            } else {
                fail(PASK_ERROR_INVALID_ARGUMENT,
                     "unknown option '" + key +
                         "' (known: policy, num_threads, loader_threads, lookahead, resident_capacity, trace, "
                         "kernel_dir, cache_dir, hints_file, cpu_isa, nvrtc_library, cudnn, cudnn_library, explore, "
                         "hip_library, hiprtc_library, miopen, miopen_library, solvers, debug_load_delay_ms)");
            }
        }
    }
    cache_dir = absolute(cache_dir);
    require(cache_dir.size() <= pask::kMaxPathBytes, PASK_ERROR_INVALID_ARGUMENT,
            "the cache folder (" + cache_from + ") is a path of " + std::to_string(cache_dir.size()) +
                " bytes; the limit is " + std::to_string(pask::kMaxPathBytes));
    trace.set_enabled(trace_on);
    debug_load_delay_ms = delay_ms;
    resident.set_capacity(static_cast<size_t>(capacity));
    hints = std::make_unique<pask::HintQueue>(static_cast<size_t>(lookahead));
    if (type == PASK_DEVICE_CUDA)
        backend = std::make_unique<pask::CudaBackend>(index, nvrtc_library);
    else if (type == PASK_DEVICE_HIP)
        backend = std::make_unique<pask::HipBackend>(index, hip_library, hiprtc_library);
    else
        backend = std::make_unique<pask::CpuBackend>(threads, isa);
    store = std::make_unique<pask::KernelStore>(
        kernel_dir.empty() ? pask::KernelStore::default_prebuilt_dir() : kernel_dir, backend->object_suffix());
    if (backend->can_compile()) store->set_user_cache(cache_dir);
    // Like the kernel cache: a folder other users could write to is not trusted.
    if (!cache_dir.empty() && pask::dir_is_private(cache_dir, nullptr)) {
        load_costs.load_file(load_costs_path());
        pask::sweep_stale_temporaries(cache_dir, kStaleTemporaryS);
        pask::sweep_stale_temporaries(cache_dir + "/kernels", kStaleTemporaryS);
    }
    // Parsed before any thread starts, so a bad file fails creation cleanly.
    if (!hints_file.empty()) {
        try {
            load_hints_file(hints_file);
        } catch (const Error &e) {
            fail(e.status(), std::string(e.what()) + " (from " + hints_from + ")");
        }
    }

    pask::Loader::Hooks hooks;
    hooks.now_us = [this] { return trace.now_us(); };
    hooks.thread_started = [this](int i) {
        backend->loader_thread_started();
        trace.name_this_thread("loader " + std::to_string(i));
    };
    hooks.compiled = [this](const pask::KernelKey &, double ms) {
        stats.compiles++;
        stats.compile_ns += static_cast<int64_t>(ms * 1e6);
    };
    hooks.cache_lookup = [this](const pask::KernelKey &, bool hit, bool rejected) {
        if (hit) stats.cache_hits++;
        if (rejected) stats.cache_rejects++;
    };
    hooks.loaded = [this](const pask::KernelPtr &k, const std::vector<pask::Bucket> &buckets, double ms) {
        stats.loads++;
        stats.load_ns += static_cast<int64_t>(ms * 1e6);
        load_costs.record(k->key, ms);
        for (const auto &b : buckets) stats.evictions += static_cast<int64_t>(resident.insert(b, k));
    };
    hooks.failed = [this](const pask::KernelKey &key, const std::string &, pask_status_t status) {
        stats.load_failures++;
        // Out of memory while building is a moment, not a property of the kernel.
        if (status != PASK_ERROR_OUT_OF_MEMORY) mark_bad(key.str());
    };
    hooks.traced = [this](const pask::KernelKey &key, int64_t start, int64_t dur, bool ok) {
        trace.complete(std::string(ok ? "load " : "load failed ") + key.object + "@" + key.target, "load", start, dur,
                       "\"kernel\":" + pask::json::quote(key.str()));
    };
    if (type == PASK_DEVICE_CUDA && use_cudnn) {
        bool wanted = allowed.empty();
        for (const auto *s : allowed) wanted = wanted || std::string(s->name()).find("cudnn") != std::string::npos;
        if (wanted)
            providers.push_back(std::make_unique<pask::cudnn::CudnnProvider>(
                static_cast<pask::CudaBackend &>(*backend), cudnn_library, &trace));
    }
    if (type == PASK_DEVICE_HIP && use_miopen) {
        bool wanted = allowed.empty();
        for (const auto *s : allowed) wanted = wanted || std::string(s->name()).find("miopen") != std::string::npos;
        if (wanted)
            providers.push_back(std::make_unique<pask::miopen::MiopenProvider>(
                static_cast<pask::HipBackend &>(*backend), miopen_library, &trace));
    }
    loader = std::make_unique<pask::Loader>(*backend, *store, loader_threads, std::move(hooks), delay_ms);
    for (auto &p : providers) loader->add_provider(p.get());
    // Library set-up (cuDNN's handle: a quarter of a second) runs on a loader
    // thread now, so that no call waits for it when its plans are prepared
    // ahead; reactive contexts pay it on first use, as they pay every load.
    if (queues_prepare())
        for (auto &p : providers) {
            pask::Provider *prov = p.get();
            loader->run_first([prov] {
                if (prov->available()) prov->prepare();
            });
        }
    feed_loader();
}

int pask_context::device_count(pask_device_type_t type) {
    if (type == PASK_DEVICE_CPU) return 1;
    if (type == PASK_DEVICE_HIP) {
        try {
            const auto &rt = pask::hip::Runtime::get("");
            int n = 0;
            return rt.hipGetDeviceCount(&n) == 0 ? n : 0;
        } catch (const Error &) {
            return 0;
        }
    }
    if (type != PASK_DEVICE_CUDA) return 0;
    try {
        const auto &d = pask::cuda::Driver::get();
        int n = 0;
        return d.cuDeviceGetCount(&n) == 0 ? n : 0;
    } catch (const Error &) {
        return 0;
    }
}

pask_context::~pask_context() { close(); }

void pask_context::close() {
    std::lock_guard<std::mutex> lock(close_mu_);
    if (closed_) return;
    if (!gate.close()) return;  // inherited through fork(): nothing here may be joined or freed
    closed_ = true;
    loader.reset();  // joins the loader threads; queued loads are abandoned
    if (debug_load_delay_ms == 0 && load_costs.dirty() && make_private_dir(cache_dir) &&
        pask::dir_is_private(cache_dir, nullptr))
        load_costs.save_file(load_costs_path());
    resident.clear();
    providers.clear();
    hints.reset();
    store.reset();
    backend.reset();
}

std::string pask_context::load_costs_path() const {
    return cache_dir.empty() ? std::string() : cache_dir + "/load_costs.json";
}

static uint64_t run_key(const pask::Solver &s, size_t problem_hash) {
    return (uint64_t(problem_hash) * 0x9E3779B97F4A7C15ull) ^ uint64_t(s.id());
}

std::vector<pask_context::Candidate> pask_context::ranked(const pask::Problem &p, size_t h) const {
    // The analytic ranking of a Problem never changes within a context (same
    // solvers, store and targets), so it is computed once and remembered.
    {
        std::lock_guard<std::mutex> lock(rank_mu_);
        auto it = ranked_.find(h);
        if (it != ranked_.end())
            for (const auto &e : it->second)
                if (e.problem == p) return e.ranked;
    }
    std::vector<Candidate> out;
    const auto &pool = allowed.empty() ? pask::all_solvers() : allowed;
    for (const pask::Solver *s : pool) {
        if (s->device() != device_type || s->op() != p.op || !s->applicable(p)) continue;
        pask::KernelKey key = resolve_key(*s, p);
        // neither prebuilt nor compilable here (e.g. no NVRTC): not a candidate
        if (loader && !loader->available(key)) continue;
        out.push_back(Candidate{s, std::move(key), s->cost_us(p)});
    }
    std::stable_sort(out.begin(), out.end(), [](const auto &a, const auto &b) { return a.cost_us < b.cost_us; });
    std::lock_guard<std::mutex> lock(rank_mu_);
    if (ranked_count_ >= 4096) {  // bounded: start over rather than grow without end
        ranked_.clear();
        ranked_count_ = 0;
    }
    ranked_[h].push_back(Ranked{p, out});
    ++ranked_count_;
    return out;
}

std::vector<pask_context::Candidate> pask_context::candidates(const pask::Problem &p, size_t h) const {
    // Ranked by the analytic cost model, which treats every solver alike. A
    // measured run time replaces an estimate only against other measured times:
    // if the first-ranked solver has run on this Problem and another solver has
    // run faster, that one goes first. Run-cost gaps in policy decisions use the
    // measured time wherever there is one.
    std::vector<Candidate> out = ranked(p, h);
    std::vector<double> measured(out.size(), -1.0);
    {
        std::lock_guard<std::mutex> lock(mu_);
        for (size_t i = 0; i < out.size(); ++i) {
            auto it = run_us_.find(run_key(*out[i].solver, h));
            if (it != run_us_.end()) measured[i] = it->second;
        }
    }
    if (!out.empty() && measured[0] >= 0) {
        size_t fastest = 0;
        for (size_t i = 1; i < out.size(); ++i)
            if (measured[i] >= 0 && measured[i] < measured[fastest]) fastest = i;
        // Exploration (GPU contexts that reuse): a candidate the analytic model
        // puts within 2x of the fastest measured one, never run on this
        // Problem, goes first once, so the policy loads it in the background
        // (reusing the fastest meanwhile) and its run gets timed. Analytic
        // models rank within a factor of two at best on a GPU; the device
        // decides between such candidates.
        size_t explore = out.size();
        if (explore_ && device_type != PASK_DEVICE_CPU && reuses() && loader && loader->num_threads() > 0)
            for (size_t i = 0; i < out.size() && explore == out.size(); ++i)
                if (measured[i] < 0 && out[i].cost_us <= 2.0 * out[fastest].cost_us && !is_bad(out[i].key.str()))
                    explore = i;
        std::rotate(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(fastest),
                    out.begin() + static_cast<std::ptrdiff_t>(fastest) + 1);
        std::rotate(measured.begin(), measured.begin() + static_cast<std::ptrdiff_t>(fastest),
                    measured.begin() + static_cast<std::ptrdiff_t>(fastest) + 1);
        if (explore != out.size()) {
            // the rotation moved it one place down if it was ahead of the fastest
            const size_t at = explore < fastest ? explore + 1 : explore;
            std::rotate(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(at),
                        out.begin() + static_cast<std::ptrdiff_t>(at) + 1);
            std::rotate(measured.begin(), measured.begin() + static_cast<std::ptrdiff_t>(at),
                        measured.begin() + static_cast<std::ptrdiff_t>(at) + 1);
        }
    }
    for (size_t i = 0; i < out.size(); ++i)
        if (measured[i] >= 0) out[i].cost_us = measured[i];
    return out;
}

pask::KernelKey pask_context::resolve_key(const pask::Solver &solver, const pask::Problem &p) const {
    // The best target this device runs that the store holds a code object for.
    const auto &targets = backend->targets();
    for (const auto &t : targets) {
        pask::KernelKey key = solver.kernel_for(p, t);
        if (loader ? loader->available(key) : (store->find(key).has_value() || backend->can_compile())) return key;
    }
    return solver.kernel_for(p, targets.front());
}

void pask_context::record_run(const pask::Solver &solver, size_t problem_hash, double us) {
    const uint64_t key = run_key(solver, problem_hash);
    std::lock_guard<std::mutex> lock(mu_);
    bound_for_insert(run_us_, key);
    auto [it, fresh] = run_us_.emplace(key, us);
    if (!fresh) it->second = 0.7 * it->second + 0.3 * us;
}

namespace {
// Timed runs per (solver, Problem) on a GPU: enough to rank solvers by what
// they do on this device, few enough that steady state runs without events.
// The runs before them are not timed: the first run of each pair pays for lazy
// module loading and cold caches, and a fresh process's first inference runs
// without events and host gates (measured on an H100: a timed run costs 5-7 us
// of host time, and the process's first one about 0.3 ms). A Problem that the
// hints name k times (a model repeating a layer shape) has k untimed runs, so
// that the first inference the hints describe has none (at most kMaxWarmUps).
constexpr int kTimedRuns = 6;
constexpr int kMaxWarmUps = 8;
constexpr size_t kMaxPendingTimings = 128;
}  // namespace

void pask_context::count_hint(size_t problem_hash) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = hinted_.find(problem_hash);
    if (it != hinted_.end()) it->second = std::min(it->second + 1, kMaxWarmUps);
    else if (hinted_.size() < 100000) hinted_.emplace(problem_hash, 1);
}

int64_t pask_context::start_timing(const pask::Solver &solver, size_t h) {
    const uint64_t key = run_key(solver, h);
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (pending_timings_.size() >= kMaxPendingTimings) return -1;
        auto hinted = hinted_.find(h);
        const int warm_ups = hinted == hinted_.end() ? 1 : hinted->second;
        bound_for_insert(untimed_runs_, key);
        int &untimed = untimed_runs_[key];
        if (untimed < warm_ups) {
            ++untimed;
            return -1;
        }
        auto it = timed_runs_.find(key);
        if (it != timed_runs_.end() && it->second >= kTimedRuns) return -1;
    }
    const int64_t token = backend->timer_start();
    // counted only when a timer started (none while a stream is being captured)
    if (token >= 0) {
        std::lock_guard<std::mutex> lock(mu_);
        bound_for_insert(timed_runs_, key);
        ++timed_runs_[key];
    }
    return token;
}

void pask_context::finish_timing(int64_t token, const pask::Solver &solver, size_t h) {
    if (token < 0) return;
    backend->timer_stop(token);
    std::lock_guard<std::mutex> lock(mu_);
    pending_timings_.push_back(PendingTiming{token, &solver, h});
}

void pask_context::poll_timings() {
    struct Done {
        const pask::Solver *solver;
        size_t problem_hash;
        double us;
    };
    std::vector<Done> done;
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (pending_timings_.empty()) return;
        // Every entry: several threads' streams finish in no common order.
        std::vector<PendingTiming> still;
        for (const auto &t : pending_timings_) {
            double us = -1;
            if (!backend->timer_poll(t.token, &us)) still.push_back(t);
            else if (us >= 0) done.push_back(Done{t.solver, t.problem_hash, us});
        }
        pending_timings_.swap(still);
    }
    for (const auto &d : done) record_run(*d.solver, d.problem_hash, d.us);
}

bool pask_context::is_bad(const std::string &key) const {
    std::lock_guard<std::mutex> lock(mu_);
    return bad_keys_.count(key) != 0;
}

void pask_context::mark_bad(const std::string &key) {
    std::lock_guard<std::mutex> lock(mu_);
    bad_keys_.insert(key);
}

void pask_context::hint(pask::Problem problem) {
    problem.device = device_type;
    problem.device_index = device_index;
    count_hint(problem.hash());
    if (hints->push(problem)) stats.hints++;
    else stats.hints_dropped++;  // the queue is full (HintQueue::kMaxPending)
    feed_loader();
}

void pask_context::feed_loader() {
    if (!proactive() || !loader || loader->num_threads() == 0) return;
    for (auto &[seq, p] : hints->take_ready()) {
        const auto cands = candidates(p, p.hash());
        const pask::Bucket bucket = p.bucket();
        for (const Candidate &c : cands) {
            if (is_bad(c.key.str())) continue;
            // The best must be built (a cuDNN plan, an NVRTC compile): a prebuilt
            // kernel that serves the Problem too is brought in first, so that the
            // call can reuse it if the build has not landed (reusing policies).
            // Generic kernels share one key across Problems: one load per bucket.
            if (reuses() && !loader->prebuilt(c.key)) {
                const Candidate *quick = nullptr;
                for (const Candidate &o : cands)
                    if (&o != &c && !is_bad(o.key.str()) && loader->prebuilt(o.key) &&
                        (!quick || load_costs.estimate_ms(o.key) < load_costs.estimate_ms(quick->key)))
                        quick = &o;
                if (quick && !resident.contains(bucket, quick->key) && !loader->queued_or_running(quick->key)) {
                    loader->request(quick->key, bucket, seq - (int64_t(1) << 40));  // ahead of every build
                    stats.prefetches++;
                }
            }
            if (!resident.contains(bucket, c.key) && !loader->queued_or_running(c.key)) {
                loader->request(c.key, bucket, seq);
                stats.prefetches++;
            }
            break;  // only the best
        }
    }
}

void pask_context::record_problem(const pask::Problem &p, size_t h) {
    std::lock_guard<std::mutex> lock(mu_);
    if (recorded_.size() >= 100000) return;
    if (recorded_.insert(h).second) record_.push_back(p);
}

void pask_context::save_record(const std::string &path) const {
    std::string out = "{\"format\": \"paskdnn-hints\", \"version\": 1, \"problems\": [";
    {
        std::lock_guard<std::mutex> lock(mu_);
        bool first = true;
        for (const auto &p : record_) {
            out += first ? "\n  " : ",\n  ";
            first = false;
            out += "{\"desc\": " + pask::json::quote(p.str()) + ", \"fields\": [";
            auto f = p.fields();
            for (size_t i = 0; i < f.size(); ++i) out += (i ? ", " : "") + std::to_string(f[i]);
            out += "]}";
        }
    }
    out += "\n]}\n";
    require(write_file_atomic(path, out), PASK_ERROR_INVALID_ARGUMENT, "cannot write " + path);
}

void pask_context::export_trace(const std::string &path) const {
    require(write_file_atomic(path, trace.to_json()), PASK_ERROR_INVALID_ARGUMENT, "cannot write " + path);
}

void pask_context::load_hints_file(const std::string &path) {
    pask::json::Value doc;
    std::string why;
    auto text = pask::read_file(path, pask::kMaxHintsBytes, &why);
    require(text.has_value(), PASK_ERROR_INVALID_ARGUMENT, "cannot read the hints file: " + why);
    try {
        doc = pask::json::parse(*text);
    } catch (const Error &e) {
        fail(PASK_ERROR_INVALID_ARGUMENT, "hints file " + path + ": " + e.what());
    }
    const pask::json::Value *fmt = doc.get("format");
    const pask::json::Value *problems = doc.get("problems");
    require(fmt && fmt->kind == pask::json::Value::String && fmt->str == "paskdnn-hints" && problems &&
                problems->kind == pask::json::Value::Array,
            PASK_ERROR_INVALID_ARGUMENT, "hints file " + path + " is not a paskdnn hints record");
    require(problems->arr.size() <= pask::HintQueue::kMaxPending, PASK_ERROR_INVALID_ARGUMENT,
            "hints file " + path + " names " + std::to_string(problems->arr.size()) + " problems; the limit is " +
                std::to_string(pask::HintQueue::kMaxPending));
    std::vector<pask::Problem> parsed;
    for (size_t i = 0; i < problems->arr.size(); ++i) {
        const pask::json::Value *fields = problems->arr[i].get("fields");
        require(fields && fields->kind == pask::json::Value::Array, PASK_ERROR_INVALID_ARGUMENT,
                "hints file " + path + ": problem " + std::to_string(i) + " has no fields");
        std::vector<int64_t> f;
        for (const auto &v : fields->arr) {
            require(v.kind == pask::json::Value::Number && v.num == double(int64_t(v.num)), PASK_ERROR_INVALID_ARGUMENT,
                    "hints file " + path + ": problem " + std::to_string(i) + " has a non-integer field");
            f.push_back(static_cast<int64_t>(v.num));
        }
        try {
            parsed.push_back(pask::Problem::from_fields(f));
        } catch (const Error &e) {
            fail(PASK_ERROR_INVALID_ARGUMENT, "hints file " + path + ": problem " + std::to_string(i) + ": " + e.what());
        }
    }
    for (auto &p : parsed) {
        p.device = device_type;
        p.device_index = device_index;
        count_hint(p.hash());
        if (hints->push(p)) stats.hints++;
        else stats.hints_dropped++;
    }
}

bool pask_context::queues_prepare() const {
    return (proactive() || policy == pask::Policy::Reuse) && loader && loader->num_threads() > 0;
}

bool pask_context::prime_thread() {
    if (!queues_prepare()) return false;  // CPU contexts have no providers
    bool primed = false;
    for (auto &prov : providers) primed = prov->prime_thread() || primed;
    return primed;
}

void pask_context::execute(const pask::Problem &call, const pask::OpArgs &args) {
    pask::Problem p = call;
    p.device = device_type;
    p.device_index = device_index;
    backend->check_device_pointer(args.x, p.op == PASK_OP_GEMM ? "A" : "x");
    backend->check_device_pointer(args.w, p.op == PASK_OP_GEMM ? "B" : "w");
    backend->check_device_pointer(args.bias, "bias");
    backend->check_device_pointer(args.residual, "residual");
    backend->check_device_pointer(args.y, p.op == PASK_OP_GEMM ? "C" : "y");
    const int64_t t_call = trace.now_us();
    const auto c0 = std::chrono::steady_clock::now();
    stats.calls++;
    const size_t h = p.hash();  // once per call: hashing walks the canonical fields
    if (device_type != PASK_DEVICE_CPU) poll_timings();
    record_problem(p, h);
    auto match = hints->on_call(p, h);
    if (match.matched) stats.hints_matched++;
    stats.hints_dropped += match.dropped;
    if (match.matched) feed_loader();

    auto cands = candidates(p, h);
    if (cands.empty()) {
        bool any_applicable = false;
        for (const pask::Solver *s : allowed.empty() ? pask::all_solvers() : allowed)
            any_applicable = any_applicable || (s->device() == device_type && s->op() == p.op && s->applicable(p));
        if (any_applicable) {
            std::string why;  // vendor libraries that could not be used say why
            for (const auto &prov : providers)
                if (!prov->available()) why += std::string("; ") + prov->name() + ": " + prov->unavailable_reason();
            fail(PASK_ERROR_LOAD_FAILED, "no kernel for " + p.str() + " is available: the code objects are not in " +
                                             store->prebuilt_dir() + " and this backend cannot compile them" + why);
        }
        fail(PASK_ERROR_UNSUPPORTED, "no " + std::string(allowed.empty() ? "" : "allowed ") +
                                         "solver is applicable to " + p.str() + " on " + backend->name());
    }
    const pask::Bucket bucket = p.bucket();
    std::string failures;
    const char *decision = "resident";
    std::vector<const Candidate *> skipped;  // declined this call's values, or ran out of memory on it
    for (const auto &c : cands)
        if (!c.solver->accepts(args)) skipped.push_back(&c);
    for (int attempt = 0; attempt < static_cast<int>(cands.size()) + 1; ++attempt) {
        // Live candidates: drop those whose load failed in this context.
        std::vector<const Candidate *> live;
        for (const auto &c : cands)
            if (!is_bad(c.key.str()) && std::find(skipped.begin(), skipped.end(), &c) == skipped.end())
                live.push_back(&c);
        if (live.empty()) break;
        const Candidate &best = *live.front();

        const Candidate *chosen = nullptr;
        pask::KernelPtr kernel = resident.find(bucket, best.key);
        if (kernel) {
            chosen = &best;
            decision = "resident";
            stats.resident_hits++;
        } else {
            // The best resident applicable kernel, if reuse is allowed.
            const Candidate *alt = nullptr;
            pask::KernelPtr alt_kernel;
            if (reuses())
                for (size_t i = 1; i < live.size() && !alt; ++i)
                    if ((alt_kernel = resident.find(bucket, live[i]->key))) alt = live[i];
            double elapsed = 0;
            const bool best_running = loader->running(best.key, &elapsed);
            auto estimate_ms = [&](const pask::KernelKey &k) {
                return load_costs.estimate_ms(k, !loader->prebuilt(k));
            };
            // A load that has outrun its estimate is not about to land: its
            // estimate was wrong (a default, or the loader was busy), so assume
            // at least half of it again rather than none.
            const double best_est = best_running ? estimate_ms(best.key) : 0.0;
            const double remaining_us =
                best_running ? std::max(best_est - elapsed, 0.5 * best_est) * 1000.0 : 0.0;
            bool wait_best = false;
            const Candidate *load_now = &best;
            if (policy == pask::Policy::Reactive) {
                load_now = &best;
            } else if (alt) {
                // pask: wait for the in-flight best only when it lands sooner than the cost gap
                wait_best = policy == pask::Policy::Pask && best_running &&
                            remaining_us < alt->cost_us - best.cost_us;
                if (!wait_best) {
                    chosen = alt;
                    kernel = alt_kernel;
                    decision = "reuse";
                    stats.reuses++;
                    loader->request(best.key, bucket, hints->head_seq());
                }
            } else if (policy == pask::Policy::Proactive) {
                load_now = &best;
            } else if (reuses()) {
                // Nothing resident applies: the quickest way to a result, counting
                // the load (cheapest to load, when loads dominate as on a GPU).
                double best_total = 1e300;
                for (const Candidate *c : live) {
                    double load_us = (c == &best && best_running) ? remaining_us : estimate_ms(c->key) * 1000.0;
                    double total = load_us + c->cost_us;
                    if (total < best_total) {
                        best_total = total;
                        load_now = c;
                    }
                }
            }
            if (!chosen) {
                const Candidate &target = wait_best ? best : *load_now;
                auto w0 = std::chrono::steady_clock::now();
                bool waited = false;
                try {
                    kernel = loader->load_blocking(target.key, bucket, &waited);
                } catch (const Error &e) {
                    if (e.status() == PASK_ERROR_OUT_OF_MEMORY && live.size() > 1) {
                        skipped.push_back(&target);  // this call only
                    } else if (e.status() == PASK_ERROR_LOAD_FAILED) {
                        mark_bad(target.key.str());
                    } else {
                        throw;
                    }
                    failures += std::string(failures.empty() ? "" : "; ") + e.what();
                    continue;
                }
                stats.blocking_wait_ns += static_cast<int64_t>(ms_since(w0) * 1e6);
                if (waited) {
                    stats.inflight_waits++;
                    decision = "waited";
                } else {
                    stats.blocking_loads++;
                    decision = "blocking_load";
                }
                chosen = &target;
                if (&target != &best && reuses()) loader->request(best.key, bucket, hints->head_seq());
            }
        }
        const auto r0 = std::chrono::steady_clock::now();
        // GPU launches return before the kernel ends: device events time them
        const int64_t timing = device_type == PASK_DEVICE_CPU ? -1 : start_timing(*chosen->solver, h);
        try {
            chosen->solver->run(*kernel, p, args, *backend);
        } catch (const Error &e) {
            backend->timer_release(timing);
            // No room for this solver's workspace: another solver may need less.
            if (e.status() != PASK_ERROR_OUT_OF_MEMORY || live.size() < 2) throw;
            skipped.push_back(chosen);
            failures += std::string(failures.empty() ? "" : "; ") + chosen->solver->name() + ": " + e.what();
            if (trace.enabled())
                trace.complete("out of memory: " + std::string(chosen->solver->name()) + ", trying the next solver",
                               "call", trace.now_us(), 0, "\"error\":" + pask::json::quote(e.what()));
            continue;
        } catch (...) {
            backend->timer_release(timing);
            throw;
        }
        if (device_type == PASK_DEVICE_CPU) record_run(*chosen->solver, h, ms_since(r0) * 1000.0);
        else finish_timing(timing, *chosen->solver, h);
        pask::set_last_solver(chosen->solver->name());
        pask::set_last_decision(std::strcmp(decision, "blocking_load") == 0 ? "load" : decision);
        if (trace.enabled())
            trace.complete(std::string(pask::op_name(p.op)) + " " + chosen->solver->name(), "call", t_call,
                           static_cast<int64_t>(ms_since(c0) * 1000),
                           "\"problem\":" + pask::json::quote(p.str()) + ",\"solver\":" +
                               pask::json::quote(chosen->solver->name()) + ",\"decision\":\"" + decision +
                               "\",\"best\":" + pask::json::quote(best.solver->name()));
        return;
    }
    if (failures.empty() && !skipped.empty() && skipped.size() == cands.size())
        fail(PASK_ERROR_UNSUPPORTED, "no allowed solver accepts this call of " + p.str() +
                                         ": cuDNN plans need alpha = 1 and 16-byte aligned tensors");
    fail(PASK_ERROR_LOAD_FAILED, "no kernel could be loaded for " + p.str() +
                                     (failures.empty() ? std::string() : ": " + failures));
}
