#include "context.hpp"

#include "device_setup.hpp"
#include "error.hpp"
#include "fsutil.hpp"
#include "json.hpp"
#include "registry.hpp"

using pask::Error;
using pask::fail;
using pask::require;
using pask::make_private_dir;
using pask::write_file_atomic;

namespace {
// A killed writer's temporary older than this is swept at start (fsutil.hpp).
constexpr double kStaleTemporaryS = 3600;
}  // namespace

pask_context::pask_context(pask_device_type_t type, int index, const pask_options *opts)
    : device_type(type), device_index(index) {
    const pask::DeviceSetup *setup = pask::find_device_setup(type);
    require(setup != nullptr, PASK_ERROR_INVALID_ARGUMENT, "unknown device type " + std::to_string(int(type)));
    require(type != PASK_DEVICE_CPU || index == 0, PASK_ERROR_INVALID_ARGUMENT,
            "the CPU device has index 0, got " + std::to_string(index));
    require(pask::registry_problem().empty(), PASK_ERROR_INTERNAL, pask::registry_problem());
    options = pask::parse_options(type, opts);
    policy = options.policy;
    cache_dir = options.cache_dir;
    debug_load_delay_ms = options.debug_load_delay_ms;
    trace.set_enabled(options.trace);
    resident.set_capacity(static_cast<size_t>(options.resident_capacity));
    hints = std::make_unique<pask::HintQueue>(static_cast<size_t>(options.lookahead));
    backend = setup->make_backend(index, options);
    store = std::make_unique<pask::KernelStore>(
        options.kernel_dir.empty() ? pask::KernelStore::default_prebuilt_dir() : options.kernel_dir,
        backend->object_suffix());
    if (backend->can_compile()) store->set_user_cache(cache_dir);
    ranker = std::make_unique<pask::Ranker>(options, type, *backend, *store, load_costs);
    read_cache_folder();
    // Parsed before any thread starts, so a bad file fails creation cleanly.
    if (!options.hints_file.empty()) {
        try {
            load_hints_file(options.hints_file);
        } catch (const Error &e) {
            fail(e.status(), std::string(e.what()) + " (from " + options.hints_from + ")");
        }
    }
    providers = setup->make_providers(*backend, options, &trace);
    dispatcher = std::make_unique<pask::Dispatcher>(*this);
    start_loader();
}

// Like the kernel cache: a folder other users could write to is not trusted.
void pask_context::read_cache_folder() {
    if (cache_dir.empty() || !pask::dir_is_private(cache_dir, nullptr)) return;
    load_costs.load_file(load_costs_path());
    pask::sweep_stale_temporaries(cache_dir, kStaleTemporaryS);
    pask::sweep_stale_temporaries(cache_dir + "/kernels", kStaleTemporaryS);
}

void pask_context::start_loader() {
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
        // Out of memory while building is a moment, not a property of the kernel,
        // unless it repeats (Ranker::kMaxOutOfMemory).
        if (status == PASK_ERROR_OUT_OF_MEMORY) ranker->note_out_of_memory(key.str());
        else ranker->mark_bad(key.str());
    };
    hooks.traced = [this](const pask::KernelKey &key, int64_t start, int64_t dur, const std::string &error) {
        // a failed load says why (the loader's message: the provider's refusal, the compiler's log)
        trace.complete(std::string(error.empty() ? "load " : "load failed ") + key.object + "@" + key.target, "load",
                       start, dur,
                       "\"kernel\":" + pask::json::quote(key.str()) +
                           (error.empty() ? std::string() : ",\"error\":" + pask::json::quote(error.substr(0, 2000))));
    };
    // GPU contexts compile and build plans on their loader threads (50-500 ms
    // each): a quick lane keeps prebuilt stand-ins from queuing behind them.
    // On the CPU every load is a prebuilt one.
    loader = std::make_unique<pask::Loader>(*backend, *store, options.loader_threads, std::move(hooks),
                                            options.debug_load_delay_ms, device_type != PASK_DEVICE_CPU);
    for (auto &p : providers) {
        p->set_callers(&callers, int64_t(options.loader_yield_ms) * 1000);
        loader->add_provider(p.get());
    }
    if (!providers.empty() && options.loader_yield_ms > 0) callers.enable();  // before any call
    ranker->set_loader(loader.get());
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
    const pask::DeviceSetup *setup = pask::find_device_setup(type);
    return setup ? setup->device_count() : 0;
}

pask_context::~pask_context() { close(); }

void pask_context::close() {
    std::lock_guard<std::mutex> lock(close_mu_);
    if (closed_) return;
    if (!gate.close()) return;  // inherited through fork(): nothing here may be joined or freed
    closed_ = true;
    loader.reset();  // joins the loader threads; queued loads are abandoned
    pask::remove_graphs_of(this);  // their device graphs go before the device
    if (debug_load_delay_ms == 0 && load_costs.dirty() && make_private_dir(cache_dir) &&
        pask::dir_is_private(cache_dir, nullptr))
        load_costs.save_file(load_costs_path());
    resident.clear();
    providers.clear();
    hints.reset();
    store.reset();
    backend.reset();
}

bool pask_context::abandon_capture() noexcept {
    if (!captures.current()) return false;
    try {
        const pask::ActiveCapture c = captures.take();
        backend->capture_abort(c.stream);
        if (trace.enabled())
            trace.complete("graph capture abandoned", "graph", c.t_begin_us, trace.now_us() - c.t_begin_us,
                           "\"calls\":" + std::to_string(c.calls));
    } catch (...) {  // nothing more can be released
    }
    return true;
}

void pask_context::refuse_during_capture(const char *what) {
    if (!captures.current()) return;
    abandon_capture();
    pask::fail(PASK_ERROR_INVALID_ARGUMENT,
               std::string(what) + " cannot run while this thread captures a graph on the context (it synchronises "
                                   "or allocates, which a graph cannot hold); the capture was ended and discarded");
}

std::string pask_context::load_costs_path() const {
    return cache_dir.empty() ? std::string() : cache_dir + "/load_costs.json";
}

void pask_context::hint(pask::Problem problem) {
    problem.device = device_type;
    problem.device_index = device_index;
    options.set_precision(problem);
    ranker->count_hint(problem.hash());
    if (hints->push(problem)) stats.hints++;
    else stats.hints_dropped++;  // the queue is full (HintQueue::kMaxPending)
    feed_loader();
}

void pask_context::feed_loader() {
    if (!proactive() || !loader || loader->num_threads() == 0) return;
    for (auto &[seq, p] : hints->take_ready()) {
        const auto ranked = ranker->candidates(p, p.hash());
        const auto &cands = ranked.list;
        const pask::Bucket bucket = p.bucket();
        for (const auto &c : cands) {
            if (ranker->is_bad(c.key_str())) continue;
            // Reusing policies load prebuilt kernels (a module load: milliseconds)
            // ahead of every build (a cuDNN plan, an NVRTC compile: tens of them),
            // so that each hinted layer soon has a kernel to run: a best that is
            // prebuilt itself, else a prebuilt kernel that serves the Problem too,
            // which the call reuses if the build has not landed. Generic kernels
            // share one key across Problems: one load per bucket.
            const int64_t ahead = seq - (int64_t(1) << 40);
            const bool best_prebuilt = loader->prebuilt(c.key());
            if (reuses() && !best_prebuilt) {
                const pask::Ranker::Candidate *quick = nullptr;
                for (const auto &o : cands)
                    if (&o != &c && !ranker->is_bad(o.key_str()) && loader->prebuilt(o.key()) &&
                        (!quick || load_costs.estimate_ms(o.key()) < load_costs.estimate_ms(quick->key())))
                        quick = &o;
                if (quick && !resident.contains(bucket, quick->key()) && !loader->queued_or_running(quick->key())) {
                    loader->request(quick->key(), bucket, ahead);
                    stats.prefetches++;
                }
            }
            if (!resident.contains(bucket, c.key()) && !loader->queued_or_running(c.key())) {
                loader->request(c.key(), bucket, reuses() && best_prebuilt ? ahead : seq);
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
        ranker->count_hint(p.hash());
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
