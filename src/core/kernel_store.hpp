// KernelStore: where code objects live. For host code (CPU kernels) only the
// read-only prebuilt store installed with the package is ever consulted, so a
// writable cache folder can never become code execution. GPU backends add the
// user cache (content-addressed, atomic, checksummed) behind the same lookup.
#pragma once

#include <optional>
#include <string>

#include "kernel.hpp"

namespace pask {

class KernelStore {
public:
    explicit KernelStore(std::string prebuilt_dir);
    // Path of the code object holding key, or nullopt when the store lacks it.
    std::optional<std::string> find(const KernelKey &key) const;
    const std::string &prebuilt_dir() const { return prebuilt_dir_; }
    // File name of a code object in a store: pask_<backend>_<object>.<target>.so
    static std::string file_name(const KernelKey &key);
    // The prebuilt folder installed beside libpaskdnn (<libdir>/kernels).
    static std::string default_prebuilt_dir();

private:
    std::string prebuilt_dir_;
};

}  // namespace pask
