// Loader: brings a KernelKey to resident: KernelStore lookup -> (compile if
// absent, on GPU backends) -> Backend load -> entry lookup.
//
// Worker threads drain a priority queue of requests (lower priority value =
// needed sooner: hints carry their sequence number). A caller that needs a
// key now either waits for the worker already loading it or, if the request
// is still queued, takes it over and loads it on its own thread. Concurrent
// requests for one key share one load (one shared future). Code objects load
// once and are shared by every kernel inside them.
//
// With a quick lane, one more thread takes only prebuilt loads (a module
// load, about a millisecond), so that a stand-in kernel never queues behind the
// workers' compiles and plan builds (tens to hundreds of ms each):
//
//   workers 0..n-1: any job, most urgent first   (NVRTC compiles, cuDNN plans, prebuilt)
//   quick lane:     prebuilt jobs only, most urgent first
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "backend.hpp"
#include "kernel.hpp"
#include "kernel_store.hpp"
#include "problem.hpp"
#include "provider.hpp"

namespace pask {

class Loader {
public:
    struct Hooks {
        // A load finished (on any thread): file the kernel under these buckets.
        std::function<void(const KernelPtr &, const std::vector<Bucket> &, double ms)> loaded;
        // A load failed: message says why; status is PASK_ERROR_LOAD_FAILED, or
        // PASK_ERROR_OUT_OF_MEMORY when memory ran out while building it.
        std::function<void(const KernelKey &, const std::string &message, pask_status_t status)> failed;
        // Trace a load on the calling thread's row.
        std::function<void(const KernelKey &, int64_t start_us, int64_t dur_us, const std::string &error)> traced;
        std::function<int64_t()> now_us;
        // Runs first on each loader thread (names its trace row).
        std::function<void(int index)> thread_started;
        // A code object was compiled (ms), or found in / rejected by the user cache.
        std::function<void(const KernelKey &, double ms)> compiled;
        std::function<void(const KernelKey &, bool hit, bool rejected)> cache_lookup;
    };

    // quick_lane: one more thread for prebuilt loads (when threads > 0); it is
    // named by thread_started(threads).
    Loader(Backend &backend, const KernelStore &store, int threads, Hooks hooks, int debug_delay_ms,
           bool quick_lane = false);
    ~Loader();
    Loader(const Loader &) = delete;
    Loader &operator=(const Loader &) = delete;

    // Background load; no-op when key is already loading or queued (its
    // priority is raised if the new one is more urgent).
    void request(const KernelKey &key, const Bucket &bucket, int64_t priority);
    // Loads on the calling thread, or waits for the worker already loading it.
    // *waited tells which. Throws pask::Error(PASK_ERROR_LOAD_FAILED).
    KernelPtr load_blocking(const KernelKey &key, const Bucket &bucket, bool *waited);
    // Whether key is being loaded by a worker; *elapsed_ms since it started.
    bool running(const KernelKey &key, double *elapsed_ms) const;
    bool queued_or_running(const KernelKey &key) const;
    // Keys whose provider field names p are built by p (not kept alive here:
    // the owner destroys the Loader first). Call before any request.
    void add_provider(Provider *p) { providers_.push_back(p); }
    Provider *provider_for(const KernelKey &key) const;
    // Whether key can be brought resident: prebuilt, compilable on this
    // backend, or buildable by an available provider.
    bool available(const KernelKey &key) const;
    // Prebuilt code objects load in about a millisecond; anything else is
    // compiled or built first.
    bool prebuilt(const KernelKey &key) const {
        return !provider_for(key) && (store_.provided(key) || store_.find(key).has_value());
    }
    // Runs task on a loader thread ahead of every queued load (library set-up);
    // on the calling thread when there are no loader threads.
    void run_first(std::function<void()> task);
    // Blocks until no request is queued or running, or timeout; true when idle.
    bool wait_idle(int64_t timeout_ms);
    int num_threads() const { return static_cast<int>(workers_.size()); }

private:
    struct Job {
        KernelKey key;
        std::vector<Bucket> buckets;
        int64_t priority;
        uint64_t order;
        bool running = false;
        bool quick = false;  // prebuilt: the quick lane takes it too
        std::chrono::steady_clock::time_point started;
        std::promise<KernelPtr> promise;
        std::shared_future<KernelPtr> future;
    };

    // quick: the quick lane's loop (prebuilt jobs only, no set-up tasks)
    void worker_main(int index, bool quick);
    // The most urgent queued job this thread may take (nullptr: none); under mu_.
    std::shared_ptr<Job> next_job(bool quick) const;
    // Runs job (already marked running) on this thread and resolves it.
    void execute(const std::shared_ptr<Job> &job);
    KernelPtr load_now(const KernelKey &key);
    std::shared_ptr<CodeObject> object_for(const KernelKey &key, const std::string &path);

    Backend &backend_;
    const KernelStore &store_;
    Hooks hooks_;
    int debug_delay_ms_;

    mutable std::mutex mu_;
    std::condition_variable work_cv_;
    std::condition_variable idle_cv_;
    bool stop_ = false;
    uint64_t order_ = 0;
    std::unordered_map<std::string, std::shared_ptr<Job>> jobs_;  // queued or running
    std::unordered_map<std::string, std::weak_ptr<CodeObject>> objects_;
    std::vector<std::thread> workers_;
    std::thread lane_;  // the quick lane (not joinable: none)
    std::vector<Provider *> providers_;
    std::vector<std::function<void()>> tasks_;  // run_first, before any job
    int tasks_running_ = 0;
    int started_ = 0;  // workers that have run thread_started (the quick lane included)
};

}  // namespace pask
