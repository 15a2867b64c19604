#include "hint_queue.hpp"

namespace pask {

bool HintQueue::push(const Problem &p) {
    std::lock_guard<std::mutex> lock(mu_);
    if (q_.size() >= kMaxPending) return false;
    q_.push_back(Entry{next_seq_++, p, p.hash(), false});
    return true;
}

HintQueue::Match HintQueue::on_call(const Problem &p, size_t h) {
    Match m;
    std::lock_guard<std::mutex> lock(mu_);
    const size_t n = std::min(window_, q_.size());
    for (size_t i = 0; i < n; ++i) {
        if (q_[i].hash == h && q_[i].problem == p) {
            m.matched = true;
            m.dropped = static_cast<int64_t>(i);
            q_.erase(q_.begin(), q_.begin() + static_cast<std::ptrdiff_t>(i + 1));
            break;
        }
    }
    return m;
}

std::vector<std::pair<int64_t, Problem>> HintQueue::take_ready() {
    std::vector<std::pair<int64_t, Problem>> out;
    std::lock_guard<std::mutex> lock(mu_);
    const size_t n = std::min(window_, q_.size());
    for (size_t i = 0; i < n; ++i) {
        if (!q_[i].issued) {
            q_[i].issued = true;
            out.emplace_back(q_[i].seq, q_[i].problem);
        }
    }
    return out;
}

void HintQueue::clear() {
    std::deque<Entry> gone;  // freed outside the lock, and its memory returned (clear() keeps blocks)
    std::lock_guard<std::mutex> lock(mu_);
    gone.swap(q_);
}

size_t HintQueue::pending() const {
    std::lock_guard<std::mutex> lock(mu_);
    return q_.size();
}

int64_t HintQueue::head_seq() const {
    std::lock_guard<std::mutex> lock(mu_);
    return q_.empty() ? next_seq_ : q_.front().seq;
}

}  // namespace pask
