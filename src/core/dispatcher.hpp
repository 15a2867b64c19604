// Dispatcher: the call path. Problem -> candidates (Ranker) -> the policy's
// decision (Policy) over what is resident (ResidentSet) and loading (Loader)
// -> kernel -> run -> trace event.
//
//   execute ─> hints.on_call ─> ranker.candidates ─┬─> resident? ──────────────┐
//                                                  └─> decide(): reuse / load ─┴─> solver.run ─> trace
//
// A load that fails marks its kernel bad and the next candidate is tried; a
// run out of memory (a workspace) moves the call to the next solver.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "capture.hpp"
#include "kernel.hpp"
#include "problem.hpp"
#include "ranker.hpp"
#include "solver.hpp"

struct pask_context;

namespace pask {

// A prepared call's remembered decision (pask_plan): the solver and resident
// kernel its best candidate ran on, taken at a Ranker epoch. While the epoch
// holds (no run time recorded, no kernel marked bad since) and the kernel is
// still resident, the best candidate and its kernel are the same, so an
// execution runs it without ranking, candidates or policy: the dispatch of a
// prepared call to a resident kernel. A plan may run on several threads.
struct DecisionMemo {
    std::mutex mu;
    uint64_t epoch = 0;  // 0: nothing remembered
    const Solver *solver = nullptr;
    std::weak_ptr<const Kernel> kernel;  // the resident set owns it
    bool timed = false;  // the pair has had all its timed runs: no clock, no events
};

class Dispatcher {
public:
    explicit Dispatcher(pask_context &ctx) : ctx_(ctx) {}
    // Runs call (its device fields are set here) with args.
    void execute(const Problem &call, const OpArgs &args);
    // The same, for a Problem whose device fields are set and whose hash is known
    // (a plan); memo: the plan's remembered decision (nullptr: none).
    void execute_hashed(const Problem &p, size_t hash, const OpArgs &args, DecisionMemo *memo = nullptr);
    // Packs constant weights (args.packed) for the kernel a call would run now
    // when that kernel is resident: the best live candidate's, or else the
    // fastest resident alternative's (the one the policy would reuse), and readies the
    // calling thread's scratch for it (Solver::reserve). Returns whether a
    // resident kernel was found; nothing runs, nothing is counted.
    bool pack_constant(const Problem &p, size_t hash, const OpArgs &args);
    // Captured calls whose kernel is no longer what the call would run now: its
    // best candidate is resident and is another kernel (it landed, or was
    // measured faster, since the capture).
    int64_t stale(const std::vector<CapturedCall> &held) const;
    // Makes the trace's text of a prepared call's Problem now, when the context
    // traces, so that its first call does not (set-up pays it).
    void prepare_trace_text(const Problem &p, size_t hash) const;

private:
    using Candidate = Ranker::Candidate;
    struct Attempt {
        std::vector<const Candidate *> skipped;  // declined this call's values, or ran out of memory on it
        std::string failures;
    };
    struct Choice {
        const Candidate *chosen = nullptr;
        KernelPtr kernel;
        const char *decision = "resident";
    };

    // The call itself; cap: the calling thread's graph capture (nullptr: none).
    void execute_on(const Problem &p, size_t hash, const OpArgs &args, ActiveCapture *cap, DecisionMemo *memo);
    // Runs the call on memo's decision when it still holds; false: decide anew.
    // traced_from: the call's start when it is traced (its event says so).
    bool run_remembered(const Problem &p, size_t h, const OpArgs &args, DecisionMemo &memo,
                        const std::chrono::steady_clock::time_point *traced_from, int64_t t_call);
    // Remembers a resident decision for the best candidate when nothing ranked
    // above it was passed over for this call's values (epoch: before ranking).
    void remember(DecisionMemo &memo, uint64_t epoch, const std::vector<Candidate> &cands, const Attempt &attempt,
                  const Choice &c, bool timed) const;
    void check_pointers(const Problem &p, const OpArgs &args) const;
    void note_call(const Problem &p, size_t h);
    [[noreturn]] void fail_no_candidates(const Problem &p) const;
    [[noreturn]] void fail_all_attempts(const Problem &p, const std::vector<Candidate> &cands,
                                        const Attempt &attempt) const;
    std::vector<const Candidate *> live(const std::vector<Candidate> &cands, const Attempt &attempt) const;
    // The kernel to run, per the policy; false when a load failed (try again).
    // During a capture (capturing) only resident kernels may run: a load or a
    // wait for one is refused (PASK_ERROR_UNSUPPORTED).
    bool choose(const Problem &p, const std::vector<const Candidate *> &live, Attempt &attempt, Choice &out,
                bool capturing);
    // Runs solver's kernel; out_of_memory when it ran out of memory and another
    // may run (may_fail_over). timed: whether the pair has had all its timed
    // runs; true on entry skips timing, set when this run finds it so.
    enum class Ran { ok, out_of_memory };
    Ran run(const Problem &p, size_t h, const OpArgs &args, const Solver &solver, const Kernel &kernel,
            bool may_fail_over, std::string &failures, bool &timed);
    void trace_call(const Problem &p, size_t h, const Solver &chosen, const char *decision, const Solver &best,
                    int64_t t_call, double ms) const;
    // The trace's quoted text of p (h its hash), made once and remembered.
    std::shared_ptr<const std::string> trace_text(const Problem &p, size_t h) const;

    pask_context &ctx_;
    // The trace's quoted text of each problem, by hash: formatting it cost
    // about as much as the rest of a small call's dispatch (2 of 4.3 us), so
    // it is made once, on a problem's first traced call or when a plan is
    // prepared (prepare_trace_text), and reused. Made in the first call, the
    // texts cost a fresh process's first MobileNetV2 inference about 0.15 ms
    // (54 calls; 2-core EPYC, issue 19). The event holds it shared, with the
    // static names, and is formatted at export (Trace::complete_call).
    struct TraceText {
        Problem problem;
        std::shared_ptr<const std::string> quoted;
    };
    mutable std::mutex trace_mu_;
    mutable std::unordered_map<size_t, TraceText> trace_text_;
};

}  // namespace pask
