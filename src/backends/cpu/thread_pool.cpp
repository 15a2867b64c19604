#include "thread_pool.hpp"

#include <chrono>

namespace pask {

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

}  // namespace

ThreadPool::ThreadPool(int num_threads) : num_threads_(num_threads < 1 ? 1 : num_threads) {
    for (int t = 1; t < num_threads_; ++t) workers_.emplace_back([this, t] { worker_main(t); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_.store(true);
    }
    wake_.notify_all();
    for (auto &w : workers_) w.join();
}

void ThreadPool::run_tasks(int thread) {
    for (;;) {
        int64_t task = next_.fetch_add(1, std::memory_order_relaxed);
        if (task >= ntasks_) break;
        fn_(arg_, task, thread);
    }
}

bool ThreadPool::await_job(uint64_t seen) {
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + std::chrono::microseconds(kSpinUs);
    for (unsigned spins = 1;; ++spins) {
        if (stop_.load(std::memory_order_acquire)) return false;
        if (generation_.load(std::memory_order_acquire) != seen) return true;
        cpu_relax();
        if (spins % 64 == 0 && Clock::now() >= deadline) break;
    }
    // Sleep. sleepers_ is raised before the counter is read again under mu_,
    // and a caller moves the counter before it reads sleepers_ (both seq_cst):
    // either this thread sees the new job, or the caller sees a sleeper and
    // notifies under mu_.
    std::unique_lock<std::mutex> lock(mu_);
    sleepers_.fetch_add(1);
    wake_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
    sleepers_.fetch_sub(1);
    return !stop_.load();
}

void ThreadPool::worker_main(int thread) {
    uint64_t seen = 0;
    while (await_job(seen)) {
        seen = generation_.load(std::memory_order_acquire);
        run_tasks(thread);
        active_.fetch_sub(1, std::memory_order_release);
    }
}

void ThreadPool::parallel_for(int64_t ntasks, TaskFn fn, void *arg) {
    if (ntasks <= 0) return;
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (ntasks == 1 || workers_.empty() || !busy.owns_lock()) {
        for (int64_t t = 0; t < ntasks; ++t) fn(arg, t, 0);
        return;
    }
    // Every worker has left the previous job (active_ reached 0 before the
    // last parallel_for returned), so the job's fields are free to rewrite.
    fn_ = fn;
    arg_ = arg;
    ntasks_ = ntasks;
    next_.store(0, std::memory_order_relaxed);
    active_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1);  // seq_cst: publishes the job, ordered before the sleepers_ read
    if (sleepers_.load() > 0) {
        std::lock_guard<std::mutex> lock(mu_);
        wake_.notify_all();
    }
    run_tasks(0);
    for (unsigned spins = 1; active_.load(std::memory_order_acquire) != 0; ++spins) {
        if (spins < 4096) cpu_relax();
        else std::this_thread::yield();  // a worker was descheduled: give its core back
    }
}

}  // namespace pask
