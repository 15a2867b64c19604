// What the CUDA and HIP backends share: run-time compilation of the kernel
// sources (NVRTC / hiprtc), loading code objects, the calling thread's stream
// per backend, and device run times from event pairs. A backend supplies the
// device API through the hooks below; CudaBackend and HipBackend derive.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../../core/backend.hpp"
#include "gpu_rtc.hpp"

namespace pask {

// The embedded source of a GPU code object (generated at build time from
// src/kernels/cuda, local includes inlined; one source for CUDA and HIP);
// nullptr when unknown.
const char *cuda_kernel_source(const std::string &object);

namespace gpu {

// The compile-time constants of a key as macros: dtype -> -DPASK_DTYPE=v,
// anything else x -> -DPASK_FIXED_X=v (each with a leading space).
std::string constant_macros(const KernelKey &key);

class GpuBackend : public Backend {
public:
    ~GpuBackend() override = default;

    std::shared_ptr<CodeObject> load_code_object(const std::string &path) override;
    bool can_compile() const override { return rtc_ != nullptr; }
    std::string compile_problem() const override { return rtc_ ? std::string() : rtc_problem_; }
    std::string compile_material(const KernelKey &key) const override;
    std::string compile(const KernelKey &key) override;

    // Per-thread streams are filed under id() (unique in the process), never
    // under the backend's address: a later backend may get the same address
    // and must not inherit a stream set for an earlier one.
    void set_stream(void *stream) const override;
    // The calling thread's stream (nullptr: the default stream).
    void *current_stream() const;
    void *get_stream() const override { return current_stream(); }
    uint64_t id() const { return id_; }

    int64_t timer_start() const override;
    void timer_stop(int64_t token) const override;
    bool timer_poll(int64_t token, double *us) const override;
    void timer_release(int64_t token) const override;

    // Runs a module's unload and symbol look-up (for the code objects this backend loads).
    virtual void module_unload(void *module) const = 0;
    virtual void *module_function(void *module, const char *name) const = 0;

    // Makes the device current for a scope: CUDA pushes the context (unless
    // it is current already), HIP sets the thread's device (and restores it).
    class DeviceScope {
    public:
        explicit DeviceScope(const GpuBackend &b) : b_(b), token_(b.enter_device()) {}
        ~DeviceScope() { b_.leave_device(token_); }
        DeviceScope(const DeviceScope &) = delete;
        DeviceScope &operator=(const DeviceScope &) = delete;

    private:
        const GpuBackend &b_;
        int token_;
    };

protected:
    GpuBackend();

    // Makes the device current for a scope (enter's result goes to leave).
    virtual int enter_device() const = 0;
    virtual void leave_device(int token) const = 0;

    // A loaded module as a code object (unloaded through module_unload).
    std::shared_ptr<CodeObject> wrap_module(const std::string &origin, void *module) const;

    // Run-time compilation: rtc_ (nullptr: none, rtc_problem_ says why).
    virtual std::string rtc_options(const KernelKey &key) const = 0;
    virtual const char *source_suffix() const = 0;  // ".cu"
    virtual const char *source_noun() const = 0;    // "CUDA source", in messages
    const Rtc *rtc_ = nullptr;
    std::string rtc_problem_;

    // Events for device run times.
    enum class Query { ready, not_ready, failed };
    virtual bool events_available() const = 0;
    virtual bool event_create(void **event) const = 0;
    virtual void event_destroy(void *event) const = 0;
    virtual bool event_record(void *event, void *stream) const = 0;
    virtual Query event_query(void *event) const = 0;
    virtual bool event_elapsed(float *ms, void *start, void *stop) const = 0;
    // True when the calling thread's stream cannot be timed now (being captured into a graph).
    virtual bool stream_capturing() const { return false; }
    // Queues fn(arg) as a host function on the calling thread's stream; false when it cannot.
    virtual bool queue_host_function(void (*fn)(void *), void *arg) const {
        (void)fn;
        (void)arg;
        return false;
    }
    // Creates event pairs for up to n timed runs now (best effort).
    void warm_timers(size_t n);
    // Destroys the events; derived destructors call it while the device is usable.
    void release_timers();

private:
    bool add_timer() const;

    const uint64_t id_;
    struct Gate;
    struct Timer {
        void *start = nullptr, *stop = nullptr;
        bool busy = false;
        Gate *gate = nullptr;  // holds the stream until the timed work is queued
    };
    mutable std::mutex timer_mu_;
    mutable std::vector<Timer> timers_;  // reused; token = index
};

}  // namespace gpu
}  // namespace pask
