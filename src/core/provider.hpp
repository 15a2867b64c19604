// Provider: a vendor library (cuDNN, later MIOpen) whose code objects are built
// at run time for one Problem: a finalised cuDNN execution plan, a compiled
// MIOpen solution. The Loader hands it every KernelKey whose provider field
// names it; the rest of the PaSK machinery (queue, shared loads, residency,
// load costs, stats, trace) treats the result like one of our own kernels.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "call_activity.hpp"
#include "kernel.hpp"
#include "problem.hpp"

namespace pask {

class Provider {
public:
    virtual ~Provider() = default;
    // The KernelKey provider field it serves ("cudnn").
    virtual const char *name() const = 0;
    // Whether the library can be used on this device. Cheap after the first
    // call; never throws (the reason is kept for messages).
    virtual bool available() const = 0;
    virtual std::string unavailable_reason() const { return std::string(); }
    // One-time library initialisation (cuDNN: handle creation), run by the
    // context on a loader thread so no call waits for it when there are hints.
    virtual void prepare() {}
    // Pays the calling thread's one-time set-up in the library (pask_prime_thread)
    // if prepare() has run (it never waits for it); false where there is nothing
    // to prime yet. Called only where prepare() was queued.
    virtual bool prime_thread() { return false; }
    // Builds the code object of key (cuDNN: heuristics query + plan
    // finalisation). Thread-safe. Throws pask::Error(PASK_ERROR_LOAD_FAILED).
    virtual std::shared_ptr<CodeObject> build(const KernelKey &key) = 0;

    // The context's callers, and the longest a loader thread holds back a step
    // of build() that would stall them (option loader_yield_ms); set by the
    // context before any build.
    void set_callers(const CallActivity *callers, int64_t yield_us) {
        callers_ = callers;
        yield_us_ = yield_us;
    }

protected:
    // Before a step that may stall the callers (a plan's first run, where the
    // driver loads its kernels): waits for a gap in their calls
    // (CallActivity::yield). Returns the microseconds waited.
    int64_t yield_to_callers() const {
        return callers_ ? callers_->yield(CallActivity::kQuietUs, yield_us_) : 0;
    }

private:
    const CallActivity *callers_ = nullptr;
    int64_t yield_us_ = 0;
};

// A provider's KernelKey names the Problem it is built for in its constants:
// "<name>=<int>,...,p=<the Problem's fields joined by '_'>".
std::string problem_constants(const Problem &p);  // "p=..."
// Parses such constants: the Problem, and each other entry into *values.
// Throws pask::Error(PASK_ERROR_LOAD_FAILED) when there is no valid Problem.
Problem parse_problem_constants(const KernelKey &key, std::map<std::string, int64_t> *values);

}  // namespace pask
