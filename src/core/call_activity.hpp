// CallActivity: whether a context's callers are in the middle of their calls,
// so that loader work which would stall them can wait for a gap.
//
// A vendor plan's first run is where the driver loads the plan's kernels
// (CUDA's lazy loading), and loading a kernel can synchronise the context:
// calls made meanwhile on other threads wait for it. H100 traces (sessions
// 17-18, bench/results/first-trace-h100-*): resident cuDNN calls of a first
// inference took 2-3 ms, against 0.03-0.08 ms, while loader threads ran other
// plans for the first time (6-16 ms each). A loader thread holds such a step
// back until no call has run for a quiet gap, for at most the context's
// loader_yield_ms; the plan stays not resident meanwhile and the policy runs
// the calls on what is.
//
//   caller:  [call][call][call] ... [call]          gap          [call]
//   loader:  build plan ─── yield() ─────────────────────> first run
//
// A call blocked on a load does not count as running: it waits anyway, and the
// load it waits for may be the one held back.
#pragma once

#include <atomic>
#include <cstdint>

namespace pask {

class CallActivity {
public:
    // Calls are counted once something may yield to them (a provider whose
    // builds can stall them), set before the first call; until then Call and
    // Blocked cost one load of a flag: CPU contexts' callers share no counter.
    void enable() { enabled_.store(true, std::memory_order_release); }

    // Around a call that runs work (a kernel, a graph launch).
    class Call {
    public:
        explicit Call(CallActivity &a);
        ~Call();
        Call(const Call &) = delete;
        Call &operator=(const Call &) = delete;

    private:
        CallActivity *a_;  // nullptr: not counted
    };
    // Inside a Call: the call is blocked on a load.
    class Blocked {
    public:
        explicit Blocked(CallActivity &a);
        ~Blocked();
        Blocked(const Blocked &) = delete;
        Blocked &operator=(const Blocked &) = delete;

    private:
        CallActivity *a_;  // nullptr: not counted
    };

    // How long a loader thread waits for no call to have run before it goes on.
    static constexpr int64_t kQuietUs = 500;

    // Blocks until no call has been running for quiet_us, a call is blocked on
    // a load and none runs, or max_us has passed; returns the microseconds
    // waited. Returns 0 at once when max_us <= 0 or when the calling thread is
    // inside a call itself (a caller that runs a load on its own thread).
    int64_t yield(int64_t quiet_us, int64_t max_us) const;

    // Calls running now (blocked ones excluded), and calls begun so far.
    int64_t running() const { return running_.load(std::memory_order_acquire); }
    uint64_t begun() const { return begun_.load(std::memory_order_acquire); }

private:
    std::atomic<bool> enabled_{false};
    std::atomic<int64_t> running_{0};
    std::atomic<int64_t> blocked_{0};
    std::atomic<uint64_t> begun_{0};
};

}  // namespace pask
