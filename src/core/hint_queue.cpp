#include "hint_queue.hpp"

namespace pask {

bool HintQueue::push(const Problem &p) {
    std::lock_guard<std::mutex> lock(mu_);
    if (q_.size() >= kMaxPending) return false;
    const size_t h = p.hash();
    q_.push_back(Entry{next_seq_, p, h, false});
    by_hash_[h].push_back(next_seq_++);
    return true;
}

void HintQueue::pop_front(size_t n) {
    for (size_t i = 0; i < n; ++i) {
        // the oldest entry is the first of its hash's seqs
        auto it = by_hash_.find(q_.front().hash);
        it->second.pop_front();
        if (it->second.empty()) by_hash_.erase(it);
        q_.pop_front();
    }
}

HintQueue::Match HintQueue::on_call(const Problem &p, size_t h) {
    Match m;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_hash_.find(h);
    if (it == by_hash_.end()) return m;
    const int64_t head = q_.front().seq;
    for (int64_t seq : it->second) {  // ascending: the first match in the window
        const size_t i = static_cast<size_t>(seq - head);
        if (i >= window_) break;
        if (q_[i].problem == p) {
            m.matched = true;
            m.dropped = static_cast<int64_t>(i);
            pop_front(i + 1);
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
    std::unordered_map<size_t, std::deque<int64_t>> gone_index;
    std::lock_guard<std::mutex> lock(mu_);
    gone.swap(q_);
    gone_index.swap(by_hash_);
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
