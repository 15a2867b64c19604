// ResidentSet: the kernels of one device that are loaded and ready, filed by
// Bucket (device, op, layout, dtype). A lookup hashes to the bucket and then
// compares full keys inside it, so finding the applicable resident kernels of
// a Problem costs a few comparisons.
//
//   buckets_ : Bucket ──> [ (KernelKey, KernelPtr), ... ]   (insertion order)
#pragma once

#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kernel.hpp"
#include "problem.hpp"

namespace pask {

class ResidentSet {
public:
    KernelPtr find(const Bucket &bucket, const KernelKey &key) const;
    void insert(const Bucket &bucket, KernelPtr kernel);
    std::vector<KernelPtr> in_bucket(const Bucket &bucket) const;
    size_t size() const;
    void clear();

private:
    mutable std::mutex mu_;
    std::unordered_map<Bucket, std::vector<KernelPtr>, BucketHash> buckets_;
    size_t count_ = 0;
};

}  // namespace pask
