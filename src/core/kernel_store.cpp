#include "kernel_store.hpp"

#include <dlfcn.h>
#include <sys/stat.h>

#include "paskdnn.h"

namespace pask {

KernelStore::KernelStore(std::string prebuilt_dir) : prebuilt_dir_(std::move(prebuilt_dir)) {}

std::string KernelStore::file_name(const KernelKey &key) {
    return "pask_" + key.backend + "_" + key.object + "." + key.target + ".so";
}

std::optional<std::string> KernelStore::find(const KernelKey &key) const {
    std::string path = prebuilt_dir_ + "/" + file_name(key);
    struct stat st;
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
    return path;
}

std::string KernelStore::default_prebuilt_dir() {
    Dl_info info;
    if (dladdr(reinterpret_cast<void *>(&pask_version_string), &info) == 0 || info.dli_fname == nullptr)
        return "kernels";
    std::string lib = info.dli_fname;
    auto slash = lib.rfind('/');
    std::string dir = slash == std::string::npos ? "." : lib.substr(0, slash);
    return dir + "/kernels";
}

}  // namespace pask
