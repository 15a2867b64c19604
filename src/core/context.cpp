#include "context.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <thread>

#include "../backends/cpu/cpu_backend.hpp"
#include "error.hpp"
#include "registry.hpp"

using pask::Error;
using pask::fail;
using pask::require;

namespace {

int parse_int(const std::string &key, const std::string &value, long lo, long hi) {
    errno = 0;
    char *end = nullptr;
    long v = std::strtol(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || errno != 0 || v < lo || v > hi)
        fail(PASK_ERROR_INVALID_ARGUMENT, "option " + key + " must be an integer in [" + std::to_string(lo) + ", " +
                                              std::to_string(hi) + "], got '" + value + "'");
    return static_cast<int>(v);
}

std::string default_cache_dir() {
    if (const char *d = std::getenv("PASKDNN_CACHE_DIR"); d && *d) return d;
    if (const char *d = std::getenv("XDG_CACHE_HOME"); d && *d) return std::string(d) + "/paskdnn";
    if (const char *d = std::getenv("HOME"); d && *d) return std::string(d) + "/.cache/paskdnn";
    return "";
}

}  // namespace

pask_context::pask_context(pask_device_type_t type, int index, const pask_options *options)
    : device_type(type), device_index(index) {
    if (type == PASK_DEVICE_CUDA || type == PASK_DEVICE_HIP)
        fail(PASK_ERROR_UNSUPPORTED, std::string("device type ") + pask::device_name(type) +
                                         " is not supported by this build of paskdnn yet (CPU only)");
    require(type == PASK_DEVICE_CPU, PASK_ERROR_INVALID_ARGUMENT, "unknown device type " + std::to_string(int(type)));
    require(index == 0, PASK_ERROR_INVALID_ARGUMENT, "the CPU device has index 0, got " + std::to_string(index));

    int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::string kernel_dir, isa;
    cache_dir = default_cache_dir();
    if (options) {
        for (const auto &[key, value] : options->values) {
            if (key == "policy") {
                require(value == "reactive" || value == "proactive" || value == "reuse" || value == "pask",
                        PASK_ERROR_INVALID_ARGUMENT,
                        "policy must be reactive, proactive, reuse or pask, got '" + value + "'");
                require(value == "reactive", PASK_ERROR_UNSUPPORTED,
                        "policy '" + value + "' is not implemented yet; this build offers 'reactive'");
                policy = value;
            } else if (key == "num_threads") {
                threads = parse_int(key, value, 1, 1024);
            } else if (key == "kernel_dir") {
                require(!value.empty(), PASK_ERROR_INVALID_ARGUMENT, "kernel_dir must not be empty");
                kernel_dir = value;
            } else if (key == "cache_dir") {
                require(!value.empty(), PASK_ERROR_INVALID_ARGUMENT, "cache_dir must not be empty");
                cache_dir = value;
            } else if (key == "cpu_isa") {
                isa = value;
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
                     "unknown option '" + key + "' (known: policy, num_threads, kernel_dir, cache_dir, cpu_isa, solvers)");
            }
        }
    }
    backend = std::make_unique<pask::CpuBackend>(threads, isa);
    store = std::make_unique<pask::KernelStore>(kernel_dir.empty() ? pask::KernelStore::default_prebuilt_dir() : kernel_dir);
    loader = std::make_unique<pask::Loader>(*backend, *store);
}

pask_context::~pask_context() {
    // Kernels must go before the backend that loaded them.
    resident.clear();
    loader.reset();
}

std::vector<const pask::Solver *> pask_context::candidates(const pask::Problem &p) const {
    std::vector<std::pair<double, const pask::Solver *>> ranked;
    const auto &pool = allowed.empty() ? pask::all_solvers() : allowed;
    for (const pask::Solver *s : pool)
        if (s->device() == device_type && s->op() == p.op && s->applicable(p)) ranked.emplace_back(s->cost_us(p), s);
    std::stable_sort(ranked.begin(), ranked.end(), [](const auto &a, const auto &b) { return a.first < b.first; });
    std::vector<const pask::Solver *> out;
    for (const auto &r : ranked) out.push_back(r.second);
    return out;
}

pask::KernelKey pask_context::resolve_key(const pask::Solver &solver, const pask::Problem &p) const {
    // The best target this device runs that the store holds a code object for.
    const auto &targets = backend->targets();
    for (const auto &t : targets) {
        pask::KernelKey key = solver.kernel_for(p, t);
        if (loader->available(key)) return key;
    }
    return solver.kernel_for(p, targets.front());
}

bool pask_context::is_bad(const std::string &key) const {
    std::lock_guard<std::mutex> lock(bad_mu_);
    return bad_keys_.count(key) != 0;
}

void pask_context::mark_bad(const std::string &key) {
    std::lock_guard<std::mutex> lock(bad_mu_);
    bad_keys_.insert(key);
}

void pask_context::execute(const pask::Problem &p, const pask::OpArgs &args) {
    auto solvers = candidates(p);
    if (solvers.empty())
        fail(PASK_ERROR_UNSUPPORTED, "no " + std::string(allowed.empty() ? "" : "allowed ") +
                                         "solver is applicable to " + p.str() + " on " + backend->name());
    const pask::Bucket bucket = p.bucket();
    std::string failures;
    for (const pask::Solver *s : solvers) {
        pask::KernelKey key = resolve_key(*s, p);
        const std::string id = key.str();
        if (is_bad(id)) continue;
        pask::KernelPtr kernel = resident.find(bucket, key);
        if (!kernel) {
            // reactive: block on the load of the best applicable solver's kernel
            try {
                kernel = loader->load(key);
            } catch (const Error &e) {
                if (e.status() != PASK_ERROR_LOAD_FAILED) throw;
                mark_bad(id);
                failures += std::string(failures.empty() ? "" : "; ") + e.what();
                continue;
            }
            resident.insert(bucket, kernel);
        }
        s->run(*kernel, p, args, *backend);
        pask::set_last_solver(s->name());
        return;
    }
    fail(PASK_ERROR_LOAD_FAILED, "no kernel could be loaded for " + p.str() +
                                     (failures.empty() ? std::string() : ": " + failures));
}
