// Allocation of the CPU kernels' scratch buffers (common.hpp's ScratchOf,
// sgemm.hpp's Buffer). Internal linkage; each code object has its own copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#if defined(__linux__)
#include <sys/mman.h>
#endif

// Buffers of 2 MiB and more are aligned to 2 MiB and advised as transparent
// huge pages (where the kernel does them only on request, as this workplace's
// does): the first touch maps 2 MiB at a time, so a kernel's first call takes
// a handful of page faults instead of one per 4 KiB page (im2col's column
// buffer for ResNet-18's 56x56 layers is 7.2 MB: about 1,800 faults).
// The advice is only that: where it is refused the buffer works the same.
static inline void *pask_cpu_scratch_alloc(size_t bytes, size_t align) {
    constexpr size_t kHuge = size_t(2) << 20;
    if (bytes >= kHuge && bytes <= SIZE_MAX - kHuge) {
        const size_t rounded = (bytes + kHuge - 1) & ~(kHuge - 1);
        if (void *p = std::aligned_alloc(kHuge, rounded)) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
            (void)madvise(p, rounded, MADV_HUGEPAGE);
#endif
            return p;
        }
    }
    return std::aligned_alloc(align, bytes);
}
