// The CPU backend's ThreadPool (src/backends/cpu/thread_pool.cpp): every task
// of every parallel_for runs exactly once, on a thread index below the pool's
// size, whether the workers are spinning or asleep when the job comes (gaps
// shorter and longer than kSpinUs), with two callers at once, and a pool is
// destroyed cleanly in either state. A lost wake-up shows as a hang (the
// Python side's timeout).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "thread_pool.hpp"

namespace {

std::atomic<int> failures{0}, checks{0};  // two callers check at once

void check(bool ok, const char *what, long a = 0, long b = 0) {
    ++checks;
    if (!ok) {
        ++failures;
        std::printf("FAIL %s (%ld, %ld)\n", what, a, b);
    }
}

struct Job {
    std::vector<std::atomic<int>> hits;
    std::atomic<int> bad_thread{0};
    int threads;
    explicit Job(long n, int th) : hits(static_cast<size_t>(n)), threads(th) {}
};

void task(void *arg, int64_t t, int thread) {
    Job &j = *static_cast<Job *>(arg);
    if (thread < 0 || thread >= j.threads) j.bad_thread.fetch_add(1);
    j.hits[static_cast<size_t>(t)].fetch_add(1);
    if (t % 7 == 0) std::this_thread::yield();  // uneven tasks
}

void run_once(pask::ThreadPool &pool, long n, const char *what) {
    Job j(n, pool.num_threads());
    pool.parallel_for(n, &task, &j);
    long wrong = 0;
    for (auto &h : j.hits) wrong += h.load() != 1;
    check(wrong == 0, what, n, wrong);
    check(j.bad_thread.load() == 0, "thread index in range", n, j.bad_thread.load());
}

}  // namespace

int main() {
    using us = std::chrono::microseconds;
    for (int threads : {1, 2, 3, 4}) {
        pask::ThreadPool pool(threads);
        check(pool.num_threads() == threads, "num_threads", threads, pool.num_threads());
        // back to back: the workers are still spinning from the last job
        for (long n = 0; n < 200; ++n) run_once(pool, n % 67, "back to back: each task once");
        // gaps around and past the spin time: workers asleep when the job comes
        const long gaps[] = {0, pask::ThreadPool::kSpinUs / 2, pask::ThreadPool::kSpinUs,
                             2 * pask::ThreadPool::kSpinUs, 3000};
        for (int i = 0; i < 60; ++i) {
            std::this_thread::sleep_for(us(gaps[i % 5]));
            run_once(pool, 1 + (i * 13) % 40, "after a gap: each task once");
        }
        // two callers at once: one owns the pool, the other runs its tasks inline
        std::atomic<int> done{0};
        auto caller = [&] {
            for (int i = 0; i < 300; ++i) run_once(pool, 2 + i % 31, "two callers: each task once");
            done.fetch_add(1);
        };
        std::thread a(caller), b(caller);
        a.join();
        b.join();
        check(done.load() == 2, "both callers finished", done.load(), 2);
    }
    {  // destroyed while its workers spin, and while they sleep, and unused
        pask::ThreadPool spinning(4);
        run_once(spinning, 16, "before destruction");
    }
    {
        pask::ThreadPool sleeping(4);
        run_once(sleeping, 16, "before destruction");
        std::this_thread::sleep_for(us(3000));
    }
    { pask::ThreadPool unused(3); }
    std::printf("%d checks, %d failed\n", checks.load(), failures.load());
    return failures ? 1 : 0;
}
