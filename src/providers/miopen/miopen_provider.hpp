// The MIOpen provider: AMD's vendor kernels behind paskdnn's registry.
//
// A MIOpen "code object" is one compiled solution for one Problem. Building it
// is the load step, run on loader threads for hinted Problems (the PaSK
// setting): tensor and convolution descriptors ->
// miopenConvolutionForwardGetSolutionCount -> GetSolution (MIOpen's ranking)
// -> CompileSolution(solution_id) -> GetSolutionWorkspaceSize. The call then
// runs miopenConvolutionForwardImmediate with that solution id (bias, residual
// and activation as MIOpen tensor ops after it). Pooling is a set of
// descriptors and miopenPoolingForward. KernelKey constants "sol=<rank>" pick
// the rank-th solution MIOpen lists; residency, reuse, shared loads and load
// costs are those of every other kernel.
//
// Written to MIOpen's documented C API and tested against a test double
// (tests/doubles/); not yet run on AMD hardware.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../../backends/hip/hip_backend.hpp"
#include "../../core/problem.hpp"
#include "../../core/provider.hpp"
#include "../../core/solver.hpp"
#include "miopen_api.hpp"

namespace pask {
class Trace;
}

namespace pask::miopen {

// A MIOpen code object; the solver runs it through execute(). symbol()
// returns the object itself.
class Plan : public CodeObject {
public:
    using CodeObject::CodeObject;
    void *symbol(const std::string &) const override { return const_cast<Plan *>(this); }
    // Queues the work on the calling thread's stream. Throws
    // PASK_ERROR_OUT_OF_MEMORY when its workspace cannot be allocated.
    virtual void execute(const OpArgs &a) const = 0;
    std::string what;  // "solution 57 (algorithm 0), workspace 4096 B"
};

// MIOpen's activation descriptor has the epilogue's none, relu, relu6 (clipped
// relu) and sigmoid (logistic); not silu, hardswish, hardsigmoid or gelu: the
// MIOpen solvers are then not applicable and another solver runs.
bool miopen_has_activation(pask_activation_t act);

class MiopenProvider final : public Provider {
public:
    // library: a path, or "" for $PASKDNN_MIOPEN or the usual sonames. The
    // library is opened lazily (first available() call), never in the constructor.
    MiopenProvider(HipBackend &backend, std::string library, Trace *trace);
    ~MiopenProvider() override;

    const char *name() const override { return "miopen"; }
    bool available() const override;
    std::string unavailable_reason() const override;
    void prepare() override;
    std::shared_ptr<CodeObject> build(const KernelKey &key) override;

    // The key of Problem p's rank-th MIOpen solution (pooling: rank 0).
    static KernelKey key_for(const Problem &p, int rank, const std::string &target);

    const Api &api() const { return *api_; }
    HipBackend &backend() const { return backend_; }
    // The handle executions are queued with; callers hold exec_mu() while they
    // use it (a MIOpen handle serves one thread at a time).
    Handle exec_handle();
    std::mutex &exec_mu() { return exec_mu_; }

private:
    Handle handle_for_this_thread();

    HipBackend &backend_;
    std::string library_;
    Trace *trace_;
    mutable std::once_flag open_once_;
    mutable const Api *api_ = nullptr;
    mutable std::string why_;

    std::mutex handles_mu_;
    std::once_flag exec_once_;
    Handle exec_handle_ = nullptr;
    std::string exec_error_;
    std::mutex exec_mu_;
    std::vector<Handle> build_handles_;  // one per building thread (loader threads, takers-over)
    const uint64_t id_;                  // tells this provider's thread-local handles apart
};

}  // namespace pask::miopen
