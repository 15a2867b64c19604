// The HIP backend: one AMD GPU through the HIP runtime (dlopen'd), code
// objects compiled by hiprtc from the same kernel sources as CUDA into the
// user cache and loaded with hipModuleLoadData, launches on the calling
// thread's stream, device memory. Written to HIP's documented C API; not yet
// run on AMD hardware (docs/amd.md).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../../core/backend.hpp"
#include "hip_api.hpp"

namespace pask {

class HipBackend final : public Backend {
public:
    // hip_path / hiprtc_path may be empty (search the usual sonames).
    HipBackend(int device_index, const std::string &hip_path, const std::string &hiprtc_path);
    ~HipBackend() override;

    pask_device_type_t device_type() const override { return PASK_DEVICE_HIP; }
    int device_index() const override { return index_; }
    const char *name() const override { return "hip"; }
    const std::vector<std::string> &targets() const override { return targets_; }
    const char *object_suffix() const override { return ".hsaco"; }
    std::shared_ptr<CodeObject> load_code_object(const std::string &path) override;
    bool can_compile() const override { return rtc_ != nullptr; }
    std::string compile_material(const KernelKey &key) const override;
    std::string compile(const KernelKey &key) override;
    std::shared_ptr<CodeObject> load_code_object_bytes(const std::string &bytes, const std::string &origin) override;

    // Why hiprtc is unavailable ("" when it is available).
    const std::string &rtc_problem() const { return rtc_problem_; }
    const hip::Runtime &runtime() const { return rt_; }

    // Launches fn on the calling thread's stream with one by-value argument.
    void launch(void *fn, const unsigned grid[3], const unsigned block[3], unsigned shared_bytes, void *params) const;
    void check_device_pointer(const void *p, const char *what) const override;

    void *malloc_device(size_t bytes) const override;
    void free_device(void *p) const override;
    void copy(void *dst, const void *src, size_t bytes, int kind) const override;
    void set_stream(void *stream) const override;
    void synchronize() const override;

    int64_t timer_start() const override;
    void timer_stop(int64_t token) const override;
    bool timer_poll(int64_t token, double *us) const override;
    void timer_release(int64_t token) const override;

    // Scratch memory ordered on the calling thread's stream (MIOpen
    // workspaces); hipMallocAsync where the runtime has it. Throws
    // PASK_ERROR_OUT_OF_MEMORY when the device has no room.
    void *alloc_async(size_t bytes) const;
    void free_async(void *p) const;
    void *current_stream() const { return stream(); }
    void *get_stream() const override { return stream(); }

    // Makes this device current on the calling thread for the scope (HIP's
    // current device is per thread; the previous one is restored).
    class Scope {
    public:
        explicit Scope(const HipBackend &b);
        ~Scope();
        Scope(const Scope &) = delete;
        Scope &operator=(const Scope &) = delete;

    private:
        const hip::Runtime &rt_;
        int previous_ = -1;
    };

private:
    hip::hipStream_t stream() const;

    const hip::Runtime &rt_;
    int index_;
    std::vector<std::string> targets_;
    const hip::Hiprtc *rtc_ = nullptr;
    std::string rtc_problem_;

    struct Timer {
        hip::hipEvent_t start = nullptr, stop = nullptr;
        bool busy = false;
    };
    mutable std::mutex timer_mu_;
    mutable std::vector<Timer> timers_;  // reused; token = index
};

// hiprtc options for a key (also part of the user-cache key material).
std::string hiprtc_options(const KernelKey &key);

}  // namespace pask
