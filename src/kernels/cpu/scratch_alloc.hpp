// Allocation of the CPU kernels' scratch buffers (common.hpp's ScratchOf,
// sgemm.hpp's Buffer). Internal linkage; each code object has its own copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>

// Plain aligned memory. Buffers were once advised as transparent huge pages
// (MADV_HUGEPAGE) to take fewer first-touch faults; where the kernel's THP
// defrag setting is "madvise" (this workplace's), a fault in an advised region
// may compact memory synchronously, and a first inference stalled by 15-40 ms
// in about half of fresh processes (ResNet-18 NCHW, one thread: first / steady
// 1.47-1.98 with the advice, 1.05-1.15 without; steady state the same).
static inline void *pask_cpu_scratch_alloc(size_t bytes, size_t align) {
    const size_t rounded = (bytes + align - 1) / align * align;  // aligned_alloc wants a multiple
    return std::aligned_alloc(align, rounded < bytes ? bytes : rounded);
}
