// ThreadPool: persistent workers that run one parallel_for at a time, the
// calling thread included. A parallel_for that finds the pool busy (another
// thread of the same context is using it) runs its tasks on the caller alone,
// so concurrent callers never deadlock or queue behind each other.
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

    explicit ThreadPool(int num_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool &) = delete;
    ThreadPool &operator=(const ThreadPool &) = delete;

    int num_threads() const { return num_threads_; }
    void parallel_for(int64_t ntasks, TaskFn fn, void *arg);

private:
    void worker_main(int thread);
    void run_tasks(int thread);

    int num_threads_;
    std::vector<std::thread> workers_;
    std::mutex busy_;  // held by the caller of the running parallel_for

    std::mutex mu_;
    std::condition_variable wake_;
    std::condition_variable done_;
    uint64_t generation_ = 0;
    bool stop_ = false;
    int active_ = 0;  // workers still inside the current generation

    // current job
    TaskFn fn_ = nullptr;
    void *arg_ = nullptr;
    int64_t ntasks_ = 0;
    std::atomic<int64_t> next_{0};
};

}  // namespace pask
