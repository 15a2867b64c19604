// eltwise.cpu (y = act(x * m + a) with m and a broadcast to x) and cat.cpu
// (channels joined). Both memory-bound: the work is split into row blocks of
// about kBlock elements over the runtime's threads.
#include <cmath>
#include <cstring>

#include "common.hpp"

PASK_EXPORT uint32_t pask_cpu_abi_version(void) { return PASK_CPU_ABI_VERSION; }

namespace {

constexpr int64_t kBlock = 32768;  // elements per task

// The iteration space after collapsing: x's physical dims, outermost first,
// with the trailing dims that every operand walks alike merged into `inner`.
struct Space {
    int nouter = 0;
    int64_t outer[3] = {1, 1, 1};      // extents, outermost first
    int64_t m_outer[3] = {0, 0, 0};    // m's element stride along each
    int64_t a_outer[3] = {0, 0, 0};
    int64_t inner = 1;                 // contiguous in x and y
    int64_t m_inner = 0, a_inner = 0;  // 0 (broadcast) or 1 (contiguous)
};

Space collapse(const pask_cpu_eltwise_args &a) {
    const bool nhwc = a.layout == PASK_CPU_LAYOUT_NHWC;
    // physical order of the logical dims (n, c, h, w)
    const int order[4] = {0, nhwc ? 2 : 1, nhwc ? 3 : 2, nhwc ? 1 : 3};
    const int64_t ext[4] = {a.n, a.c, a.h, a.w};
    int64_t e[4], ms[4], as[4];
    for (int i = 0; i < 4; ++i) {
        e[i] = ext[order[i]];
        ms[i] = a.m ? a.m_stride[order[i]] : 0;
        as[i] = a.a ? a.a_stride[order[i]] : 0;
    }
    Space s;
    int last = 3;
    s.inner = e[3];
    s.m_inner = ms[3];
    s.a_inner = as[3];
    // merge dim last-1 into the inner run while both operands allow it
    while (last > 0 && ms[last - 1] == s.m_inner * s.inner && as[last - 1] == s.a_inner * s.inner &&
           (s.m_inner == 0 || s.m_inner == 1) && (s.a_inner == 0 || s.a_inner == 1)) {
        --last;
        s.inner *= e[last];
    }
    for (int i = 0; i < last; ++i) {
        s.outer[s.nouter] = e[i];
        s.m_outer[s.nouter] = ms[i];
        s.a_outer[s.nouter] = as[i];
        ++s.nouter;
    }
    return s;
}

// One run of len elements: y[i] = act(x[i] * m[i*MS] + a[i*AS]). Absent
// operands come as a one-element array of the identity (1 or 0) with stride 0.
// The activations with parameters; NaN passes through (every test is false for it).
template <int MS, int AS>
void run_row(const float *x, const float *m, const float *ad, float *y, int64_t len, int act, const float *p) {
    // The product of two floats is exact in double: one rounding, at the add.
    for (int64_t i = 0; i < len; ++i) {
        const float v = float(double(x[i]) * double(m[i * MS]) + double(ad[i * AS]));
        y[i] = apply_act(v, act, p);  // p: leaky_relu's slope, clamp's bounds
    }
}

using RowFn = void (*)(const float *, const float *, const float *, float *, int64_t, int, const float *);

RowFn row_fn(int64_t ms, int64_t as) {
    if (ms && as) return run_row<1, 1>;
    if (ms) return run_row<1, 0>;
    if (as) return run_row<0, 1>;
    return run_row<0, 0>;
}

}  // namespace

PASK_EXPORT int pask_eltwise_f32(const pask_cpu_runtime *rt, const pask_cpu_eltwise_args *args) {
    const pask_cpu_eltwise_args &a = *args;
    const Space s = collapse(a);
    static const float kOne = 1.f, kZero = 0.f;
    const float *m = a.m ? a.m : &kOne;
    const float *ad = a.a ? a.a : &kZero;
    const RowFn fn = row_fn(s.m_inner, s.a_inner);
    int64_t rows = 1;
    for (int i = 0; i < s.nouter; ++i) rows *= s.outer[i];
    // Long rows split into chunks of kBlock; short ones grouped kBlock-worth a task.
    const int64_t chunks = s.inner > kBlock ? (s.inner + kBlock - 1) / kBlock : 1;
    const int64_t chunk_len = (s.inner + chunks - 1) / chunks;
    const int64_t rows_per_task = s.inner >= kBlock ? 1 : std::max<int64_t>(1, kBlock / std::max<int64_t>(s.inner, 1));
    const int64_t row_tasks = (rows + rows_per_task - 1) / rows_per_task;
    auto body = [&](int64_t task, int) {
        const int64_t row_task = task / chunks, chunk = task % chunks;
        const int64_t r0 = row_task * rows_per_task, r1 = std::min(rows, r0 + rows_per_task);
        const int64_t i0 = chunk * chunk_len, i1 = std::min(s.inner, i0 + chunk_len);
        for (int64_t r = r0; r < r1; ++r) {
            int64_t t = r, mo = 0, ao = 0;
            for (int d = s.nouter - 1; d >= 0; --d) {
                const int64_t idx = t % s.outer[d];
                t /= s.outer[d];
                mo += idx * s.m_outer[d];
                ao += idx * s.a_outer[d];
            }
            const int64_t base = r * s.inner + i0;
            fn(a.x + base, m + mo + i0 * s.m_inner, ad + ao + i0 * s.a_inner, a.y + base, i1 - i0, a.activation,
               a.act_params);
        }
    };
    run_parallel(rt, row_tasks * chunks, body);
    return 0;
}

PASK_EXPORT int pask_cat_f32(const pask_cpu_runtime *rt, const pask_cpu_cat_args *args) {
    const pask_cpu_cat_args &a = *args;
    const int64_t hw = a.h * a.w;
    if (a.layout == PASK_CPU_LAYOUT_NCHW) {
        // one task per (image, input): a contiguous block of c_i * h * w
        int64_t *offs = static_cast<int64_t *>(std::malloc(sizeof(int64_t) * size_t(a.count)));
        if (!offs) return kOutOfMemory;
        int64_t off = 0;
        for (int64_t i = 0; i < a.count; ++i) offs[i] = off, off += a.cs[i];
        auto body = [&](int64_t task, int) {
            const int64_t n = task / a.count, i = task % a.count;
            std::memcpy(a.y + (n * a.c_total + offs[i]) * hw, a.xs[i] + n * a.cs[i] * hw,
                        sizeof(float) * size_t(a.cs[i] * hw));
        };
        run_parallel(rt, a.n * a.count, body);
        std::free(offs);
        return 0;
    }
    // NHWC: every pixel's channel row is the inputs' rows one after another
    const int64_t pixels = a.n * hw;
    const int64_t per_task = std::max<int64_t>(1, kBlock / std::max<int64_t>(a.c_total, 1));
    auto body = [&](int64_t task, int) {
        const int64_t p0 = task * per_task, p1 = std::min(pixels, p0 + per_task);
        for (int64_t p = p0; p < p1; ++p) {
            float *dst = a.y + p * a.c_total;
            for (int64_t i = 0; i < a.count; ++i) {
                std::memcpy(dst, a.xs[i] + p * a.cs[i], sizeof(float) * size_t(a.cs[i]));
                dst += a.cs[i];
            }
        }
    };
    run_parallel(rt, (pixels + per_task - 1) / per_task, body);
    return 0;
}
