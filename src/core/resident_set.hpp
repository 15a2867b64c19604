// ResidentSet: the kernels of one device that are loaded and ready, filed by
// Bucket (device, op, layout, dtype). A lookup hashes to the bucket and then
// compares full keys inside it, so finding the resident kernels of a
// Problem's applicable solvers costs a few comparisons.
//
//   buckets_ : Bucket ──> [ Entry{KernelPtr, last_use}, ... ]
//
// Bounded: inserting past the capacity evicts the least recently used entry
// (its code object unloads once no running call holds it). Capacity 0 keeps
// nothing resident beyond the call that loaded it.
#pragma once

#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "kernel.hpp"
#include "problem.hpp"

namespace pask {

class ResidentSet {
public:
    explicit ResidentSet(size_t capacity = 256) : capacity_(capacity) {}
    // The resident kernel for key in bucket (and marks it used), or nullptr.
    KernelPtr find(const Bucket &bucket, const KernelKey &key);
    // Files kernel under bucket; returns how many entries were evicted.
    size_t insert(const Bucket &bucket, KernelPtr kernel);
    bool contains(const Bucket &bucket, const KernelKey &key) const;
    // Whether this very kernel is still filed under bucket (and marks it used):
    // find() without the key comparisons, for a decision remembered earlier.
    bool touch(const Bucket &bucket, const Kernel *kernel);
    // Sets the capacity, evicting as needed; returns evictions.
    size_t set_capacity(size_t capacity);
    size_t capacity() const;
    size_t size() const;
    void clear();

private:
    struct Entry {
        KernelPtr kernel;
        uint64_t last_use;
    };
    size_t evict_to(size_t limit);  // mu_ held

    mutable std::mutex mu_;
    std::unordered_map<Bucket, std::vector<Entry>, BucketHash> buckets_;
    size_t count_ = 0;
    size_t capacity_;
    uint64_t tick_ = 0;
};

}  // namespace pask
