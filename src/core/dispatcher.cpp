#include "dispatcher.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "context.hpp"
#include "error.hpp"
#include "json.hpp"
#include "policy.hpp"

namespace pask {

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void Dispatcher::execute(const Problem &call, const OpArgs &args) {
    Problem p = call;
    p.device = ctx_.device_type;
    p.device_index = ctx_.device_index;
    execute_hashed(p, p.hash(), args);  // hashed once per call: hashing walks the canonical fields
}

void Dispatcher::check_pointers(const Problem &p, const OpArgs &args) const {
    const Backend &b = *ctx_.backend;
    const bool gemm = p.op == PASK_OP_GEMM;
    b.check_device_pointer(args.x, gemm ? "A" : "x");
    b.check_device_pointer(args.w, gemm ? "B" : "w");
    b.check_device_pointer(args.bias, "bias");
    b.check_device_pointer(args.residual, "residual");
    b.check_device_pointer(args.y, gemm ? "C" : "y");
    b.check_device_pointer(args.m, "m");
    b.check_device_pointer(args.a, "a");
    if (p.op == PASK_OP_CAT)
        for (size_t i = 0; i < p.cat_c.size(); ++i) b.check_device_pointer(args.xs[i], "a cat input");
}

// Counters, the record, and the hint queue's head.
void Dispatcher::note_call(const Problem &p, size_t h) {
    ctx_.stats.calls++;
    if (ctx_.device_type != PASK_DEVICE_CPU) ctx_.ranker->poll_timings();
    ctx_.record_problem(p, h);
    auto match = ctx_.hints->on_call(p, h);
    if (match.matched) ctx_.stats.hints_matched++;
    ctx_.stats.hints_dropped += match.dropped;
    if (match.matched) ctx_.feed_loader();
}

void Dispatcher::execute_hashed(const Problem &p, size_t h, const OpArgs &args, DecisionMemo *memo) {
    CallActivity::Call running(ctx_.callers);  // loader steps that would stall this call wait for a gap
    ActiveCapture *cap = ctx_.captures.current();
    if (!cap) {
        execute_on(p, h, args, nullptr, memo);
        return;
    }
    // A call that fails during a capture ends it: the graph would miss the call.
    try {
        void *stream = ctx_.backend->get_stream();
        if (stream != cap->stream) {
            fail(PASK_ERROR_INVALID_ARGUMENT, "this thread is capturing stream " + pointer_text(cap->stream) +
                                                  " on this context; a call on stream " + pointer_text(stream) +
                                                  " cannot be part of that graph");
        }
        execute_on(p, h, args, cap, nullptr);  // a captured call is decided anew (held, counted)
    } catch (const Error &e) {
        ctx_.abandon_capture();
        fail(e.status(), std::string(e.what()) + "; the graph capture on this thread was ended and discarded");
    } catch (...) {
        ctx_.abandon_capture();
        throw;
    }
}

void Dispatcher::execute_on(const Problem &p, size_t h, const OpArgs &args, ActiveCapture *cap, DecisionMemo *memo) {
    check_pointers(p, args);
    const bool traced = ctx_.trace.enabled();  // the clock is read for the trace only
    const int64_t t_call = traced ? ctx_.trace.now_us() : 0;
    const auto c0 = traced ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    note_call(p, h);
    if (memo && run_remembered(p, h, args, *memo, traced ? &c0 : nullptr, t_call)) return;
    const uint64_t epoch = ctx_.ranker->epoch();  // before ranking: a change during it makes the memo stale
    const auto ranked = ctx_.ranker->candidates(p, h);
    const auto &cands = ranked.list;
    if (cands.empty()) fail_no_candidates(p);
    Attempt attempt;
    for (const auto &c : cands)
        if (!c.solver->accepts(args)) attempt.skipped.push_back(&c);
    for (size_t round = 0; round < cands.size() + 1; ++round) {
        const auto alive = live(cands, attempt);
        if (alive.empty()) break;
        Choice choice;
        if (!choose(p, alive, attempt, choice, cap != nullptr)) continue;
        bool timed = false;
        if (run(p, h, args, *choice.chosen->solver, *choice.kernel, alive.size() > 1, attempt.failures, timed) ==
            Ran::out_of_memory) {
            attempt.skipped.push_back(choice.chosen);
            continue;
        }
        if (memo) remember(*memo, epoch, cands, attempt, choice, timed);
        if (cap) {
            cap->calls++;
            if (std::strcmp(choice.decision, "reuse") == 0) cap->reuses++;
            cap->held.push_back(CapturedCall{p, h, choice.chosen->key_str(), choice.kernel});
        }
        set_last_solver(choice.chosen->solver->name());
        set_last_decision(std::strcmp(choice.decision, "blocking_load") == 0 ? "load" : choice.decision);
        if (traced)
            trace_call(p, h, *choice.chosen->solver, choice.decision, *alive.front()->solver, t_call, ms_since(c0));
        return;
    }
    fail_all_attempts(p, cands, attempt);
}

bool Dispatcher::pack_constant(const Problem &p, size_t h, const OpArgs &args) {
    const auto ranked = ctx_.ranker->candidates(p, h);
    const Bucket bucket = p.bucket();
    // The best if resident, else the fastest resident alternative (the one the policy reuses).
    const Candidate *pick = nullptr;
    KernelPtr kernel;
    for (const auto &c : ranked.list) {
        if (ctx_.ranker->is_bad(c.key_str())) continue;
        if (pick && c.cost_us >= pick->cost_us) continue;
        if (KernelPtr k = ctx_.resident.find(bucket, c.key())) {
            pick = &c;
            kernel = std::move(k);
            if (&c == &ranked.list.front()) break;
        }
    }
    if (!pick) return false;
    pick->solver->pack_constant(*kernel, p, args, *ctx_.backend);
    pick->solver->reserve(*kernel, p, *ctx_.backend);
    return true;
}

int64_t Dispatcher::stale(const std::vector<CapturedCall> &held) const {
    int64_t n = 0;
    for (const CapturedCall &c : held) {
        const auto ranked = ctx_.ranker->candidates(c.problem, c.hash);
        for (const auto &cand : ranked.list) {
            if (ctx_.ranker->is_bad(cand.key_str())) continue;
            if (cand.key_str() != c.key && ctx_.resident.contains(c.problem.bucket(), cand.key())) ++n;
            break;  // the best live candidate decides
        }
    }
    return n;
}

std::vector<const Ranker::Candidate *> Dispatcher::live(const std::vector<Candidate> &cands,
                                                        const Attempt &attempt) const {
    // Drop those whose load failed in this context, and those skipped this call.
    std::vector<const Candidate *> out;
    for (const auto &c : cands)
        if (!ctx_.ranker->is_bad(c.key_str()) &&
            std::find(attempt.skipped.begin(), attempt.skipped.end(), &c) == attempt.skipped.end())
            out.push_back(&c);
    return out;
}

bool Dispatcher::choose(const Problem &p, const std::vector<const Candidate *> &live, Attempt &attempt,
                        Choice &out, bool capturing) {
    const Bucket bucket = p.bucket();
    const Candidate &best = *live.front();
    if (KernelPtr k = ctx_.resident.find(bucket, best.key())) {  // the common case, decided without the policy's input
        out = Choice{&best, std::move(k), "resident"};
        ctx_.stats.resident_hits++;
        return true;
    }
    std::vector<KernelPtr> resident(live.size());
    PolicyInput in;
    in.policy = ctx_.policy;
    if (policy_reuses(in.policy))  // the policy reuses the fastest resident alternative
        for (size_t i = 1; i < live.size(); ++i) resident[i] = ctx_.resident.find(bucket, live[i]->key());
    for (size_t i = 0; i < live.size(); ++i)
        in.candidates.push_back({live[i]->cost_us, ctx_.ranker->load_estimate_ms(live[i]->key()), bool(resident[i])});
    in.best_loading = ctx_.loader->running(best.key(), &in.best_loading_for_ms);
    const Decision d = decide(in);
    if (d.action == Decision::Reuse) {
        out = Choice{live[d.index], resident[d.index], "reuse"};
        ctx_.stats.reuses++;
        ctx_.loader->request(best.key(), bucket, ctx_.hints->head_seq());
        // a quicker stand-in that loads in about a millisecond (the quick lane takes it)
        if (d.stand_in) ctx_.loader->request(live[d.stand_in]->key(), bucket, ctx_.hints->head_seq());
        return true;
    }
    const Candidate &target = *live[d.index];
    if (capturing) {
        // Loading (or waiting for a load) cannot be captured: the graph must hold
        // resident kernels only. The best is queued, so a later capture finds it.
        if (policy_hints(ctx_.policy) || policy_reuses(ctx_.policy))
            ctx_.loader->request(best.key(), bucket, ctx_.hints->head_seq());
        fail(PASK_ERROR_UNSUPPORTED,
             "the kernel this call needs for " + p.str() + " is not resident (" + target.solver->name() +
                 "'s would have to be " +
                 (in.best_loading && d.index == 0 ? "waited for" : "loaded") +
                 "): a graph capture runs resident kernels only; run the calls eagerly and wait for the loads "
                 "(pask_context_wait_loads) before capturing");
    }
    const auto w0 = std::chrono::steady_clock::now();
    bool waited = false;
    try {
        CallActivity::Blocked blocked(ctx_.callers);  // nothing held back for this call: it waits anyway
        out.kernel = ctx_.loader->load_blocking(target.key(), bucket, &waited);
    } catch (const Error &e) {
        if (e.status() == PASK_ERROR_OUT_OF_MEMORY && live.size() > 1) attempt.skipped.push_back(&target);  // this call only
        else if (e.status() == PASK_ERROR_LOAD_FAILED) ctx_.ranker->mark_bad(target.key_str());
        else throw;
        attempt.failures += std::string(attempt.failures.empty() ? "" : "; ") + e.what();
        return false;
    }
    ctx_.stats.blocking_wait_ns += static_cast<int64_t>(ms_since(w0) * 1e6);
    if (waited) ctx_.stats.inflight_waits++;
    else ctx_.stats.blocking_loads++;
    out.chosen = &target;
    out.decision = waited ? "waited" : "blocking_load";
    if (d.queue_best) ctx_.loader->request(best.key(), bucket, ctx_.hints->head_seq());
    return true;
}

bool Dispatcher::run_remembered(const Problem &p, size_t h, const OpArgs &args, DecisionMemo &memo,
                                const std::chrono::steady_clock::time_point *traced_from, int64_t t_call) {
    const Solver *solver = nullptr;
    KernelPtr kernel;
    bool timed = false;
    {
        std::lock_guard<std::mutex> lock(memo.mu);
        if (memo.epoch == 0 || memo.epoch != ctx_.ranker->epoch()) return false;
        solver = memo.solver;
        kernel = memo.kernel.lock();
        timed = memo.timed;
    }
    // evicted since (the policy decides what a non-resident best does), or
    // declining these values (a candidate ranked below it may take them)
    if (!kernel || !ctx_.resident.touch(p.bucket(), kernel.get()) || !solver->accepts(args)) return false;
    std::string failures;
    bool now_timed = timed;
    if (run(p, h, args, *solver, *kernel, true, failures, now_timed) == Ran::out_of_memory)
        return false;  // decided anew: the next candidate may need less workspace
    ctx_.stats.resident_hits++;
    if (now_timed && !timed) {
        std::lock_guard<std::mutex> lock(memo.mu);
        if (memo.solver == solver) memo.timed = true;
    }
    set_last_solver(solver->name());
    set_last_decision("resident");
    if (traced_from) trace_call(p, h, *solver, "resident", *solver, t_call, ms_since(*traced_from));
    return true;
}

void Dispatcher::remember(DecisionMemo &memo, uint64_t epoch, const std::vector<Candidate> &cands,
                          const Attempt &attempt, const Choice &c, bool timed) const {
    if (std::strcmp(c.decision, "resident") != 0) return;  // a reuse or a load: the next call may differ
    for (const auto &cand : cands) {
        if (&cand == c.chosen) break;
        // ranked above it: only kernels marked bad (for good, and a new one
        // moves the epoch) may be passed over; one that declined this call's
        // values or ran out of memory might take the next call's
        if (!ctx_.ranker->is_bad(cand.key_str())) return;
    }
    if (std::find(attempt.skipped.begin(), attempt.skipped.end(), c.chosen) != attempt.skipped.end()) return;
    std::lock_guard<std::mutex> lock(memo.mu);
    memo.epoch = epoch;
    memo.solver = c.chosen->solver;
    memo.kernel = c.kernel;
    memo.timed = timed;
}

Dispatcher::Ran Dispatcher::run(const Problem &p, size_t h, const OpArgs &args, const Solver &solver,
                                const Kernel &kernel, bool may_fail_over, std::string &failures, bool &timed) {
    const bool cpu = ctx_.device_type == PASK_DEVICE_CPU;
    // CPU runs by the wall clock, GPU launches (which return before the kernel
    // ends) by device events; only a pair's first timed runs (Ranker)
    const bool host_timed = cpu && !timed && ctx_.ranker->start_host_timing(solver, h, &timed);
    const auto r0 = host_timed ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    const int64_t timing = cpu || timed ? -1 : ctx_.ranker->start_timing(solver, h, &timed);
    try {
        solver.run(kernel, p, args, *ctx_.backend);
    } catch (const Error &e) {
        ctx_.backend->timer_release(timing);
        // No room for this solver's workspace: another solver may need less.
        if (e.status() != PASK_ERROR_OUT_OF_MEMORY || !may_fail_over) throw;
        failures += std::string(failures.empty() ? "" : "; ") + solver.name() + ": " + e.what();
        if (ctx_.trace.enabled())
            ctx_.trace.complete("out of memory: " + std::string(solver.name()) + ", trying the next solver", "call",
                                ctx_.trace.now_us(), 0, "\"error\":" + json::quote(e.what()));
        return Ran::out_of_memory;
    } catch (...) {
        ctx_.backend->timer_release(timing);
        throw;
    }
    if (host_timed) ctx_.ranker->record_run(solver, h, ms_since(r0) * 1000.0);
    else if (!cpu) ctx_.ranker->finish_timing(timing, solver, h);
    return Ran::ok;
}

std::shared_ptr<const std::string> Dispatcher::trace_text(const Problem &p, size_t h) const {
    std::lock_guard<std::mutex> lock(trace_mu_);
    auto it = trace_text_.find(h);
    if (it != trace_text_.end() && it->second.problem == p) return it->second.quoted;
    auto quoted = std::make_shared<const std::string>(json::quote(p.str()));
    if (trace_text_.size() >= 4096) trace_text_.clear();  // bounded: a program of ever new shapes
    trace_text_[h] = TraceText{p, quoted};
    return quoted;
}

void Dispatcher::prepare_trace_text(const Problem &p, size_t h) const {
    if (ctx_.trace.enabled()) trace_text(p, h);
}

void Dispatcher::trace_call(const Problem &p, size_t h, const Solver &chosen, const char *decision,
                            const Solver &best, int64_t t_call, double ms) const {
    ctx_.trace.complete_call(t_call, static_cast<int64_t>(ms * 1000), op_name(p.op), chosen.name(), decision,
                             best.name(), trace_text(p, h));
}

void Dispatcher::fail_no_candidates(const Problem &p) const {
    const bool restricted = !ctx_.options.allowed.empty();
    if (ctx_.ranker->any_applicable(p)) {
        std::string why;  // vendor libraries that could not be used say why
        for (const auto &prov : ctx_.providers)
            if (!prov->available()) why += std::string("; ") + prov->name() + ": " + prov->unavailable_reason();
        fail(PASK_ERROR_LOAD_FAILED, "no kernel for " + p.str() + " is available: the code objects are not in " +
                                         ctx_.store->prebuilt_dir() + " and this backend cannot compile them" +
                                         (ctx_.backend->compile_problem().empty()
                                              ? std::string()
                                              : " (" + ctx_.backend->compile_problem() + ")") +
                                         why);
    }
    fail(PASK_ERROR_UNSUPPORTED, "no " + std::string(restricted ? "allowed " : "") + "solver is applicable to " +
                                     p.str() + " on " + ctx_.backend->name());
}

void Dispatcher::fail_all_attempts(const Problem &p, const std::vector<Candidate> &cands,
                                   const Attempt &attempt) const {
    if (attempt.failures.empty() && !attempt.skipped.empty() && attempt.skipped.size() == cands.size()) {
        std::string needs;  // what the solvers that declined need of a call's values
        for (const Candidate *c : attempt.skipped) {
            const std::string r = c->solver->requirements();
            if (!r.empty() && needs.find(r) == std::string::npos) needs += (needs.empty() ? ": " : "; ") + r;
        }
        fail(PASK_ERROR_UNSUPPORTED, "no allowed solver accepts this call of " + p.str() + needs);
    }
    fail(PASK_ERROR_LOAD_FAILED, "no kernel could be loaded for " + p.str() +
                                     (attempt.failures.empty() ? std::string() : ": " + attempt.failures));
}

}  // namespace pask
