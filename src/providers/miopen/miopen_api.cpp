#include "miopen_api.hpp"

#include "../../core/dynlib.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace pask::miopen {

using dynlib::bind;

const Api *Api::get(const std::string &path, std::string *why) {
    static std::mutex mu;
    static std::map<std::string, std::unique_ptr<Api>> loaded;
    static std::map<std::string, std::string> failures;
    const char *env = std::getenv("PASKDNN_MIOPEN");
    const std::string key = path + "|" + (env ? env : "");
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = loaded.find(key); it != loaded.end()) return it->second.get();
    if (auto it = failures.find(key); it != failures.end()) {
        if (why) *why = it->second;
        return nullptr;
    }
    std::vector<std::string> names;
    if (!path.empty()) names.push_back(path);
    else if (env && *env) names.push_back(env);
    else names = {"libMIOpen.so.1", "libMIOpen.so"};
    std::string tried, used;
    void *lib = dynlib::open_first(names, tried, &used);
    auto fail_with = [&](const std::string &msg) -> const Api * {
        failures[key] = msg;
        if (why) *why = msg;
        return nullptr;
    };
    if (!lib)
        return fail_with("MIOpen (libMIOpen.so) could not be loaded: " + tried +
                         " (set the miopen_library option or PASKDNN_MIOPEN to its path)");
    auto a = std::make_unique<Api>();
    std::string missing;
    a->file = dynlib::loaded_path(lib, used);
    bind(lib, a->miopenGetVersion, "miopenGetVersion", missing);
    bind(lib, a->miopenGetErrorString, "miopenGetErrorString", missing);
    bind(lib, a->miopenCreate, "miopenCreate", missing);
    bind(lib, a->miopenDestroy, "miopenDestroy", missing);
    bind(lib, a->miopenSetStream, "miopenSetStream", missing);
    bind(lib, a->miopenCreateTensorDescriptor, "miopenCreateTensorDescriptor", missing);
    bind(lib, a->miopenSet4dTensorDescriptorEx, "miopenSet4dTensorDescriptorEx", missing);
    bind(lib, a->miopenDestroyTensorDescriptor, "miopenDestroyTensorDescriptor", missing);
    bind(lib, a->miopenCreateConvolutionDescriptor, "miopenCreateConvolutionDescriptor", missing);
    bind(lib, a->miopenInitConvolutionDescriptor, "miopenInitConvolutionDescriptor", missing);
    bind(lib, a->miopenSetConvolutionGroupCount, "miopenSetConvolutionGroupCount", missing);
    bind(lib, a->miopenDestroyConvolutionDescriptor, "miopenDestroyConvolutionDescriptor", missing);
    bind(lib, a->miopenConvolutionForwardGetSolutionCount, "miopenConvolutionForwardGetSolutionCount", missing);
    bind(lib, a->miopenConvolutionForwardGetSolution, "miopenConvolutionForwardGetSolution", missing);
    bind(lib, a->miopenConvolutionForwardGetSolutionWorkspaceSize, "miopenConvolutionForwardGetSolutionWorkspaceSize",
         missing);
    bind(lib, a->miopenConvolutionForwardCompileSolution, "miopenConvolutionForwardCompileSolution", missing);
    bind(lib, a->miopenConvolutionForwardImmediate, "miopenConvolutionForwardImmediate", missing);
    bind(lib, a->miopenConvolutionForwardBias, "miopenConvolutionForwardBias", missing);
    bind(lib, a->miopenOpTensor, "miopenOpTensor", missing);
    bind(lib, a->miopenCreateActivationDescriptor, "miopenCreateActivationDescriptor", missing);
    bind(lib, a->miopenSetActivationDescriptor, "miopenSetActivationDescriptor", missing);
    bind(lib, a->miopenActivationForward, "miopenActivationForward", missing);
    bind(lib, a->miopenDestroyActivationDescriptor, "miopenDestroyActivationDescriptor", missing);
    bind(lib, a->miopenCreatePoolingDescriptor, "miopenCreatePoolingDescriptor", missing);
    bind(lib, a->miopenSet2dPoolingDescriptor, "miopenSet2dPoolingDescriptor", missing);
    bind(lib, a->miopenPoolingForward, "miopenPoolingForward", missing);
    bind(lib, a->miopenDestroyPoolingDescriptor, "miopenDestroyPoolingDescriptor", missing);
    if (!missing.empty()) {
        ::dlclose(lib);
        return fail_with("the MIOpen library " + used + " (" + a->file + ") lacks " + missing);
    }
    size_t major = 0, minor = 0, patch = 0;
    // MIOpen 2.0 (ROCm 2.x) is the oldest paskdnn accepts: the first with
    // the immediate-mode convolution API (miopenConvolutionForwardGetSolution*,
    // CompileSolution, Immediate) that the provider is built on.
    constexpr size_t kMinMajor = 2;
    if (a->miopenGetVersion(&major, &minor, &patch) != STATUS_SUCCESS || major < kMinMajor) {
        ::dlclose(lib);
        return fail_with(used + " (" + a->file + ") is MIOpen " + std::to_string(major) + "." + std::to_string(minor) +
                         "." + std::to_string(patch) + "; MIOpen " + std::to_string(kMinMajor) +
                         ".0 or newer is required (its immediate-mode convolution API)");
    }
    a->version = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
    a->path = used;
    const Api *out = a.get();
    loaded.emplace(key, std::move(a));
    return out;  // the library stays loaded for the process
}

std::string Api::message(Status s, const char *what) const {
    const char *name = miopenGetErrorString ? miopenGetErrorString(s) : nullptr;
    return std::string(what) + " failed: " + (name ? name : "MIOpen status " + std::to_string(s)) + " (" +
           std::to_string(s) + ")";
}

}  // namespace pask::miopen
