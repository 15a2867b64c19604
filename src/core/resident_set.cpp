#include "resident_set.hpp"

namespace pask {

KernelPtr ResidentSet::find(const Bucket &bucket, const KernelKey &key) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = buckets_.find(bucket);
    if (it == buckets_.end()) return nullptr;
    for (const auto &k : it->second)
        if (k->key == key) return k;
    return nullptr;
}

void ResidentSet::insert(const Bucket &bucket, KernelPtr kernel) {
    std::lock_guard<std::mutex> lock(mu_);
    auto &list = buckets_[bucket];
    for (const auto &k : list)
        if (k->key == kernel->key) return;
    list.push_back(std::move(kernel));
    ++count_;
}

std::vector<KernelPtr> ResidentSet::in_bucket(const Bucket &bucket) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = buckets_.find(bucket);
    return it == buckets_.end() ? std::vector<KernelPtr>{} : it->second;
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
