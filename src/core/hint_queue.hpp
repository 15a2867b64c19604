// HintQueue: the engine's lookahead of upcoming Problems, in execution order.
//
//   seq:   0    1    2    3    4    5 ...
//         [A]  [B]  [C]  [D]  [E]  [F]
//          ^head        ^head+window
//
// The loader is fed the hints inside the window, in order of need. A call that
// matches a hint inside the window advances the head past it; hints it skipped
// over never came and are dropped. Calls that match nothing leave it alone.
// Every call looks itself up by its hash (constant time, whatever the window):
// a call that matches no hint, e.g. hints recorded at another batch size,
// does not walk the window on every call.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "problem.hpp"

namespace pask {

class HintQueue {
public:
    // Pending hints are bounded: a push beyond kMaxPending is refused (false)
    // and counted as dropped by the caller. Hints are a lookahead; a queue this
    // long means the calls never match them.
    static constexpr size_t kMaxPending = 100000;

    explicit HintQueue(size_t window) : window_(window ? window : 1) {}

    bool push(const Problem &p);
    struct Match {
        bool matched = false;
        int64_t dropped = 0;
    };
    // h is p's hash (the caller has it already).
    Match on_call(const Problem &p, size_t h);
    // Hints inside the window that have not been handed out yet (marked handed out now).
    std::vector<std::pair<int64_t, Problem>> take_ready();
    void clear();
    size_t pending() const;
    int64_t head_seq() const;
    size_t window() const { return window_; }

private:
    struct Entry {
        int64_t seq;
        Problem problem;
        size_t hash;
        bool issued;
    };
    // Drops the first n entries (the oldest) and their places in by_hash_.
    void pop_front(size_t n);

    size_t window_;
    mutable std::mutex mu_;
    std::deque<Entry> q_;  // seqs contiguous: q_[i].seq == q_.front().seq + i (only prefixes are dropped)
    std::unordered_map<size_t, std::deque<int64_t>> by_hash_;  // hash -> seqs of q_'s entries, ascending
    int64_t next_seq_ = 0;
};

}  // namespace pask
