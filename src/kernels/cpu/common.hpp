// Helpers shared by the CPU kernel code objects (each .so compiles its own copy;
// everything here has internal linkage).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "activation.hpp"
#include "kernel_abi.h"
#include "scratch_alloc.hpp"

#define PASK_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr int kOutOfMemory = 6;  // PASK_ERROR_OUT_OF_MEMORY

// ceil(a / b) for a >= 0, b >= 1, without forming a + b - 1 (a stride near
// INT64_MAX, which the API accepts when the output is one wide, overflows it).
inline int64_t ceil_div(int64_t a, int64_t b) { return a == 0 ? 0 : (a - 1) / b + 1; }

// The first output column whose input column ow * stride + off is >= 0.
inline int64_t first_inside(int64_t off, int64_t stride) { return off >= 0 ? 0 : ceil_div(-off, stride); }

// PyTorch's rules: relu(NaN) = relu6(NaN) = NaN, relu(+inf) = inf, relu6(+inf) = 6,
// -inf -> 0. Each test is written so that NaN fails it and falls through to v
// itself ("v > 0 ? v : 0" would turn NaN into 0); every CPU solver and
// sgemm.hpp's act_scalar/act_vec agree (tests/test_nan_inf.py). The other
// activations are activation.hpp's (tests/test_activations.py).
// p: the parameters of leaky_relu / clamp (pask_cpu_act_param).
inline float apply_act(float v, int act, const float *p) {
    if (act == PASK_CPU_ACT_RELU) return v < 0.f ? 0.f : v;
    if (act == PASK_CPU_ACT_RELU6) return v < 0.f ? 0.f : (v > 6.f ? 6.f : v);
    if (act >= PASK_CPU_ACT_LEAKY_RELU) return pask_cpu_act_param(v, act, p);  // activation.hpp
    if (act >= PASK_CPU_ACT_SIGMOID) return pask_cpu_act_ext(v, act);
    return v;
}

// out = act(alpha*acc + beta*out + bias + residual) for one element.
inline float finish(float acc, const pask_cpu_epilogue &ep, float before, float bias, float residual) {
    float v = ep.alpha * acc + bias + residual;
    if (ep.beta != 0.f) v += ep.beta * before;
    return apply_act(v, ep.activation, ep.act_params);
}

// A growable, 64-byte aligned scratch buffer of T; one per thread and purpose.
template <typename T>
struct ScratchOf {
    T *ptr = nullptr;
    size_t cap = 0;
    ScratchOf() = default;
    ScratchOf(const ScratchOf &) = delete;
    ScratchOf &operator=(const ScratchOf &) = delete;
    ~ScratchOf() { std::free(ptr); }
    // nullptr when the allocation fails (or n elements would not fit in size_t bytes).
    T *get(size_t n) {
        if (n <= cap) return ptr;
        if (n > (SIZE_MAX - 63) / sizeof(T)) return nullptr;
        size_t bytes = ((n * sizeof(T) + 63) / 64) * 64;
        void *p = pask_cpu_scratch_alloc(bytes, 64);
        if (!p) return nullptr;
        std::free(ptr);
        ptr = static_cast<T *>(p);
        cap = bytes / sizeof(T);
        return ptr;
    }
};
using Scratch = ScratchOf<float>;

// Grows s to n elements and writes them (zero bytes), so that their pages are
// faulted in now: a kernel's _reserve entry (kernel_abi.h) readies the calling
// thread's scratch at set-up this way. False when the allocation fails.
template <typename T>
bool touch(ScratchOf<T> &s, size_t n) {
    T *p = s.get(n);
    if (!p) return false;
    std::memset(static_cast<void *>(p), 0, n * sizeof(T));
    return true;
}

template <typename F>
void run_parallel(const pask_cpu_runtime *rt, int64_t ntasks, F &fn) {
    if (!rt || rt->num_threads <= 1 || ntasks <= 1) {
        for (int64_t t = 0; t < ntasks; ++t) fn(t, 0);
        return;
    }
    rt->parallel_for(
        rt->self, ntasks, [](void *arg, int64_t task, int thread) { (*static_cast<F *>(arg))(task, thread); }, &fn);
}

inline int nthreads(const pask_cpu_runtime *rt) { return rt && rt->num_threads > 1 ? rt->num_threads : 1; }

// Conv weights in the order a kernel wants: OIHW for NCHW kernels, OHWI for NHWC
// kernels. Returns the caller's pointer when it already matches, else a repacked
// copy in scratch (nullptr on allocation failure).
inline const float *weights_in(const pask_cpu_conv2d_args &a, int want, Scratch &scratch) {
    if (a.weight_layout == want || (a.kh == 1 && a.kw == 1)) return a.weight;
    const int64_t cg = a.c / a.groups, kk = a.kh * a.kw;
    float *dst = scratch.get(size_t(a.o * cg * kk));
    if (!dst) return nullptr;
    for (int64_t o = 0; o < a.o; ++o)
        for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t r = 0; r < kk; ++r) {
                if (want == PASK_CPU_LAYOUT_NHWC)  // OIHW -> OHWI
                    dst[(o * kk + r) * cg + ci] = a.weight[(o * cg + ci) * kk + r];
                else  // OHWI -> OIHW
                    dst[(o * cg + ci) * kk + r] = a.weight[(o * kk + r) * cg + ci];
            }
    return dst;
}

}  // namespace

PASK_EXPORT uint32_t pask_cpu_abi_version(void);
