// The CUDA backend: one device's primary context, cubins as code objects
// (prebuilt by nvcc, or compiled by NVRTC into the user cache), launches on
// the calling thread's stream, device memory.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../../core/backend.hpp"
#include "cuda_api.hpp"

namespace pask {

class CudaBackend final : public Backend {
public:
    // nvrtc_path may be empty (search the usual sonames).
    CudaBackend(int device_index, const std::string &nvrtc_path);
    ~CudaBackend() override;

    pask_device_type_t device_type() const override { return PASK_DEVICE_CUDA; }
    int device_index() const override { return index_; }
    const char *name() const override { return "cuda"; }
    const std::vector<std::string> &targets() const override { return targets_; }
    const char *object_suffix() const override { return ".cubin"; }
    std::shared_ptr<CodeObject> load_code_object(const std::string &path) override;
    bool can_compile() const override { return nvrtc_ != nullptr; }
    std::string compile_material(const KernelKey &key) const override;
    std::string compile(const KernelKey &key) override;
    std::shared_ptr<CodeObject> load_code_object_bytes(const std::string &bytes, const std::string &origin) override;

    // Why NVRTC is unavailable ("" when it is available).
    const std::string &nvrtc_problem() const { return nvrtc_problem_; }
    int sm_count() const { return sm_count_; }

    // Launches fn on the calling thread's stream with one by-value argument.
    void launch(void *fn, const unsigned grid[3], const unsigned block[3], unsigned shared_bytes, void *params) const;
    // Throws PASK_ERROR_INVALID_ARGUMENT unless p is device (or managed) memory.
    void check_device_pointer(const void *p, const char *what) const override;

    void *malloc_device(size_t bytes) const override;
    void free_device(void *p) const override;
    void copy(void *dst, const void *src, size_t bytes, int kind) const override;
    void set_stream(void *stream) const override;
    void synchronize() const override;

    void loader_thread_started() const override;
    int64_t timer_start() const override;
    void timer_stop(int64_t token) const override;
    bool timer_poll(int64_t token, double *us) const override;
    void timer_release(int64_t token) const override;

    // Stream-ordered scratch memory on the calling thread's stream (freed after
    // the work queued so far): cuDNN workspaces. Throws
    // PASK_ERROR_OUT_OF_MEMORY when the device has no room.
    void *alloc_async(size_t bytes) const;
    void free_async(void *p) const;
    // The calling thread's stream (nullptr: the legacy default stream).
    void *current_stream() const { return stream(); }
    void *get_stream() const override { return stream(); }

    // Pushes this device's context for the scope.
    class Scope {
    public:
        explicit Scope(const CudaBackend &b);
        ~Scope();
        Scope(const Scope &) = delete;
        Scope &operator=(const Scope &) = delete;

    private:
        const cuda::Driver &d_;
    };

private:
    cuda::CUstream stream() const;
    void create_scratch_pool(cuda::CUstream setup);
    void prepare_timers(cuda::CUstream setup);

    const cuda::Driver &d_;
    const uint64_t id_;  // per-thread streams are filed under it (an address can be reused)
    int index_;
    cuda::CUdevice dev_ = 0;
    cuda::CUcontext ctx_ = nullptr;
    cuda::CUmemoryPool pool_ = nullptr;  // stream-ordered scratch (nullptr: the device's default pool)
    int sm_count_ = 0;
    std::vector<std::string> targets_;
    const cuda::Nvrtc *nvrtc_ = nullptr;
    std::string nvrtc_problem_;

    struct Gate;
    struct Timer {
        cuda::CUevent start = nullptr, stop = nullptr;
        bool busy = false;
        Gate *gate = nullptr;  // holds the stream until the timed work is queued
    };
    mutable std::mutex timer_mu_;
    mutable std::vector<Timer> timers_;  // reused; token = index
};

// The embedded source of a CUDA code object (generated at build time from
// src/kernels/cuda, local includes inlined); nullptr when unknown.
const char *cuda_kernel_source(const std::string &object);

}  // namespace pask
