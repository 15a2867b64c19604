/*
 * The few differences between CUDA and HIP for paskdnn's kernel sources.
 * PASK_HIP is 1 when the source is compiled for an AMD GPU (hipcc or hiprtc:
 * clang defines __HIP__ in HIP mode; hipcc also __HIP_PLATFORM_AMD__), else 0.
 * The host may also pass -DPASK_HIP=1 (the HIP backend does, for hiprtc).
 * Included first by pask_cuda_mma.cuh; it adds nothing to a CUDA compile.
 */
#ifndef PASK_HIP_COMPAT_CUH
#define PASK_HIP_COMPAT_CUH

#ifndef PASK_HIP
#if defined(__HIP__) || defined(__HIP_PLATFORM_AMD__) || defined(__HIPCC_RTC__)
#define PASK_HIP 1
#else
#define PASK_HIP 0
#endif
#endif

#if PASK_HIP
/* hiprtc provides the device built-ins itself; an offline compile needs the header. */
#if !defined(__HIPCC_RTC__)
#include <hip/hip_runtime.h>
#endif
#ifndef __forceinline__
#define __forceinline__ inline __attribute__((always_inline))
#endif
#ifndef __align__
#define __align__(n) __attribute__((aligned(n)))
#endif
/* Kernels are written for 32-lane groups ("warps": tid >> 5); on a 64-wide
 * wavefront a warp is half of it, and shuffles stay inside 32 lanes. */
#define PASK_SHFL_XOR(v, o) __shfl_xor((v), (o), 32)
#endif

#endif /* PASK_HIP_COMPAT_CUH */
