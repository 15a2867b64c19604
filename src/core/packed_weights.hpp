// PackedWeights: a plan's weights in the forms its kernels want, made once.
//
// A plan whose caller declared its weights constant (pask_plan_set_constant_weights)
// owns one; executions with those weights hand it to the solver, which keeps
// (per KernelKey: the layout belongs to the kernel) a copy packed on first use
// and skips packing afterwards. Eager calls and plans without the declaration
// never get one, so weights changed in place between their calls are read anew.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace pask {

class PackedWeights {
public:
    // The copy filed under key, made by make() (which returns nullptr when the
    // kernel packs nothing for this Problem; that answer is kept too).
    std::shared_ptr<const float> get(const std::string &key,
                                     const std::function<std::shared_ptr<const float>()> &make) {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = by_kernel_.find(key);
        if (it != by_kernel_.end()) return it->second;
        auto made = make();
        by_kernel_.emplace(key, made);
        return made;
    }

private:
    std::mutex mu_;
    std::map<std::string, std::shared_ptr<const float>> by_kernel_;
};

}  // namespace pask
