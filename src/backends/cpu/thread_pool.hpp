// ThreadPool: persistent workers that run one parallel_for at a time, the
// calling thread included. A parallel_for that finds the pool busy (another
// thread of the same context is using it) runs its tasks on the caller alone,
// so concurrent callers never deadlock or queue behind each other.
//
// Between jobs a worker spins on the job counter for kSpinUs before it sleeps
// on a condition variable, and the caller spins (yielding) for the workers to
// finish: a network's layers are parallel_for calls a few microseconds apart,
// and a futex wake and wait per call cost more than many of its layers
// (MobileNetV2 on 2 threads: about 430 futex calls an inference). A caller
// wakes sleepers only when there are some.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace pask {

class ThreadPool {
public:
    using TaskFn = void (*)(void *arg, int64_t task, int thread);
    // How long an idle worker keeps polling for the next job before it sleeps.
    static constexpr int kSpinUs = 200;

    explicit ThreadPool(int num_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool &) = delete;
    ThreadPool &operator=(const ThreadPool &) = delete;

    int num_threads() const { return num_threads_; }
    void parallel_for(int64_t ntasks, TaskFn fn, void *arg);

private:
    void worker_main(int thread);
    void run_tasks(int thread);
    // Blocks until the job counter moves past seen (spinning first); false on stop.
    bool await_job(uint64_t seen);

    int num_threads_;
    std::vector<std::thread> workers_;
    std::mutex busy_;  // held by the caller of the running parallel_for

    std::mutex mu_;  // guards sleeping on wake_ (the counters are atomic)
    std::condition_variable wake_;
    std::atomic<uint64_t> generation_{0};  // one more per job
    std::atomic<bool> stop_{false};
    std::atomic<int> sleepers_{0};  // workers waiting on wake_
    std::atomic<int> active_{0};    // workers still inside the current job

    // current job (written before generation_ moves, read after)
    TaskFn fn_ = nullptr;
    void *arg_ = nullptr;
    int64_t ntasks_ = 0;
    std::atomic<int64_t> next_{0};
};

}  // namespace pask
