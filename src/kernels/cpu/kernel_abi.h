/*
 * The binary interface between the paskdnn core and a CPU kernel code object.
 *
 * A CPU code object is a shared object installed with the package (never one
 * from the user cache). The Loader dlopen()s it, checks
 * pask_cpu_abi_version() == PASK_CPU_ABI_VERSION and looks up the entry point
 * the solver's KernelKey names. Entry points return 0 on success or a
 * pask_status_t code (e.g. PASK_ERROR_OUT_OF_MEMORY for scratch) and never
 * throw, print or abort.
 *
 * Plain C so that a kernel can be written in C or C++ and compiled for any ISA
 * variant (generic, avx2, avx512) without dragging the core's headers along.
 */
#ifndef PASK_CPU_KERNEL_ABI_H
#define PASK_CPU_KERNEL_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PASK_CPU_ABI_VERSION 3u /* 2: activation codes 3..8; 3: 9..10 with the epilogue's act_params */

/* Work-sharing services the core lends a kernel for one call.
 * parallel_for runs fn(arg, task, thread) for every task in [0, ntasks) on
 * up to num_threads threads (the caller included) and returns when all are
 * done; thread is in [0, num_threads) and identifies the running thread for
 * per-thread scratch. A kernel calls parallel_for at most once at a time. */
typedef struct pask_cpu_runtime {
    void *self;
    int num_threads;
    void (*parallel_for)(void *self, int64_t ntasks,
                         void (*fn)(void *arg, int64_t task, int thread), void *arg);
} pask_cpu_runtime;

/* Activation codes match pask_activation_t. */
#define PASK_CPU_ACT_NONE 0
#define PASK_CPU_ACT_RELU 1
#define PASK_CPU_ACT_RELU6 2
#define PASK_CPU_ACT_SIGMOID 3
#define PASK_CPU_ACT_SILU 4
#define PASK_CPU_ACT_HARDSWISH 5
#define PASK_CPU_ACT_HARDSIGMOID 6
#define PASK_CPU_ACT_GELU 7
#define PASK_CPU_ACT_GELU_TANH 8
#define PASK_CPU_ACT_LEAKY_RELU 9  /* act_params[0] = negative_slope */
#define PASK_CPU_ACT_CLAMP 10      /* act_params = lo, hi */

/* Layout codes: activations NCHW / NHWC; weights OIHW / OHWI. */
#define PASK_CPU_LAYOUT_NCHW 0
#define PASK_CPU_LAYOUT_NHWC 1

/* Epilogue for every output element (see pask_epilogue_t):
 *   out = act(alpha * acc + beta * out_before + bias + residual)
 * out_before is read only when beta != 0. */
typedef struct pask_cpu_epilogue {
    float alpha;
    float beta;
    int activation;
    float act_params[2];         /* LEAKY_RELU's slope; CLAMP's lo, hi */
} pask_cpu_epilogue;

typedef struct pask_cpu_conv2d_args {
    int64_t n, c, h, w;          /* input, logical */
    int64_t o, kh, kw;           /* weight {o, c/groups, kh, kw} */
    int64_t oh, ow;              /* output spatial */
    int64_t stride_h, stride_w;
    int64_t pad_top, pad_left;   /* pad_bottom/right follow from oh/ow */
    int64_t dil_h, dil_w;
    int64_t groups;
    int layout;                  /* activations x, y, residual */
    int weight_layout;           /* OIHW (NCHW) or OHWI (NHWC) */
    const float *x;
    const float *weight;
    const float *bias;           /* {o} or NULL */
    const float *residual;       /* like y, or NULL */
    float *y;
    pask_cpu_epilogue ep;
} pask_cpu_conv2d_args;

/* Row-major C[m,n] = act(alpha * op(A) @ op(B) + beta*C + bias[n]). */
typedef struct pask_cpu_gemm_args {
    int trans_a, trans_b;
    int64_t m, n, k;
    const float *a; int64_t lda;
    const float *b; int64_t ldb;
    const float *bias;           /* {n} or NULL */
    float *c; int64_t ldc;
    pask_cpu_epilogue ep;
} pask_cpu_gemm_args;

typedef struct pask_cpu_pool2d_args {
    int mode;                    /* 0 max, 1 avg */
    int64_t n, c, h, w;
    int64_t oh, ow;
    int64_t kh, kw;
    int64_t stride_h, stride_w;
    int64_t pad_top, pad_left, pad_bottom, pad_right;
    int64_t dil_h, dil_w;
    int count_include_pad;
    int64_t divisor_override;    /* 0 = none */
    int layout;
    const float *x;
    float *y;
} pask_cpu_pool2d_args;

/* y = act(x * m + a) over x {n, c, h, w} in layout; m and a (NULL: none)
 * broadcast to x: m_stride / a_stride give each one's element stride along
 * (n, c, h, w) in logical order, 0 along a broadcast dim. y may be x. */
typedef struct pask_cpu_eltwise_args {
    int64_t n, c, h, w;
    int layout;
    int activation;
    float act_params[2];
    const float *x;
    const float *m; int64_t m_stride[4];
    const float *a; int64_t a_stride[4];
    float *y;
} pask_cpu_eltwise_args;

/* y {n, sum c_i, h, w} = inputs joined along channels, layout as given. */
typedef struct pask_cpu_cat_args {
    int64_t n, h, w;
    int layout;
    int64_t count;
    const float *const *xs;
    const int64_t *cs;           /* channels of each input */
    int64_t c_total;
    float *y;
} pask_cpu_cat_args;

typedef int (*pask_cpu_conv2d_fn)(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args *args);

/* Optional weight pre-packing of a conv2d entry point E (looked up by name,
 * absent in most objects):
 *   int64_t E_pack(args, dst)           dst NULL: the floats the packed weights
 *                                       take; else packs args->weight (as the
 *                                       Problem of args uses it) into dst (64-byte
 *                                       aligned) and returns the same count;
 *                                       < 0: -status (e.g. not for this layout)
 *   int E_packed(rt, args, packed)      E, with args->weight's packed copy
 * For callers that guarantee the weights stay unchanged between calls. */
typedef int64_t (*pask_cpu_conv2d_pack_fn)(const pask_cpu_conv2d_args *args, float *dst);
typedef int (*pask_cpu_conv2d_packed_fn)(const pask_cpu_runtime *rt, const pask_cpu_conv2d_args *args,
                                         const float *packed);

/* Optional scratch reservation of a conv2d entry point E (looked up by name):
 *   int E_reserve(args)                 grows the calling thread's scratch to
 *                                       what a call of E (or E_packed) with
 *                                       args's Problem takes, and writes it, so
 *                                       that call allocates nothing and takes
 *                                       no first-touch page faults; 0 or a
 *                                       status. Pointers in args are not read.
 * Called at set-up (pask_plan_pack_weights) on the thread that will run the
 * plan; scratch the kernel keeps per worker thread grows on their first call. */
typedef int (*pask_cpu_conv2d_reserve_fn)(const pask_cpu_conv2d_args *args);
typedef int (*pask_cpu_gemm_fn)(const pask_cpu_runtime *rt, const pask_cpu_gemm_args *args);
typedef int (*pask_cpu_pool2d_fn)(const pask_cpu_runtime *rt, const pask_cpu_pool2d_args *args);
typedef int (*pask_cpu_eltwise_fn)(const pask_cpu_runtime *rt, const pask_cpu_eltwise_args *args);
typedef int (*pask_cpu_cat_fn)(const pask_cpu_runtime *rt, const pask_cpu_cat_args *args);
typedef uint32_t (*pask_cpu_abi_version_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* PASK_CPU_KERNEL_ABI_H */
