#include "loader.hpp"

#include <chrono>

#include "error.hpp"

namespace pask {

KernelPtr Loader::load(const KernelKey &key) {
    const std::string id = key.str();
    std::promise<KernelPtr> promise;
    std::shared_future<KernelPtr> future;
    bool owner = false;
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = inflight_.find(id);
        if (it != inflight_.end()) {
            future = it->second;
        } else {
            future = promise.get_future().share();
            inflight_.emplace(id, future);
            owner = true;
        }
    }
    if (owner) {
        try {
            promise.set_value(load_now(key));
        } catch (...) {
            promise.set_exception(std::current_exception());
        }
        std::lock_guard<std::mutex> lock(mu_);
        inflight_.erase(id);
    }
    return future.get();  // rethrows the owner's pask::Error
}

std::shared_ptr<CodeObject> Loader::object_for(const KernelKey &key, const std::string &path) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = objects_.find(key.object_id());
        if (it != objects_.end())
            if (auto obj = it->second.lock()) return obj;
    }
    auto obj = backend_.load_code_object(path);
    std::lock_guard<std::mutex> lock(mu_);
    objects_[key.object_id()] = obj;
    return obj;
}

KernelPtr Loader::load_now(const KernelKey &key) {
    auto t0 = std::chrono::steady_clock::now();
    auto path = store_.find(key);
    if (!path)
        fail(PASK_ERROR_LOAD_FAILED, "kernel code object " + KernelStore::file_name(key) + " not found in " +
                                         store_.prebuilt_dir());
    auto obj = object_for(key, *path);
    void *entry = obj->symbol(key.entry);
    if (!entry) fail(PASK_ERROR_LOAD_FAILED, "entry point " + key.entry + " missing from " + *path);
    auto kernel = std::make_shared<Kernel>();
    kernel->key = key;
    kernel->object = std::move(obj);
    kernel->entry = entry;
    kernel->load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return kernel;
}

}  // namespace pask
