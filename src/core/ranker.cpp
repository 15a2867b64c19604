#include "ranker.hpp"

#include <algorithm>

#include "policy.hpp"
#include "registry.hpp"

namespace pask {

namespace {

// Per-(solver, Problem) run times and run counts are bounded like the trace
// (200k events) and the record (100k Problems): a process that sees millions
// of distinct shapes forgets an old one for each new one.
constexpr size_t kMaxRunEntries = 200000;
template <typename Map, typename Key>
void bound_for_insert(Map &m, const Key &key) {
    if (m.size() >= kMaxRunEntries && m.find(key) == m.end()) m.erase(m.begin());
}

uint64_t run_key(const Solver &s, size_t problem_hash) {
    return (uint64_t(problem_hash) * 0x9E3779B97F4A7C15ull) ^ uint64_t(s.id());
}

// Timed runs per (solver, Problem): enough to rank solvers by what they do on
// this device, few enough that steady state runs without events (GPU) or
// clock reads (CPU), and that a prepared call's decision, once the runs are
// in, holds (Dispatcher's DecisionMemo).
// The runs before them are not timed: the first run of each pair pays for lazy
// module loading and cold caches, and a fresh process's first inference runs
// without events and host gates (measured on an H100: a timed run costs 5-7 us
// of host time, and the process's first one about 0.3 ms). A Problem that the
// hints name k times (a model repeating a layer shape) has k untimed runs, so
// that the first inference the hints describe has none (at most kMaxWarmUps).
constexpr int kTimedRuns = 6;
// Cross-provider trials: when the fastest measured candidate runs more than
// kTrialRatio times its analytic estimate, and kTrialFloorUs over it, the
// estimates are wrong for this Problem (issue 17: cuDNN plans for MobileNetV2's
// 1x1 convolutions at batch 32 measured 8.6x slower than paskdnn's kernel,
// which never ran), so each other provider's best-estimated candidate gets a
// timed trial. The floor keeps small kernels out of it: a timed run of a
// kernel that waits for the host's launch reads the launch too (3-8 us a call
// on an H100), so a few microseconds over an estimate say nothing. It was
// 100 us, which left MobileNetV2's 1x1 expansions at batch 1 on a cuDNN
// kernel of 38 us (estimate 4 us; H100, session 17) whose alternative was
// never timed: 0.69 of the captured runner's 0.86 ms of kernels.
constexpr double kTrialRatio = 2.0;
constexpr double kTrialFloorUs = 20.0;
// CPU trials: when the fastest measured candidate runs more than
// kCpuTrialRatio times its estimate and kCpuTrialFloorUs over it, the
// unmeasured candidate first in analytic order whose estimate is below that
// measured time gets a timed trial (a kernel's cost model can be wrong on a
// processor it was not tuned on: conv2d.few_channels ran ResNet's NCHW stem
// in 113 ms on an AVX2 Zen 3, estimated at 1.2, while im2col + GEMM took 13;
// session 23). The ratio is above a shared VM's swings (measured/estimate of
// the zoo models' layers 0.1-1.7 on the 2-core VM, its speed 1.7x apart from
// one minute to the next); the floor keeps calls of a few microseconds, whose
// wall-clock times say little, out of it.
constexpr double kCpuTrialRatio = 3.0;
constexpr double kCpuTrialFloorUs = 50.0;
constexpr int kMaxWarmUps = 8;
constexpr size_t kMaxPendingTimings = 128;
}  // namespace

Ranker::Ranker(const Options &options, pask_device_type_t type, Backend &backend, KernelStore &store,
               LoadCosts &load_costs)
    : options_(options), type_(type), backend_(backend), store_(store), load_costs_(load_costs) {}

std::shared_ptr<const std::vector<Ranker::Entry>> Ranker::ranked(const Problem &p, size_t h) const {
    // The analytic ranking of a Problem never changes within a context (same
    // solvers, store and targets), so it is computed once and remembered.
    {
        std::lock_guard<std::mutex> lock(rank_mu_);
        auto it = ranked_.find(h);
        if (it != ranked_.end())
            for (const auto &e : it->second)
                if (e.problem == p) return e.ranked;
    }
    auto out = std::make_shared<std::vector<Entry>>();
    for (const Solver *s : all_solvers()) {
        if (!options_.allows(*s) || s->device() != type_ || s->op() != p.op || !s->applicable(p)) continue;
        KernelKey key = resolve_key(*s, p);
        // neither prebuilt nor compilable here (e.g. no NVRTC): not a candidate
        if (loader_ && !loader_->available(key)) continue;
        std::string key_str = key.str();
        out->push_back(Entry{s, std::move(key), std::move(key_str), s->cost_us(p)});
    }
    std::stable_sort(out->begin(), out->end(), [](const auto &a, const auto &b) { return a.cost_us < b.cost_us; });
    std::lock_guard<std::mutex> lock(rank_mu_);
    if (ranked_count_ >= 4096) {  // bounded: start over rather than grow without end
        ranked_.clear();
        ranked_count_ = 0;
    }
    ranked_[h].push_back(Ranked{p, out});
    ++ranked_count_;
    return out;
}

Ranker::Candidates Ranker::candidates(const Problem &p, size_t h) const {
    // Ranked by the analytic cost model, which treats every solver alike. A
    // measured run time replaces an estimate only against other measured times:
    // if the first-ranked solver has run on this Problem and another solver has
    // run faster, that one goes first. Run-cost gaps in policy decisions use the
    // measured time wherever there is one.
    Candidates out;
    out.ranking = ranked(p, h);
    out.list.reserve(out.ranking->size());
    for (const Entry &e : *out.ranking) out.list.push_back(Candidate{e.solver, &e, e.cost_us});
    put_measured_first(out.list, h);
    return out;
}

void Ranker::put_measured_first(std::vector<Candidate> &out, size_t h) const {
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
        if (options_.explore && type_ != PASK_DEVICE_CPU && policy_reuses(options_.policy) && loader_ &&
            loader_->num_threads() > 0)
            for (size_t i = 0; i < out.size() && explore == out.size(); ++i)
                if (measured[i] < 0 && out[i].cost_us <= 2.0 * out[fastest].cost_us && !is_bad(out[i].key_str()))
                    explore = i;
        // A cross-provider trial (see kTrialRatio) takes the exploration's place.
        if (explore == out.size() && type_ != PASK_DEVICE_CPU && policy_reuses(options_.policy) && loader_ &&
            loader_->num_threads() > 0)
            explore = trial(out, measured, fastest);
        if (type_ == PASK_DEVICE_CPU) explore = cpu_trial(out, measured, fastest);
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
}

size_t Ranker::trial(const std::vector<Candidate> &out, const std::vector<double> &measured, size_t fastest) const {
    const double estimate = out[fastest].entry->cost_us;
    if (!(measured[fastest] > kTrialRatio * estimate && measured[fastest] - estimate > kTrialFloorUs))
        return out.size();
    // In analytic order: the first live candidate of each provider is that
    // provider's best estimate; one never timed gets the trial.
    std::vector<std::string> seen{out[fastest].solver->provider()};
    for (size_t i = 0; i < out.size(); ++i) {
        if (is_bad(out[i].key_str())) continue;
        const std::string provider = out[i].solver->provider();
        if (std::find(seen.begin(), seen.end(), provider) != seen.end()) continue;
        seen.push_back(provider);
        if (measured[i] < 0) return i;
    }
    return out.size();
}

size_t Ranker::cpu_trial(const std::vector<Candidate> &out, const std::vector<double> &measured,
                         size_t fastest) const {
    const double estimate = out[fastest].entry->cost_us;
    if (!(measured[fastest] > kCpuTrialRatio * estimate && measured[fastest] - estimate > kCpuTrialFloorUs))
        return out.size();
    for (size_t i = 0; i < out.size(); ++i)
        if (measured[i] < 0 && out[i].entry->cost_us < measured[fastest] && !is_bad(out[i].key_str())) return i;
    return out.size();
}

KernelKey Ranker::resolve_key(const Solver &solver, const Problem &p) const {
    // The best target this device runs that the store holds a code object for.
    const auto &targets = backend_.targets();
    for (const auto &t : targets) {
        KernelKey key = solver.kernel_for(p, t);
        if (loader_ ? loader_->available(key) : (store_.find(key).has_value() || backend_.can_compile())) return key;
    }
    return solver.kernel_for(p, targets.front());
}

bool Ranker::any_applicable(const Problem &p) const {
    for (const Solver *s : all_solvers())
        if (options_.allows(*s) && s->device() == type_ && s->op() == p.op && s->applicable(p)) return true;
    return false;
}

double Ranker::load_estimate_ms(const KernelKey &key) const {
    return load_costs_.estimate_ms(key, loader_ && !loader_->prebuilt(key));
}

bool Ranker::is_bad(const std::string &key) const {
    if (!any_bad_.load(std::memory_order_acquire)) return false;
    std::lock_guard<std::mutex> lock(mu_);
    return bad_keys_.count(key) != 0;
}

void Ranker::mark_bad(const std::string &key) {
    std::lock_guard<std::mutex> lock(mu_);
    bad_keys_.insert(key);
    any_bad_.store(true, std::memory_order_release);
    epoch_.fetch_add(1, std::memory_order_acq_rel);
}

void Ranker::note_out_of_memory(const std::string &key) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (bad_keys_.count(key)) return;
        bound_for_insert(out_of_memory_, key);
        if (++out_of_memory_[key] < kMaxOutOfMemory) return;
        out_of_memory_.erase(key);
    }
    mark_bad(key);
}

void Ranker::record_run(const Solver &solver, size_t problem_hash, double us) {
    const uint64_t key = run_key(solver, problem_hash);
    std::lock_guard<std::mutex> lock(mu_);
    bound_for_insert(run_us_, key);
    auto [it, fresh] = run_us_.emplace(key, us);
    // GPU: device times, an average. CPU: wall-clock times, which other work on
    // the machine can only lengthen: the shortest. An average let a few runs
    // taken while another process's threads held a core (ONNX Runtime's
    // spinning pool, in one process with a paskdnn runner) put a candidate 3x
    // over its estimate, a trial moved the layer to another solver timed in a
    // quiet moment, and it stayed there 1.5x slower (ResNet-50's first
    // downsample, 0.97 ms against 0.74; session 24).
    if (!fresh) it->second = type_ == PASK_DEVICE_CPU ? std::min(it->second, us) : 0.7 * it->second + 0.3 * us;
    epoch_.fetch_add(1, std::memory_order_acq_rel);
}

void Ranker::count_hint(size_t problem_hash) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = hinted_.find(problem_hash);
    if (it != hinted_.end()) it->second = std::min(it->second + 1, kMaxWarmUps);
    else if (hinted_.size() < 100000) hinted_.emplace(problem_hash, 1);
}

bool Ranker::take_timed_run(uint64_t key, size_t h, bool *done) {
    auto hinted = hinted_.find(h);
    const int warm_ups = hinted == hinted_.end() ? 1 : hinted->second;
    bound_for_insert(untimed_runs_, key);
    int &untimed = untimed_runs_[key];
    if (untimed < warm_ups) {
        ++untimed;
        return false;
    }
    auto it = timed_runs_.find(key);
    if (it != timed_runs_.end() && it->second >= kTimedRuns) {
        if (done) *done = true;
        return false;
    }
    return true;
}

bool Ranker::start_host_timing(const Solver &solver, size_t h, bool *done) {
    const uint64_t key = run_key(solver, h);
    std::lock_guard<std::mutex> lock(mu_);
    if (!take_timed_run(key, h, done)) return false;
    bound_for_insert(timed_runs_, key);
    ++timed_runs_[key];
    return true;
}

int64_t Ranker::start_timing(const Solver &solver, size_t h, bool *done) {
    const uint64_t key = run_key(solver, h);
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (pending_timings_.size() >= kMaxPendingTimings) return -1;
        if (!take_timed_run(key, h, done)) return -1;
    }
    const int64_t token = backend_.timer_start();
    // counted only when a timer started (none while a stream is being captured)
    if (token >= 0) {
        std::lock_guard<std::mutex> lock(mu_);
        bound_for_insert(timed_runs_, key);
        ++timed_runs_[key];
    }
    return token;
}

void Ranker::finish_timing(int64_t token, const Solver &solver, size_t h) {
    if (token < 0) return;
    backend_.timer_stop(token);
    std::lock_guard<std::mutex> lock(mu_);
    pending_timings_.push_back(PendingTiming{token, &solver, h});
}

void Ranker::poll_timings() {
    struct Done {
        const Solver *solver;
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
            if (!backend_.timer_poll(t.token, &us)) still.push_back(t);
            else if (us >= 0) done.push_back(Done{t.solver, t.problem_hash, us});
        }
        pending_timings_.swap(still);
    }
    for (const auto &d : done) record_run(*d.solver, d.problem_hash, d.us);
}

}  // namespace pask
