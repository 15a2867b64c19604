#include "policy.hpp"

#include <algorithm>

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

// Time until the in-flight best lands, in microseconds. A load that has
// outrun its estimate is not about to land: the estimate was wrong (a
// default, or the loader was busy), so assume at least half of it again.
double best_remaining_us(const PolicyInput &in) {
    if (!in.best_loading) return 0.0;
    const double est = in.candidates[0].load_ms;
    return std::max(est - in.best_loading_for_ms, 0.5 * est) * 1000.0;
}

// The candidate that gives the soonest result, counting its load.
size_t soonest_result(const PolicyInput &in) {
    size_t pick = 0;
    double best_total = 1e300;
    for (size_t i = 0; i < in.candidates.size(); ++i) {
        const auto &c = in.candidates[i];
        const double load_us = (i == 0 && in.best_loading) ? best_remaining_us(in) : c.load_ms * 1000.0;
        if (load_us + c.run_us < best_total) {
            best_total = load_us + c.run_us;
            pick = i;
        }
    }
    return pick;
}

// A candidate, not the best and not resident, that loads within
// kStandInLoadMs and runs in under kStandInRatio of the reused one's time: the
// fastest such (0: none).
size_t better_stand_in(const PolicyInput &in, size_t reused) {
    size_t pick = 0;
    const double limit_us = kStandInRatio * in.candidates[reused].run_us;
    for (size_t i = 1; i < in.candidates.size(); ++i) {
        const auto &c = in.candidates[i];
        if (c.resident || c.load_ms > kStandInLoadMs || !(c.run_us < limit_us)) continue;
        if (pick == 0 || c.run_us < in.candidates[pick].run_us) pick = i;
    }
    return pick;
}

}  // namespace

Decision decide(const PolicyInput &in) {
    Decision d;
    if (in.candidates.empty() || in.candidates[0].resident) {
        d.action = Decision::RunResident;
        return d;
    }
    if (in.policy == Policy::Reactive || !policy_reuses(in.policy)) {
        d.action = Decision::Load;  // reactive and proactive block on the best
        return d;
    }
    size_t reuse = 0;  // the fastest resident alternative
    for (size_t i = 1; i < in.candidates.size(); ++i)
        if (in.candidates[i].resident && (reuse == 0 || in.candidates[i].run_us < in.candidates[reuse].run_us))
            reuse = i;
    if (reuse != 0) {
        const double gap_us = in.candidates[reuse].run_us - in.candidates[0].run_us;
        if (in.policy == Policy::Pask && in.best_loading && best_remaining_us(in) < gap_us) {
            d.action = Decision::Load;  // wait for the best: it lands sooner than the gap
            return d;
        }
        d.action = Decision::Reuse;
        d.index = reuse;
        d.queue_best = true;
        d.stand_in = better_stand_in(in, reuse);
        return d;
    }
    d.action = Decision::Load;
    d.index = soonest_result(in);
    d.queue_best = d.index != 0;
    return d;
}

}  // namespace pask
