// The Policy's decisions from a table of cases: no clocks, no threads, no
// sleeps. Built and run by tests/test_policy.py against src/core/policy.cpp.
#include <cstdio>
#include <vector>

#include "policy.hpp"

using pask::Decision;
using pask::Policy;
using pask::PolicyInput;

namespace {

struct Case {
    const char *claim;
    Policy policy;
    std::vector<PolicyInput::Candidate> candidates;  // {run_us, load_ms, resident}, best first
    bool best_loading;
    double best_loading_for_ms;
    Decision::Action action;
    size_t index;
    bool queue_best;
    size_t stand_in = 0;
};

const char *name(Decision::Action a) {
    return a == Decision::RunResident ? "run_resident" : a == Decision::Reuse ? "reuse" : "load";
}

}  // namespace

int main() {
    const std::vector<Case> cases = {
        {"a resident best runs, whatever the policy", Policy::Reactive, {{10, 1, true}, {20, 1, true}}, false, 0,
         Decision::RunResident, 0, false},
        {"a resident best runs under pask", Policy::Pask, {{10, 1, true}}, false, 0, Decision::RunResident, 0, false},
        {"reactive blocks on the best even with a resident alternative", Policy::Reactive,
         {{10, 1, false}, {20, 1, true}}, false, 0, Decision::Load, 0, false},
        {"proactive blocks on the best even with a resident alternative", Policy::Proactive,
         {{10, 1, false}, {20, 1, true}}, false, 0, Decision::Load, 0, false},
        {"reuse runs the first resident alternative and queues the best", Policy::Reuse,
         {{10, 1, false}, {20, 1, false}, {30, 1, true}, {40, 1, true}}, false, 0, Decision::Reuse, 2, true},
        {"the fastest resident alternative is reused, wherever it ranks", Policy::Pask,
         // a measured-fastest candidate goes first; the others keep their analytic order
         {{10, 100, false}, {2090, 100, true}, {200, 1, true}}, false, 0, Decision::Reuse, 2, true},
        {"a quick load that runs in under half the reused time is a stand-in to bring in", Policy::Pask,
         // MobileNetV2 at batch 32, cold (session 22): a cuDNN plan of 2.09 ms stood in while the
         // best compiled; the prebuilt generic implicit GEMM (1 ms to load) was not asked for
         {{150, 100, false}, {2090, 100, true}, {250, 1, false}, {180, 100, false}}, true, 10, Decision::Reuse, 1,
         true, 2},
        {"the fastest of the quick stand-ins is the one brought in", Policy::Reuse,
         {{150, 100, false}, {2000, 100, true}, {900, 1, false}, {300, 5, false}}, false, 0, Decision::Reuse, 1,
         true, 3},
        {"no stand-in when the quick candidate is not twice as fast", Policy::Pask,
         {{150, 100, false}, {500, 100, true}, {260, 1, false}}, false, 0, Decision::Reuse, 1, true, 0},
        {"no stand-in when the faster candidate must be compiled or built", Policy::Pask,
         {{150, 100, false}, {2090, 100, true}, {250, 100, false}}, false, 0, Decision::Reuse, 1, true, 0},
        {"pask reuses when the best is not loading", Policy::Pask, {{10, 1, false}, {20, 1, true}}, false, 0,
         Decision::Reuse, 1, true},
        {"pask waits for a loading best that lands sooner than the run-cost gap", Policy::Pask,
         // best estimated 5 ms, loading for 4 ms: max(1, 2.5) ms = 2500 us left < 10000 us gap
         {{1000, 5, false}, {11000, 1, true}}, true, 4, Decision::Load, 0, false},
        {"pask reuses when the loading best lands later than the gap", Policy::Pask,
         {{1000, 5, false}, {3000, 1, true}}, true, 4, Decision::Reuse, 1, true},
        {"a load that outran its estimate still counts half the estimate again", Policy::Pask,
         // loading for 50 ms of an estimated 10: 5000 us left, not 0; the gap is 4000 us
         {{1000, 10, false}, {5000, 1, true}}, true, 50, Decision::Reuse, 1, true},
        {"reuse never waits for a loading best", Policy::Reuse, {{1000, 5, false}, {11000, 1, true}}, true, 4,
         Decision::Reuse, 1, true},
        {"nothing resident: pask loads what gives the soonest result and queues the best", Policy::Pask,
         // best: 100 ms to compile + 10 us; second: 1 ms load + 50 us
         {{10, 100, false}, {50, 1, false}}, false, 0, Decision::Load, 1, true},
        {"nothing resident: a cheap best load is taken directly", Policy::Pask, {{10, 1, false}, {50, 1, false}},
         false, 0, Decision::Load, 0, false},
        {"nothing resident: a best already loading counts only what remains", Policy::Reuse,
         // best: 100 ms estimate, loading for 99 ms -> 50 ms left (half again), vs 60 ms + 0.05
         {{10, 100, false}, {50, 60, false}}, true, 99, Decision::Load, 0, false},
        {"no candidates: nothing to decide, run (the dispatcher reports)", Policy::Pask, {}, false, 0,
         Decision::RunResident, 0, false},
    };
    int failed = 0;
    for (const Case &c : cases) {
        PolicyInput in;
        in.policy = c.policy;
        in.candidates = c.candidates;
        in.best_loading = c.best_loading;
        in.best_loading_for_ms = c.best_loading_for_ms;
        const Decision d = pask::decide(in);
        if (d.action != c.action || d.index != c.index || d.queue_best != c.queue_best || d.stand_in != c.stand_in) {
            std::printf("FAIL %s: got %s %zu queue=%d stand_in=%zu, want %s %zu queue=%d stand_in=%zu\n", c.claim,
                        name(d.action), d.index, d.queue_best, d.stand_in, name(c.action), c.index, c.queue_best,
                        c.stand_in);
            ++failed;
        }
    }
    std::printf("%zu cases, %d failed\n", cases.size(), failed);
    return failed == 0 ? 0 : 1;
}
