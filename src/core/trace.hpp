// Stats and Trace: what a context did, readable from C and Python.
//
// Stats are lock-free counters. The Trace is an append-only event log (bounded)
// exported as Chrome/Perfetto trace JSON, one row per thread: the caller
// threads and each loader thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace pask {

struct Stats {
    std::atomic<int64_t> calls{0}, resident_hits{0}, reuses{0}, inflight_waits{0}, blocking_loads{0};
    std::atomic<int64_t> blocking_wait_ns{0}, loads{0}, load_ns{0}, compiles{0}, compile_ns{0};
    std::atomic<int64_t> load_failures{0}, prefetches{0}, hints{0}, hints_matched{0}, hints_dropped{0};
    std::atomic<int64_t> evictions{0}, cache_hits{0}, cache_rejects{0};
};

// A small integer naming the calling thread in traces (stable for the thread's life).
int this_thread_tid();

class Trace {
public:
    explicit Trace(size_t max_events = 200000);
    int64_t now_us() const;
    void set_enabled(bool on) { enabled_ = on; }
    bool enabled() const { return enabled_; }
    // Names the calling thread's row ("loader 0"); callers are named "caller N".
    void name_this_thread(const std::string &name);
    // A complete event on the calling thread's row. args is a JSON object body or "".
    void complete(const std::string &name, const char *cat, int64_t start_us, int64_t dur_us,
                  const std::string &args = "");
    // A primitive call's event ("call" row: "<op> <solver>", args problem,
    // solver, decision, best), kept as pointers and formatted at export: a
    // call of a steady state allocates nothing for it. The strings are static
    // (op and solver names, decision literals); problem is JSON text, shared.
    void complete_call(int64_t start_us, int64_t dur_us, const char *op, const char *solver, const char *decision,
                       const char *best, std::shared_ptr<const std::string> problem);
    std::string to_json() const;
    size_t size() const;

private:
    struct Event {
        Event(const char *c, int t, int64_t start, int64_t d) : cat(c), tid(t), ts(start), dur(d) {}
        std::string name;
        const char *cat;
        int tid;
        int64_t ts, dur;
        std::string args;
        // a call event (complete_call): name and args formatted at export
        const char *op = nullptr, *solver = nullptr, *decision = nullptr, *best = nullptr;
        std::shared_ptr<const std::string> problem;
    };
    // mu_ held: the calling thread's row named, and whether there is room (else counted as dropped)
    bool admit(int tid);
    std::chrono::steady_clock::time_point origin_;
    size_t max_events_;
    std::atomic<bool> enabled_{true};
    mutable std::mutex mu_;
    std::vector<Event> events_;
    std::map<int, std::string> thread_names_;
    int64_t dropped_ = 0;
};

}  // namespace pask
