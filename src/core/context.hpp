// Context: one device, its backend, kernel store, loader threads, resident
// set, hint queue, policy, stats and trace. The object behind pask_context_t.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "backend.hpp"
#include "call_gate.hpp"
#include "hint_queue.hpp"
#include "kernel_store.hpp"
#include "loader.hpp"
#include "provider.hpp"
#include "resident_set.hpp"
#include "solver.hpp"
#include "trace.hpp"

struct pask_options {
    std::map<std::string, std::string> values;
};

namespace pask {

enum class Policy { Reactive, Proactive, Reuse, Pask };
const char *policy_name(Policy p);

// Measured load times per kernel, persisted in the cache folder so the next
// process knows them (load_costs.json, written atomically).
class LoadCosts {
public:
    void load_file(const std::string &path);
    void save_file(const std::string &path) const;
    void record(const KernelKey &key, double ms);
    // Measured, else a default: about a millisecond to load a prebuilt code
    // object, about 100 ms when it must be compiled first (NVRTC).
    double estimate_ms(const KernelKey &key, bool needs_compile = false) const;
    bool dirty() const;
    // Entries kept (on load and as recorded): the load costs of this many kernels.
    static constexpr size_t kMaxEntries = 4096;
    static bool looks_like_kernel_key(const std::string &k);

private:
    mutable std::mutex mu_;
    std::unordered_map<std::string, double> ms_;
    bool dirty_ = false;
};

}  // namespace pask

struct pask_context {
    pask_context(pask_device_type_t device_type, int device_index, const pask_options *options);
    ~pask_context();
    // Refuses new calls, waits for the calls in flight, then joins the loader
    // threads, saves the load costs and releases kernels, providers and the
    // device. Idempotent; a no-op in a child of fork() (see CallGate).
    void close();

    // Dispatcher: Problem -> policy decision -> kernel -> run.
    // pask_prime_thread: the providers' per-thread set-up, where prepare() was queued.
    bool prime_thread();
    void execute(const pask::Problem &problem, const pask::OpArgs &args);
    // Hints: an upcoming Problem, in execution order.
    void hint(pask::Problem problem);
    void save_record(const std::string &path) const;
    void load_hints_file(const std::string &path);
    void export_trace(const std::string &path) const;
    // Devices of a type this process can use (0 when the driver is missing).
    static int device_count(pask_device_type_t type);

    pask_device_type_t device_type;
    int device_index;
    mutable pask::CallGate gate;  // calls in flight, close, fork
    pask::Policy policy = pask::Policy::Pask;
    std::string cache_dir;
    int debug_load_delay_ms = 0;  // > 0: loads are artificially slow; their times are not persisted
    std::unique_ptr<pask::Backend> backend;
    std::unique_ptr<pask::KernelStore> store;
    pask::ResidentSet resident;
    pask::Stats stats;
    pask::Trace trace;
    std::unique_ptr<pask::HintQueue> hints;
    pask::LoadCosts load_costs;
    std::vector<std::unique_ptr<pask::Provider>> providers;  // vendor libraries (cuDNN) on this device
    std::unique_ptr<pask::Loader> loader;  // last: its threads use the members above
    std::vector<const pask::Solver *> allowed;  // empty: every solver

private:
    struct Candidate {
        const pask::Solver *solver;
        pask::KernelKey key;
        double cost_us;
    };
    std::vector<Candidate> candidates(const pask::Problem &problem, size_t hash) const;
    std::vector<Candidate> ranked(const pask::Problem &problem, size_t hash) const;
    pask::KernelKey resolve_key(const pask::Solver &solver, const pask::Problem &problem) const;
    void record_run(const pask::Solver &solver, size_t problem_hash, double us);
    // GPU run times: the first few runs of each (solver, Problem) are timed
    // with device events and read back later, without blocking.
    void count_hint(size_t problem_hash);  // hints given per Problem: its untimed runs (start_timing)
    int64_t start_timing(const pask::Solver &solver, size_t problem_hash);
    void finish_timing(int64_t token, const pask::Solver &solver, size_t problem_hash);
    void poll_timings();
    bool is_bad(const std::string &key) const;
    void mark_bad(const std::string &key);
    void feed_loader();
    void record_problem(const pask::Problem &problem, size_t hash);
    std::string load_costs_path() const;

    bool explore_ = false;  // option "explore": try unmeasured GPU candidates (see candidates())
    bool proactive() const { return policy == pask::Policy::Proactive || policy == pask::Policy::Pask; }
    // Whether the constructor queues the providers' prepare() on a loader thread.
    bool queues_prepare() const;
    bool reuses() const { return policy == pask::Policy::Reuse || policy == pask::Policy::Pask; }

    std::mutex close_mu_;  // a second close() returns once the first one's teardown is done
    bool closed_ = false;
    mutable std::mutex mu_;  // bad keys, measured run costs, record
    std::unordered_set<std::string> bad_keys_;
    std::unordered_map<uint64_t, double> run_us_;  // EMA per (solver, problem)
    struct PendingTiming {
        int64_t token;
        const pask::Solver *solver;
        size_t problem_hash;
    };
    std::vector<PendingTiming> pending_timings_;   // in launch order
    std::unordered_map<uint64_t, int> timed_runs_;  // timings started per (solver, problem)
    std::unordered_map<uint64_t, int> untimed_runs_;  // untimed (warm-up) runs per (solver, problem)
    std::unordered_map<size_t, int> hinted_;          // hints given per problem hash (counted up to kMaxWarmUps)
    struct Ranked {
        pask::Problem problem;
        std::vector<Candidate> ranked;
    };
    mutable std::mutex rank_mu_;
    mutable std::unordered_map<size_t, std::vector<Ranked>> ranked_;  // analytic ranking per Problem
    mutable size_t ranked_count_ = 0;
    std::vector<pask::Problem> record_;
    std::unordered_set<size_t> recorded_;
};
