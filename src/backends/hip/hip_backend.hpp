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

#include "../gpu/gpu_backend.hpp"
#include "hip_api.hpp"

namespace pask {

class HipBackend final : public gpu::GpuBackend {
public:
    // hip_path / hiprtc_path may be empty (search the usual sonames).
    HipBackend(int device_index, const std::string &hip_path, const std::string &hiprtc_path);
    ~HipBackend() override;

    pask_device_type_t device_type() const override { return PASK_DEVICE_HIP; }
    int device_index() const override { return index_; }
    const char *name() const override { return "hip"; }
    const std::vector<std::string> &targets() const override { return targets_; }
    const char *object_suffix() const override { return ".hsaco"; }
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
    void synchronize() const override;

    // Scratch memory ordered on the calling thread's stream (MIOpen
    // workspaces); hipMallocAsync where the runtime has it. Throws
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
    const char *source_suffix() const override { return ".hip"; }
    const char *source_noun() const override { return "kernel source"; }
    bool events_available() const override;
    bool event_create(void **event) const override;
    void event_destroy(void *event) const override;
    bool event_record(void *event, void *stream) const override;
    Query event_query(void *event) const override;
    bool event_elapsed(float *ms, void *start, void *stop) const override;

private:
    // The calling thread's stream (nullptr: the default stream).
    hip::hipStream_t stream() const { return static_cast<hip::hipStream_t>(current_stream()); }

    const hip::Runtime &rt_;
    int index_;
    std::vector<std::string> targets_;
};

// hiprtc options for a key (also part of the user-cache key material).
std::string hiprtc_options(const KernelKey &key);

}  // namespace pask
