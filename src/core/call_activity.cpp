#include "call_activity.hpp"

#include <algorithm>
#include <chrono>
#include <thread>

namespace pask {

namespace {

thread_local int t_calls = 0;  // Calls the current thread is inside, on any context

using Clock = std::chrono::steady_clock;

int64_t us_since(Clock::time_point t0) {
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
}

}  // namespace

CallActivity::Call::Call(CallActivity &a) : a_(a.enabled_.load(std::memory_order_acquire) ? &a : nullptr) {
    if (!a_) return;
    ++t_calls;
    a_->begun_.fetch_add(1, std::memory_order_acq_rel);
    a_->running_.fetch_add(1, std::memory_order_acq_rel);
}

CallActivity::Call::~Call() {
    if (!a_) return;
    a_->running_.fetch_sub(1, std::memory_order_acq_rel);
    --t_calls;
}

CallActivity::Blocked::Blocked(CallActivity &a) : a_(a.enabled_.load(std::memory_order_acquire) ? &a : nullptr) {
    if (!a_) return;
    a_->blocked_.fetch_add(1, std::memory_order_acq_rel);
    a_->running_.fetch_sub(1, std::memory_order_acq_rel);
}

CallActivity::Blocked::~Blocked() {
    if (!a_) return;
    a_->running_.fetch_add(1, std::memory_order_acq_rel);
    a_->blocked_.fetch_sub(1, std::memory_order_acq_rel);
}

int64_t CallActivity::yield(int64_t quiet_us, int64_t max_us) const {
    if (max_us <= 0 || t_calls > 0) return 0;
    const auto t0 = Clock::now();
    const int64_t poll_us = std::max<int64_t>(1, std::min<int64_t>(quiet_us, 100));
    for (;;) {
        const int64_t waited = us_since(t0);
        if (waited >= max_us) return waited;
        const uint64_t seen = begun();
        if (running() == 0) {
            if (blocked_.load(std::memory_order_acquire) > 0) return waited;
            // quiet when no call began (and none runs) through a whole gap
            std::this_thread::sleep_for(std::chrono::microseconds(std::min(quiet_us, max_us - waited)));
            if (running() == 0 && begun() == seen) return us_since(t0);
        } else {
            std::this_thread::sleep_for(std::chrono::microseconds(poll_us));
        }
    }
}

}  // namespace pask
