// The cuDNN provider: vendor kernels behind paskdnn's registry.
//
// A cuDNN "code object" is a finalised execution plan for one Problem (conv2d
// and gemm through the backend graph API, with bias, residual and activation
// fused into the graph) or a set of pooling descriptors. Building one is the
// load step: heuristics query + plan finalisation, run on loader threads for
// hinted Problems. Each engine configuration the heuristics return is a
// candidate: KernelKey constants "cfg=<rank>" pick the rank-th configuration
// that finalises; residency is then tracked per (Problem, configuration).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "../../backends/cuda/cuda_backend.hpp"
#include "../../core/problem.hpp"
#include "../../core/provider.hpp"
#include "../../core/solver.hpp"
#include "cudnn_api.hpp"

namespace pask {
class Trace;
}

namespace pask::cudnn {

// A cuDNN code object (an execution plan, or pooling descriptors); the
// solver runs it through execute(). symbol() returns the object itself.
class Plan : public CodeObject {
public:
    void *symbol(const std::string &) const override { return const_cast<Plan *>(this); }
    // Queues the work on the calling thread's stream, on the provider's
    // execution handle. Throws PASK_ERROR_OUT_OF_MEMORY when its workspace
    // cannot be allocated.
    void execute(const OpArgs &a) const;
    // Queues the work with handle h on stream (the caller holds h alone).
    virtual Status enqueue(Handle h, void *stream, const OpArgs &a, void *workspace) const = 0;
    virtual int64_t workspace_bytes() const { return 0; }
    std::string what;  // "engine 12 (runtime-compiled), workspace 0 B"

protected:
    Plan(std::string origin, class CudnnProvider &prov) : CodeObject(std::move(origin)), prov_(prov) {}
    class CudnnProvider &prov_;
};

class CudnnProvider final : public Provider {
public:
    // library: a path, or "" for the usual sonames. The library is opened
    // lazily (first available() call), never in the constructor.
    CudnnProvider(CudaBackend &backend, std::string library, Trace *trace);
    ~CudnnProvider() override;

    const char *name() const override { return "cudnn"; }
    bool available() const override;
    std::string unavailable_reason() const override;
    void prepare() override;
    bool prime_thread() override;
    std::shared_ptr<CodeObject> build(const KernelKey &key) override;

    // The key of Problem p's plan from the rank-th engine configuration of the
    // runtime-compiled (rtc) or precompiled kind.
    static KernelKey key_for(const Problem &p, int rank, bool rtc, const std::string &target);
    // The cuDNN pointwise mode of an epilogue activation: relu and relu6 (a clipped
    // relu), sigmoid, silu (swish, beta 1), gelu, gelu_tanh; -1 where the graph
    // API has none (hardswish, hardsigmoid: the cuDNN solvers are then not
    // applicable and another solver runs).
    static int activation_mode(pask_activation_t act);

    const Api &api() const { return *api_; }
    CudaBackend &backend() const { return backend_; }
    // The handle executions are queued with; callers hold exec_mu() while they
    // use it (a cuDNN handle serves one thread at a time).
    Handle exec_handle();
    std::mutex &exec_mu() { return exec_mu_; }
    // "cuDNN 9.19.0 (libcudnn.so.9)"
    std::string describe() const;

private:
    // Handles for building plans: a pool, so threads that take a load over
    // do not each leave a handle behind.
    Handle checkout_build_handle();
    void return_build_handle(Handle h);
    // Runs a freshly built plan once on scratch buffers, on this (loader)
    // thread's own stream, so that cuDNN's lazy kernel loading happens here
    // rather than in the first call. Skipped when memory is short.
    // On the execution handle (h == exec_handle_) the handle is held only while
    // the run is queued. on_caller: on the calling thread's stream, for prime_thread() (cuDNN's first execution on a thread costs
    // about 0.15 ms of host time on an H100, whatever the plan).
    void warm_up(const Plan &plan, const Problem &p, Handle h, bool on_caller);
    // A freshly built plan's warm-up in build(): it first waits for a gap in the
    // context's calls (Provider::yield_to_callers), since the driver's loading
    // of the plan's kernels can hold up calls made meanwhile. Traced as
    // "cudnn yield" (when it waited) and "cudnn first run"; engine: the trace's
    // engine number ("-1" for pooling).
    void first_run(const Plan &plan, const Problem &p, Handle h, const std::string &engine);

    CudaBackend &backend_;
    std::string library_;
    Trace *trace_;
    mutable std::once_flag open_once_;
    mutable const Api *api_ = nullptr;
    mutable std::string why_;

    std::mutex prepare_mu_;
    bool prepared_ = false;                 // prepare() has ended
    std::shared_ptr<CodeObject> primer_;    // prepare()'s 3x3 plan (prime_thread)
    Problem primer_problem_;
    std::mutex handles_mu_;
    std::once_flag exec_once_;
    Handle exec_handle_ = nullptr;
    std::string exec_error_;
    std::mutex exec_mu_;
    std::vector<Handle> build_handles_;       // every build handle created (destroyed with the provider)
    std::vector<Handle> free_build_handles_;  // those not in use
};

}  // namespace pask::cudnn
