// LoadCosts: measured load times per kernel, persisted in the cache folder so
// the next process knows them (load_costs.json, written atomically, bounded).
#pragma once

#include <mutex>
#include <string>
#include <unordered_map>

#include "kernel.hpp"

namespace pask {

class LoadCosts {
public:
    void load_file(const std::string &path);
    void save_file(const std::string &path) const;
    void record(const KernelKey &key, double ms);
    // Measured, else a default: about a millisecond to load a prebuilt code
    // object, about 100 ms when it must be compiled first (NVRTC).
    double estimate_ms(const KernelKey &key, bool needs_compile = false) const;
    bool dirty() const;
    // Entries kept (on load and as recorded): the load costs of this many kernels.
    static constexpr size_t kMaxEntries = 4096;
    static bool looks_like_kernel_key(const std::string &k);

private:
    mutable std::mutex mu_;
    std::unordered_map<std::string, double> ms_;
    bool dirty_ = false;
};

}  // namespace pask
