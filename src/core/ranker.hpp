// Ranker: orders a Problem's candidates. The analytic cost model ranks every
// applicable solver once per Problem (remembered); measured run times (CPU:
// wall clock; GPU: device events on the first few runs, read back later
// without blocking) move the fastest measured candidate first; exploration
// (GPU, option "explore") tries an unmeasured candidate within 2x; a
// cross-provider trial (GPU, reusing policies with loader threads) tries the
// best-estimated untimed candidate of each other provider when the fastest
// measured one runs several times over its estimate; on the CPU, a candidate
// whose estimate is below the fastest measured time gets a trial when that
// one runs 3x over its own estimate. Kernels
// whose load failed in this context are remembered as bad.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "backend.hpp"
#include "kernel_store.hpp"
#include "load_costs.hpp"
#include "loader.hpp"
#include "options.hpp"
#include "problem.hpp"
#include "solver.hpp"

namespace pask {

class Ranker {
public:
    // One row of a Problem's analytic ranking (computed once, shared).
    struct Entry {
        const Solver *solver;
        KernelKey key;
        std::string key_str;  // key.str(), built once
        double cost_us;       // the analytic estimate
    };
    // A candidate of one call: a row of the ranking, with the measured run time
    // where there is one. Points into the ranking, which Candidates keeps alive.
    struct Candidate {
        const Solver *solver;
        const Entry *entry;
        double cost_us;  // measured run time where there is one, else the estimate
        const KernelKey &key() const { return entry->key; }
        const std::string &key_str() const { return entry->key_str; }
    };
    struct Candidates {
        std::shared_ptr<const std::vector<Entry>> ranking;
        std::vector<Candidate> list;  // best first
    };

    Ranker(const Options &options, pask_device_type_t type, Backend &backend, KernelStore &store,
           LoadCosts &load_costs);
    // The loader, once it exists (candidates need it to tell what can load).
    void set_loader(Loader *loader) { loader_ = loader; }

    // The candidates of p (h is its hash), best first.
    Candidates candidates(const Problem &p, size_t h) const;
    // Whether any allowed solver is applicable to p (to tell "unsupported"
    // from "nothing can be loaded").
    bool any_applicable(const Problem &p) const;
    // Estimated load time of a kernel: measured, else a default that knows
    // whether it must be compiled first.
    double load_estimate_ms(const KernelKey &key) const;

    bool is_bad(const std::string &key) const;
    void mark_bad(const std::string &key);
    // A load that ran out of device memory: a moment, so the kernel stays a
    // candidate, unless it happens kMaxOutOfMemory times (then it is marked bad,
    // so that a layer does not re-queue a load that keeps failing, run after run).
    static constexpr int kMaxOutOfMemory = 3;
    void note_out_of_memory(const std::string &key);

    // Run times: the first kTimedRuns runs of each (solver, Problem) after its
    // untimed warm-ups; CPU runs by the wall clock (start_host_timing says
    // whether to read it, record_run takes the result), GPU runs by device
    // events (start_timing / finish_timing, read back by poll_timings). Both
    // set *done (where given) once the pair has had all its timed runs.
    void record_run(const Solver &solver, size_t problem_hash, double us);
    void count_hint(size_t problem_hash);  // hints given per Problem: its untimed runs
    bool start_host_timing(const Solver &solver, size_t problem_hash, bool *done = nullptr);
    int64_t start_timing(const Solver &solver, size_t problem_hash, bool *done = nullptr);
    void finish_timing(int64_t token, const Solver &solver, size_t problem_hash);
    void poll_timings();

    // Changes whenever a ranking could change (a run time recorded, a kernel
    // marked bad): a decision taken at one epoch holds while it stays.
    uint64_t epoch() const { return epoch_.load(std::memory_order_acquire); }

private:
    std::shared_ptr<const std::vector<Entry>> ranked(const Problem &p, size_t h) const;
    KernelKey resolve_key(const Solver &solver, const Problem &p) const;
    void put_measured_first(std::vector<Candidate> &out, size_t h) const;
    // The candidate (index into out) that gets a cross-provider trial, or
    // out.size() for none (see kTrialRatio in ranker.cpp).
    size_t trial(const std::vector<Candidate> &out, const std::vector<double> &measured, size_t fastest) const;
    // CPU contexts: the candidate (index into out) that gets a trial when the
    // fastest measured one runs far over its estimate (see kCpuTrialRatio in
    // ranker.cpp), or out.size() for none.
    size_t cpu_trial(const std::vector<Candidate> &out, const std::vector<double> &measured, size_t fastest) const;
    // mu_ held: whether this run of (solver, Problem) key is timed (and counts
    // it): not one of its untimed warm-ups, nor past kTimedRuns timed runs.
    bool take_timed_run(uint64_t key, size_t problem_hash, bool *done);

    const Options &options_;
    const pask_device_type_t type_;
    Backend &backend_;
    KernelStore &store_;
    LoadCosts &load_costs_;
    Loader *loader_ = nullptr;

    mutable std::mutex mu_;  // bad keys, measured run costs, timings
    std::unordered_set<std::string> bad_keys_;
    std::unordered_map<std::string, int> out_of_memory_;  // failures per key, below kMaxOutOfMemory
    std::atomic<bool> any_bad_{false};  // read without the lock on every call
    std::atomic<uint64_t> epoch_{1};     // see epoch()
    std::unordered_map<uint64_t, double> run_us_;  // EMA per (solver, problem)
    struct PendingTiming {
        int64_t token;
        const Solver *solver;
        size_t problem_hash;
    };
    std::vector<PendingTiming> pending_timings_;      // in launch order
    std::unordered_map<uint64_t, int> timed_runs_;    // timings started per (solver, problem)
    std::unordered_map<uint64_t, int> untimed_runs_;  // untimed (warm-up) runs per (solver, problem)
    std::unordered_map<size_t, int> hinted_;          // hints given per problem hash (counted up to kMaxWarmUps)
    struct Ranked {
        Problem problem;
        std::shared_ptr<const std::vector<Entry>> ranked;
    };
    mutable std::mutex rank_mu_;
    mutable std::unordered_map<size_t, std::vector<Ranked>> ranked_;  // analytic ranking per Problem
    mutable size_t ranked_count_ = 0;
};

}  // namespace pask
