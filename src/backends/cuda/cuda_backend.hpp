// The CUDA backend: one device's primary context, cubins as code objects
// (prebuilt by nvcc, or compiled by NVRTC into the user cache), launches on
// the calling thread's stream, device memory.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../gpu/gpu_backend.hpp"
#include "cuda_api.hpp"

namespace pask {

// NVRTC options for a native kernel key (no device needed): the target, and
// each compile-time constant as a macro.
std::string nvrtc_options(const KernelKey &key);

class CudaBackend final : public gpu::GpuBackend {
public:
    // nvrtc_path may be empty (search the usual sonames).
    CudaBackend(int device_index, const std::string &nvrtc_path);
    ~CudaBackend() override;

    pask_device_type_t device_type() const override { return PASK_DEVICE_CUDA; }
    int device_index() const override { return index_; }
    const char *name() const override { return "cuda"; }
    const std::vector<std::string> &targets() const override { return targets_; }
    const char *object_suffix() const override { return ".cubin"; }
    std::shared_ptr<CodeObject> load_code_object_bytes(const std::string &bytes, const std::string &origin) override;

    // Why NVRTC is unavailable ("" when it is available).
    const std::string &nvrtc_problem() const { return rtc_problem_; }
    int sm_count() const { return sm_count_; }

    // Launches fn on the calling thread's stream with one by-value argument.
    void launch(void *fn, const unsigned grid[3], const unsigned block[3], unsigned shared_bytes, void *params) const;
    // Throws PASK_ERROR_INVALID_ARGUMENT unless p is device (or managed) memory.
    void check_device_pointer(const void *p, const char *what) const override;

    void *malloc_device(size_t bytes) const override;
    void free_device(void *p) const override;
    void copy(void *dst, const void *src, size_t bytes, int kind) const override;
    void synchronize() const override;

    void loader_thread_started() const override;

    // Streams of our own and CUDA graph capture (thread-local capture mode).
    std::string capture_problem() const override;
    void *stream_create() const override;
    void stream_destroy(void *stream) const override;
    void capture_begin(void *stream) const override;
    std::unique_ptr<GraphExec> capture_end(void *stream) const override;
    void capture_abort(void *stream) const noexcept override;

    // Stream-ordered scratch memory on the calling thread's stream (freed after
    // the work queued so far): cuDNN workspaces. Throws
    // PASK_ERROR_OUT_OF_MEMORY when the device has no room.
    void *alloc_async(size_t bytes) const;
    void free_async(void *p) const;

    using Scope = DeviceScope;  // see GpuBackend

    void module_unload(void *module) const override;
    void *module_function(void *module, const char *name) const override;

protected:
    int enter_device() const override;
    void leave_device(int token) const override;
    std::string rtc_options(const KernelKey &key) const override;
    const char *source_suffix() const override { return ".cu"; }
    const char *source_noun() const override { return "CUDA source"; }
    bool events_available() const override;
    bool event_create(void **event) const override;
    void event_destroy(void *event) const override;
    bool event_record(void *event, void *stream) const override;
    Query event_query(void *event) const override;
    bool event_elapsed(float *ms, void *start, void *stop) const override;
    bool stream_capturing() const override;
    bool queue_host_function(void (*fn)(void *), void *arg) const override;

private:
    // The calling thread's stream (nullptr: the legacy default stream).
    cuda::CUstream stream() const { return static_cast<cuda::CUstream>(current_stream()); }
    void create_scratch_pool(cuda::CUstream setup);
    void prepare_timers(cuda::CUstream setup);

    const cuda::Driver &d_;
    int index_;
    cuda::CUdevice dev_ = 0;
    cuda::CUcontext ctx_ = nullptr;
    cuda::CUmemoryPool pool_ = nullptr;  // stream-ordered scratch (nullptr: the device's default pool)
    int sm_count_ = 0;
    std::vector<std::string> targets_;
};

}  // namespace pask
