// Loader: brings a KernelKey to resident: KernelStore lookup -> (compile if
// absent, GPU backends) -> Backend load -> entry lookup. Concurrent requests
// for one key share one load through a shared future; code objects are loaded
// once and shared by every kernel inside them.
#pragma once

#include <future>
#include <mutex>
#include <string>
#include <unordered_map>

#include "backend.hpp"
#include "kernel.hpp"
#include "kernel_store.hpp"

namespace pask {

class Loader {
public:
    Loader(Backend &backend, const KernelStore &store) : backend_(backend), store_(store) {}
    // Blocking load. Throws pask::Error(PASK_ERROR_LOAD_FAILED) with the reason.
    KernelPtr load(const KernelKey &key);
    // Whether the store holds a code object for key (no load).
    bool available(const KernelKey &key) const { return store_.find(key).has_value(); }

private:
    KernelPtr load_now(const KernelKey &key);
    std::shared_ptr<CodeObject> object_for(const KernelKey &key, const std::string &path);

    Backend &backend_;
    const KernelStore &store_;
    std::mutex mu_;
    std::unordered_map<std::string, std::shared_future<KernelPtr>> inflight_;
    std::unordered_map<std::string, std::weak_ptr<CodeObject>> objects_;
};

}  // namespace pask
