// CallGate: the calls in flight on one context, its close, and fork.
//
// Every C entry point that takes a context holds a CallGate::Use for the
// call's length. close() refuses new calls, then waits for the ones in flight,
// so the context's threads and memory are torn down only when no caller is
// inside it. A context inherited by a child of fork() refuses every call (its
// loader and pool threads do not exist in the child) and is never torn down
// there: joining threads that do not exist would hang the child's exit.
//
//     caller threads ──enter()──> [active = n] ──leave()──> ...
//     close(): closed = true; wait until active == 0; then the teardown
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace pask {

// Incremented in every child of fork(), by a pthread_atfork handler.
uint64_t fork_generation();

class CallGate {
public:
    CallGate();
    CallGate(const CallGate &) = delete;
    CallGate &operator=(const CallGate &) = delete;

    // Throws Error(PASK_ERROR_INVALID_ARGUMENT) when the context is closed or
    // was inherited through fork().
    void enter();
    void leave();
    // Whether this process is not the one that created the context.
    bool inherited() const { return fork_generation() != generation_; }
    // Refuses new calls and waits for those in flight. Returns true for the
    // first close in the creating process (the caller then tears down), false
    // when already closed or inherited through fork().
    bool close();

    class Use {
    public:
        explicit Use(CallGate &gate) : gate_(gate) { gate_.enter(); }
        ~Use() { gate_.leave(); }
        Use(const Use &) = delete;
        Use &operator=(const Use &) = delete;

    private:
        CallGate &gate_;
    };

private:
    const uint64_t generation_;
    std::mutex mu_;
    std::condition_variable idle_;
    int64_t active_ = 0;
    bool closed_ = false;
};

}  // namespace pask
