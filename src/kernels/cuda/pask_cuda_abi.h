/*
 * The interface between the paskdnn core (host C++) and its CUDA kernels.
 * Included by the host and by the kernel sources, which are compiled by nvcc
 * (prebuilt cubins) or NVRTC (at run time, into the user cache). No CUDA
 * header is needed by either side.
 *
 * Every kernel entry is   extern "C" __global__ void ENTRY(const PARAMS p)
 * with PARAMS one of the structs below passed by value. The element type is
 * fixed at compile time: -DPASK_DTYPE=0 float32 (TF32 tensor cores),
 * 1 float16, 2 bfloat16; accumulation is float32. Pointers are device
 * pointers; bias/residual are NULL when absent and have the tensors' dtype.
 * Epilogue on every output element:
 *     y = act(alpha * acc + beta * y_before + bias[o] + residual)
 * (y_before is read only when beta != 0).
 *
 * Launch geometry is computed on the host by the pask_cuda_*_launch functions
 * at the bottom of this header (host only).
 */
#ifndef PASK_CUDA_ABI_H
#define PASK_CUDA_ABI_H

#if defined(__CUDACC_RTC__)
typedef long long pask_i64;
#else
#include <stdint.h>
typedef int64_t pask_i64;
#endif

#define PASK_CUDA_DTYPE_F32 0
#define PASK_CUDA_DTYPE_F16 1
#define PASK_CUDA_DTYPE_BF16 2

#define PASK_CUDA_LAYOUT_NCHW 0 /* weights: OIHW */
#define PASK_CUDA_LAYOUT_NHWC 1 /* weights: OHWI */

#define PASK_CUDA_ACT_NONE 0
#define PASK_CUDA_ACT_RELU 1
#define PASK_CUDA_ACT_RELU6 2

typedef struct pask_cuda_conv2d_params {
    pask_i64 n, c, h, w;       /* input, logical */
    pask_i64 o, kh, kw;        /* weight {o, c/groups, kh, kw} */
    pask_i64 oh, ow;
    pask_i64 stride_h, stride_w;
    pask_i64 pad_top, pad_left;
    pask_i64 dil_h, dil_w;
    pask_i64 groups;
    int layout;                /* x, y, residual */
    int weight_layout;
    const void *x;
    const void *w;
    const void *bias;
    const void *residual;
    void *y;
    float alpha, beta;
    int activation;
    int pad_;
} pask_cuda_conv2d_params;

typedef struct pask_cuda_gemm_params {
    /* row-major C[m x n] = op(A)[m x k] @ op(B)[k x n] (+ bias[n]) */
    pask_i64 m, n, k;
    pask_i64 lda, ldb, ldc;
    int trans_a, trans_b;
    const void *a;
    const void *b;
    const void *bias;
    void *c;
    float alpha, beta;
    int activation;
    int pad_;
} pask_cuda_gemm_params;

typedef struct pask_cuda_pool2d_params {
    pask_i64 n, c, h, w;
    pask_i64 oh, ow;
    pask_i64 kh, kw;
    pask_i64 stride_h, stride_w;
    pask_i64 pad_top, pad_left, pad_bottom, pad_right;
    pask_i64 dil_h, dil_w;
    pask_i64 divisor_override; /* 0 = none */
    int mode;                  /* 0 max, 1 avg */
    int count_include_pad;
    int layout;
    int pad_;
    const void *x;
    void *y;
} pask_cuda_pool2d_params;

#endif /* PASK_CUDA_ABI_H */
