// Policy: what a call does when its best kernel may not be resident. A pure
// function of the facts the Dispatcher gathers; no clocks, no locks, no I/O,
// so it is unit-tested from a table of cases (tests/c/test_policy.cpp).
//
//   best resident ............................... run it
//   reactive .................................... load the best (blocking)
//   a resident alternative (reuse, pask) ........ reuse the fastest one and queue
//       the best, unless pask and the best is loading and lands sooner than the
//       run-cost gap: then wait for the best. A candidate that loads quickly (a
//       prebuilt kernel) and runs in under half the reused one's time is
//       queued too, as a better stand-in (stand_in)
//   proactive ................................... load the best (blocking)
//   nothing resident (reuse, pask) .............. load whichever candidate
//       gives the soonest result (load time + run time), queue the best
#pragma once

#include <cstddef>
#include <vector>

namespace pask {

enum class Policy { Reactive, Proactive, Reuse, Pask };
const char *policy_name(Policy p);

struct PolicyInput {
    Policy policy = Policy::Pask;
    // The live candidates, best first (index 0 is the best).
    struct Candidate {
        double run_us = 0;      // measured or estimated run time
        double load_ms = 0;     // estimated time to load it (measured load cost, else a default)
        bool resident = false;
    };
    std::vector<Candidate> candidates;
    bool best_loading = false;      // the best's load is in flight
    double best_loading_for_ms = 0;  // ... for this long
};

struct Decision {
    enum Action { RunResident, Reuse, Load } action = Load;
    size_t index = 0;          // the candidate to run (RunResident: 0; Reuse: the alternative; Load: the one to load)
    bool queue_best = false;   // bring the best in on a loader thread meanwhile
    size_t stand_in = 0;       // Reuse: a better stand-in to bring in too (0: none)
};

// A stand-in worth bringing in while the best loads: it loads within this
// (a prebuilt kernel: about 1 ms; compiles and plan builds are estimated at 100)
// and runs in under kStandInRatio of the reused alternative's time.
constexpr double kStandInLoadMs = 10.0;
constexpr double kStandInRatio = 0.5;

// Whether a policy runs a resident alternative instead of blocking.
inline bool policy_reuses(Policy p) { return p == Policy::Reuse || p == Policy::Pask; }
inline bool policy_hints(Policy p) { return p == Policy::Proactive || p == Policy::Pask; }

Decision decide(const PolicyInput &in);

}  // namespace pask
