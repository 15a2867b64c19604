#include "call_gate.hpp"

#include <atomic>
#include <mutex>

#include <pthread.h>
#include <unistd.h>

#include "error.hpp"

namespace pask {

namespace {

std::atomic<uint64_t> g_fork_generation{0};

void on_fork_child() { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }

void register_fork_handler() {
    static std::once_flag once;
    std::call_once(once, [] { ::pthread_atfork(nullptr, nullptr, on_fork_child); });
}

}  // namespace

uint64_t fork_generation() { return g_fork_generation.load(std::memory_order_relaxed); }

CallGate::CallGate() : generation_((register_fork_handler(), fork_generation())) {}

void CallGate::enter() {
    // Checked before the mutex: a child of fork() may have inherited it locked.
    if (inherited())
        fail(PASK_ERROR_INVALID_ARGUMENT,
             "this context was created before fork() by the parent process; its threads do not exist in this "
             "child process: create a new context in the child");
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) fail(PASK_ERROR_INVALID_ARGUMENT, "the context has been closed");
    ++active_;
}

void CallGate::leave() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--active_ == 0 && closed_) idle_.notify_all();
}

bool CallGate::close() {
    if (inherited()) return false;
    std::unique_lock<std::mutex> lock(mu_);
    if (closed_) {
        // A second close still returns only once the first one's callers are out.
        idle_.wait(lock, [&] { return active_ == 0; });
        return false;
    }
    closed_ = true;
    idle_.wait(lock, [&] { return active_ == 0; });
    return true;
}

}  // namespace pask
