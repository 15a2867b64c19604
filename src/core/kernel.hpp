// KernelKey, CodeObject and Kernel: what the Loader brings to resident.
//
//   KernelKey  provider/backend/object[constants]:entry@target
//              e.g. native/cpu/conv_im2col:pask_conv2d_im2col_f32@x86_64-avx2
//                   native/cuda/conv_igemm[dtype=1,kh=3,kw=3]:pask_conv2d_igemm@sm_90
//   CodeObject one loadable binary (a host shared object, a cubin, a built plan) = (object, target)
//   Kernel     one entry point inside a loaded CodeObject; several kernels may share one object
#pragma once

#include <functional>
#include <memory>
#include <string>

namespace pask {

struct KernelKey {
    std::string provider;  // "native", later "cudnn", "miopen"
    std::string backend;   // "cpu", "cuda", "hip"
    std::string object;    // code object (source) id, e.g. "conv_im2col"
    std::string entry;     // entry point inside the object
    std::string target;    // ISA / arch, e.g. "x86_64-avx512", "sm_90"
    std::string constants; // compile-time constants, "name=value,..." ("" for none)

    std::string object_id() const {
        return provider + "/" + backend + "/" + object + (constants.empty() ? "" : "[" + constants + "]") + "@" + target;
    }
    std::string str() const {
        return provider + "/" + backend + "/" + object + (constants.empty() ? "" : "[" + constants + "]") + ":" + entry +
               "@" + target;
    }
    bool operator==(const KernelKey &o) const {
        return provider == o.provider && backend == o.backend && object == o.object && entry == o.entry &&
               target == o.target && constants == o.constants;
    }
};

struct KernelKeyHash {
    size_t operator()(const KernelKey &k) const { return std::hash<std::string>()(k.str()); }
};

class CodeObject {
public:
    virtual ~CodeObject() = default;
    // Address of a named entry point, or nullptr.
    virtual void *symbol(const std::string &name) const = 0;
    const std::string &path() const { return path_; }

protected:
    explicit CodeObject(std::string path) : path_(std::move(path)) {}
    std::string path_;
};

struct Kernel {
    KernelKey key;
    std::shared_ptr<CodeObject> object;  // keeps the binary loaded while the kernel lives
    void *entry = nullptr;
    double load_ms = 0;                  // measured time to bring it resident
};

using KernelPtr = std::shared_ptr<const Kernel>;

}  // namespace pask
