#include "resident_set.hpp"

namespace pask {

KernelPtr ResidentSet::find(const Bucket &bucket, const KernelKey &key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = buckets_.find(bucket);
    if (it == buckets_.end()) return nullptr;
    for (auto &e : it->second)
        if (e.kernel->key == key) {
            e.last_use = ++tick_;
            return e.kernel;
        }
    return nullptr;
}

bool ResidentSet::touch(const Bucket &bucket, const Kernel *kernel) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = buckets_.find(bucket);
    if (it == buckets_.end()) return false;
    for (auto &e : it->second)
        if (e.kernel.get() == kernel) {
            e.last_use = ++tick_;
            return true;
        }
    return false;
}

bool ResidentSet::contains(const Bucket &bucket, const KernelKey &key) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = buckets_.find(bucket);
    if (it == buckets_.end()) return false;
    for (const auto &e : it->second)
        if (e.kernel->key == key) return true;
    return false;
}

size_t ResidentSet::evict_to(size_t limit) {
    size_t evicted = 0;
    while (count_ > limit) {
        std::vector<Entry> *victim_list = nullptr;
        size_t victim = 0;
        uint64_t oldest = UINT64_MAX;
        for (auto &[b, list] : buckets_)
            for (size_t i = 0; i < list.size(); ++i)
                if (list[i].last_use < oldest) {
                    oldest = list[i].last_use;
                    victim_list = &list;
                    victim = i;
                }
        if (!victim_list) break;
        victim_list->erase(victim_list->begin() + static_cast<std::ptrdiff_t>(victim));
        --count_;
        ++evicted;
    }
    return evicted;
}

size_t ResidentSet::insert(const Bucket &bucket, KernelPtr kernel) {
    std::lock_guard<std::mutex> lock(mu_);
    if (capacity_ == 0) return 0;
    auto &list = buckets_[bucket];
    for (auto &e : list)
        if (e.kernel->key == kernel->key) {
            e.last_use = ++tick_;
            return 0;
        }
    list.push_back(Entry{std::move(kernel), ++tick_});
    ++count_;
    return evict_to(capacity_);
}

size_t ResidentSet::set_capacity(size_t capacity) {
    std::lock_guard<std::mutex> lock(mu_);
    capacity_ = capacity;
    return evict_to(capacity_);
}

size_t ResidentSet::capacity() const {
    std::lock_guard<std::mutex> lock(mu_);
    return capacity_;
}

size_t ResidentSet::size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return count_;
}

void ResidentSet::clear() {
    std::lock_guard<std::mutex> lock(mu_);
    buckets_.clear();
    count_ = 0;
}

}  // namespace pask
