// Solver: a stateless algorithm with a stable numeric id (append-only, see
// registry.cpp) and a name. The contract:
//   applicable(P)      can this solver run Problem P?
//   kernel_for(P, t)   the KernelKey it needs for target t (generic solvers map
//                      many Problems to one key; specialised ones bake shapes in)
//   cost_us(P)         estimated run time in microseconds, used to rank solvers
//   workspace(P)       scratch bytes it needs (0 = none)
//   reserve(K, P)      readies the calling thread's scratch for run() (set-up)
//   accepts(args)      per-call values the Problem does not hold (alpha): a
//                      solver whose code object bakes them in may decline
//   run(K, P, args)    launch resident kernel K on P
#pragma once

#include <cstddef>
#include <string>

#include "backend.hpp"
#include "kernel.hpp"
#include "packed_weights.hpp"
#include "problem.hpp"

namespace pask {

// Data pointers of one call; which are used depends on the op.
struct OpArgs {
    const void *x = nullptr;         // conv/pool input, gemm A
    const void *w = nullptr;         // conv weight, gemm B
    const void *bias = nullptr;
    const void *residual = nullptr;
    void *y = nullptr;               // conv/pool/eltwise/cat output, gemm C
    const void *m = nullptr;         // eltwise multiplier (broadcast), or none
    const void *a = nullptr;         // eltwise addend (broadcast), or none
    const void *const *xs = nullptr; // cat inputs (Problem::cat_c.size() of them)
    float alpha = 1.0f;
    float beta = 0.0f;
    // Set only when the caller guarantees w is unchanged between calls (a plan
    // with constant weights): where the solver may keep w's packed copies.
    PackedWeights *packed = nullptr;
};

class Solver {
public:
    constexpr Solver(int id, const char *name, pask_op_t op, pask_device_type_t device)
        : id_(id), name_(name), op_(op), device_(device) {}
    virtual ~Solver() = default;

    int id() const { return id_; }
    const char *name() const { return name_; }
    pask_op_t op() const { return op_; }
    pask_device_type_t device() const { return device_; }

    virtual bool applicable(const Problem &p) const = 0;
    virtual KernelKey kernel_for(const Problem &p, const std::string &target) const = 0;
    virtual double cost_us(const Problem &p) const = 0;
    virtual size_t workspace(const Problem &) const { return 0; }
    virtual bool accepts(const OpArgs &) const { return true; }
    // What accepts() asks of a call, for the message when no solver accepts it.
    virtual const char *requirements() const { return ""; }
    // The provider whose code objects it runs ("native", "cudnn", "miopen").
    virtual const char *provider() const { return "native"; }
    virtual void run(const Kernel &kernel, const Problem &p, const OpArgs &args, Backend &backend) const = 0;
    // Fills args.packed (constant weights; args.w set, data pointers may be null)
    // with what run() would pack on its first call with this kernel, so that
    // call does not pay it. Nothing for solvers that pack nothing.
    virtual void pack_constant(const Kernel &, const Problem &, const OpArgs &, Backend &) const {}
    // Readies the calling thread's scratch for run() with this kernel on P
    // (allocated and written, so its pages are faulted in), so that a first
    // call on this thread allocates none. Best effort: a reservation that
    // fails leaves the scratch to run(), which reports what it cannot get.
    // Nothing for solvers that keep no scratch between calls.
    virtual void reserve(const Kernel &, const Problem &, Backend &) const {}

private:
    int id_;
    const char *name_;
    pask_op_t op_;
    pask_device_type_t device_;
};

}  // namespace pask
