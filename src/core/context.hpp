// Context: one device and everything that serves calls on it. The object
// behind pask_context_t. Its parts, each in a file named after its word:
//
//   Options     options.hpp      parsed settings
//   Backend     backend.hpp      the device API (built by src/setup/, outside the core)
//   Provider    provider.hpp     vendor libraries on it (cuDNN, MIOpen)
//   KernelStore kernel_store.hpp prebuilt folder + user cache
//   Loader      loader.hpp       loader threads bringing kernels to resident
//   ResidentSet resident_set.hpp loaded kernels by Bucket
//   HintQueue   hint_queue.hpp   the engine's lookahead
//   Ranker      ranker.hpp       candidates in order, measured run times
//   Policy      policy.hpp       run / reuse / wait / load, a pure decision
//   Dispatcher  dispatcher.hpp   the call path
//   CallGate    call_gate.hpp    calls in flight, close, fork
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "backend.hpp"
#include "call_activity.hpp"
#include "call_gate.hpp"
#include "capture.hpp"
#include "dispatcher.hpp"
#include "hint_queue.hpp"
#include "kernel_store.hpp"
#include "load_costs.hpp"
#include "loader.hpp"
#include "options.hpp"
#include "policy.hpp"
#include "provider.hpp"
#include "ranker.hpp"
#include "resident_set.hpp"
#include "trace.hpp"

struct pask_context {
    pask_context(pask_device_type_t device_type, int device_index, const pask_options *options);
    ~pask_context();
    // Refuses new calls, waits for the calls in flight, then joins the loader
    // threads, saves the load costs and releases kernels, providers and the
    // device. Idempotent; a no-op in a child of fork() (see CallGate).
    void close();

    void execute(const pask::Problem &problem, const pask::OpArgs &args) { dispatcher->execute(problem, args); }
    // pask_prime_thread: the providers' per-thread set-up, where prepare() was queued.
    bool prime_thread();
    // Hints: an upcoming Problem, in execution order.
    void hint(pask::Problem problem);
    // Hands the hints inside the window to the loader threads (proactive policies).
    void feed_loader();
    void save_record(const std::string &path) const;
    void load_hints_file(const std::string &path);
    void export_trace(const std::string &path) const;
    // Remembers a Problem for save_record (bounded: 100k distinct Problems).
    void record_problem(const pask::Problem &problem, size_t hash);
    // Graph capture: ends the calling thread's capture on this context, if any,
    // discarding it (a call during it failed); never throws. Whether there was one.
    bool abandon_capture() noexcept;
    // Throws PASK_ERROR_INVALID_ARGUMENT, ending the calling thread's capture,
    // when the thread captures on this context: `what` (a synchronising or
    // allocating call) cannot be part of a graph.
    void refuse_during_capture(const char *what);
    // Devices of a type this process can use (0 when the driver is missing).
    static int device_count(pask_device_type_t type);

    pask_device_type_t device_type;
    int device_index;
    mutable pask::CallGate gate;  // calls in flight, close, fork
    pask::CallActivity callers;   // calls running now: loader steps that would stall them wait for a gap
    pask::Captures captures;      // graph captures in progress, by thread
    pask::Options options;
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
    std::unique_ptr<pask::Ranker> ranker;
    std::vector<std::unique_ptr<pask::Provider>> providers;  // vendor libraries (cuDNN) on this device
    std::unique_ptr<pask::Loader> loader;  // its threads use the members above
    std::unique_ptr<pask::Dispatcher> dispatcher;

private:
    bool proactive() const { return pask::policy_hints(policy); }
    bool reuses() const { return pask::policy_reuses(policy); }
    // Whether the constructor queues the providers' prepare() on a loader thread.
    bool queues_prepare() const;
    std::string load_costs_path() const;
    void start_loader();
    void read_cache_folder();

    std::mutex close_mu_;  // a second close() returns once the first one's teardown is done
    bool closed_ = false;
    mutable std::mutex mu_;  // record
    std::vector<pask::Problem> record_;
    std::unordered_set<size_t> recorded_;
};
