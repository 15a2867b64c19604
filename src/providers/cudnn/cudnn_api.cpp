#include "cudnn_api.hpp"

#include "../../core/dynlib.hpp"

#include <dlfcn.h>

#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace pask::cudnn {

using dynlib::bind;

const Api *Api::get(const std::string &path, std::string *why) {
    static std::mutex mu;
    static std::map<std::string, std::unique_ptr<Api>> loaded;
    static std::map<std::string, std::string> failures;
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = loaded.find(path); it != loaded.end()) return it->second.get();
    if (auto it = failures.find(path); it != failures.end()) {
        if (why) *why = it->second;
        return nullptr;
    }
    std::vector<std::string> names;
    if (!path.empty()) names.push_back(path);
    else names = {"libcudnn.so.9", "libcudnn.so"};
    std::string tried, used;
    void *lib = dynlib::open_first(names, tried, &used);
    auto fail_with = [&](const std::string &msg) -> const Api * {
        failures[path] = msg;
        if (why) *why = msg;
        return nullptr;
    };
    if (!lib)
        return fail_with("cuDNN (libcudnn.so.9) could not be loaded: " + tried +
                         " (set the cudnn_library option or PASKDNN_CUDNN to its path)");
    auto a = std::make_unique<Api>();
    std::string missing;
    a->file = dynlib::loaded_path(lib, used);
    // The version first: a cuDNN 8 (or 10) lacks or changes entry points, and
    // its version says so more clearly than the list of what it lacks.
    bind(lib, a->cudnnGetVersion, "cudnnGetVersion", missing);
    if (a->cudnnGetVersion) {
        a->version = a->cudnnGetVersion();
        if (a->version < kMinVersion || a->version >= kMaxVersionExclusive) {
            ::dlclose(lib);
            return fail_with(used + " (" + a->file + ") is cuDNN " + version_text(a->version) + "; cuDNN 9.x >= " +
                             version_text(kMinVersion) + " is required");
        }
    }
    bind(lib, a->cudnnGetErrorString, "cudnnGetErrorString", missing);
    bind(lib, a->cudnnGetLastErrorString, "cudnnGetLastErrorString", missing);
    bind(lib, a->cudnnCreate, "cudnnCreate", missing);
    bind(lib, a->cudnnDestroy, "cudnnDestroy", missing);
    bind(lib, a->cudnnSetStream, "cudnnSetStream", missing);
    bind(lib, a->cudnnBackendCreateDescriptor, "cudnnBackendCreateDescriptor", missing);
    bind(lib, a->cudnnBackendDestroyDescriptor, "cudnnBackendDestroyDescriptor", missing);
    bind(lib, a->cudnnBackendFinalize, "cudnnBackendFinalize", missing);
    bind(lib, a->cudnnBackendSetAttribute, "cudnnBackendSetAttribute", missing);
    bind(lib, a->cudnnBackendGetAttribute, "cudnnBackendGetAttribute", missing);
    bind(lib, a->cudnnBackendExecute, "cudnnBackendExecute", missing);
    bind(lib, a->cudnnCreateTensorDescriptor, "cudnnCreateTensorDescriptor", missing);
    bind(lib, a->cudnnDestroyTensorDescriptor, "cudnnDestroyTensorDescriptor", missing);
    bind(lib, a->cudnnSetTensor4dDescriptorEx, "cudnnSetTensor4dDescriptorEx", missing);
    bind(lib, a->cudnnCreatePoolingDescriptor, "cudnnCreatePoolingDescriptor", missing);
    bind(lib, a->cudnnDestroyPoolingDescriptor, "cudnnDestroyPoolingDescriptor", missing);
    bind(lib, a->cudnnSetPooling2dDescriptor, "cudnnSetPooling2dDescriptor", missing);
    bind(lib, a->cudnnPoolingForward, "cudnnPoolingForward", missing);
    if (!missing.empty()) {
        ::dlclose(lib);
        return fail_with("the cuDNN library " + used + " (" + a->file + ") lacks " + missing);
    }
    a->path = used;
    const Api *out = a.get();
    loaded.emplace(path, std::move(a));
    return out;  // the library stays loaded for the process
}

std::string version_text(size_t v) {
    const size_t unit = v >= 10000 ? 10000 : 1000;  // cuDNN 8 and older: 1000 * major + 100 * minor + patch
    return std::to_string(v / unit) + "." + std::to_string(v % unit / 100) + "." + std::to_string(v % 100);
}

std::string Api::message(Status s, const char *what) const {
    char last[512] = {0};
    cudnnGetLastErrorString(last, sizeof last);
    const char *name = cudnnGetErrorString(s);
    std::string out = std::string(what) + " failed: " + (name ? name : "cuDNN status " + std::to_string(s));
    if (last[0]) out += std::string(" (") + last + ")";
    return out;
}

}  // namespace pask::cudnn
