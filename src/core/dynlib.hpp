// Loading vendor libraries at run time (the CUDA driver, NVRTC, cuDNN, the HIP
// runtime, hiprtc, MIOpen): one place for dlopen's search and dlsym's binding.
#pragma once

#include <dlfcn.h>
#include <link.h>

#include <string>
#include <vector>

namespace pask::dynlib {

// fn = the symbol name in lib; when absent, name is appended to missing.
template <typename F>
void bind(void *lib, F &fn, const char *name, std::string &missing) {
    fn = reinterpret_cast<F>(::dlsym(lib, name));
    if (!fn) missing += std::string(missing.empty() ? "" : ", ") + name;
}

// The first of names that dlopen loads (empty names are skipped), or nullptr;
// tried collects why each earlier one failed, *used names the one loaded.
inline void *open_first(const std::vector<std::string> &names, std::string &tried, std::string *used = nullptr) {
    for (const auto &n : names) {
        if (n.empty()) continue;
        if (void *h = ::dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL)) {
            if (used) *used = n;
            return h;
        }
        const char *e = ::dlerror();
        tried += std::string(tried.empty() ? "" : "; ") + (e ? std::string(e) : n + ": not found");
    }
    return nullptr;
}

// The file dlopen mapped for handle (the soname resolved to a full path, as
// the dynamic linker's link map names it), or fallback when it cannot say.
inline std::string loaded_path(void *handle, const std::string &fallback) {
    struct link_map *map = nullptr;
    if (handle && ::dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map && map->l_name && map->l_name[0])
        return map->l_name;
    return fallback;
}

}  // namespace pask::dynlib
