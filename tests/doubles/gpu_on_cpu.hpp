// Runs paskdnn's GPU kernel sources (src/kernels/cuda) on the CPU, through
// their HIP path: every GPU thread is a std::thread, __syncthreads is a
// barrier over the block, a 32-lane shuffle is an exchange over the warp.
// With no AMD GPU at hand, this is how tests/test_hip_kernels_on_cpu.py checks
// the numbers the HIP branch computes (FMA warp tile, synchronous copies,
// _Float16 / bfloat16 conversions). Included before a kernel source; built
// only by the tests.
#pragma once

#include <math.h>

#include <barrier>
#include <memory>
#include <thread>
#include <vector>

// As under hiprtc: PASK_HIP = 1 and no hip_runtime.h (pask_hip_compat.cuh).
#define __HIPCC_RTC__ 1
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n) __attribute__((aligned(n)))

struct pask_emu_dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local pask_emu_dim3 threadIdx;
inline pask_emu_dim3 blockIdx, blockDim, gridDim;
inline std::barrier<> *pask_emu_block_barrier = nullptr;
inline thread_local std::barrier<> *pask_emu_warp_barrier = nullptr;
inline float pask_emu_exchange[1024];

inline void __syncthreads() { pask_emu_block_barrier->arrive_and_wait(); }

inline float __shfl_xor(float v, int lane_mask, int width) {
    (void)width;  // the kernels shuffle within 32 lanes
    const unsigned t = threadIdx.x;
    pask_emu_exchange[t] = v;
    pask_emu_warp_barrier->arrive_and_wait();
    const float r = pask_emu_exchange[t ^ static_cast<unsigned>(lane_mask)];
    pask_emu_warp_barrier->arrive_and_wait();
    return r;
}

// Dynamic shared memory of the one block running at a time (the kernels
// declare it `extern __shared__ unsigned pask_smem[]` inside extern "C" entries):
// the most any CUDA launch asks for (PASK_CUDA_MAX_DYNAMIC_SMEM, the 128x128 tile).
extern "C" {
alignas(16) unsigned pask_smem[81920 / 4];
}

// Runs kernel over the grid, one block at a time, on blockDim.x threads that
// serve every block in turn (a thread a GPU thread, made once a launch: made a
// block, the threads' creation took most of the emulator's time). A gate
// between blocks (a barrier whose completion runs once, after every thread
// has left the block before) sets up the next block: its index and fresh
// block and warp barriers, since a thread that returns early from a block
// drops out of that block's barriers only.
template <typename P>
void pask_emu_launch(void (*kernel)(P), const P &p, const unsigned grid[3], const unsigned block[3]) {
    gridDim = {grid[0], grid[1], grid[2]};
    blockDim = {block[0], block[1], block[2]};
    const unsigned nt = block[0] * block[1] * block[2];
    const unsigned long long blocks = 1ull * grid[0] * grid[1] * grid[2];
    if (nt == 0 || blocks == 0) return;
    std::unique_ptr<std::barrier<>> block_barrier;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    unsigned long long next = 0;  // x fastest, then y, then z
    auto set_up_next = [&]() noexcept {
        const unsigned long long b = next++;
        blockIdx = {unsigned(b % grid[0]), unsigned(b / grid[0] % grid[1]), unsigned(b / grid[0] / grid[1])};
        block_barrier = std::make_unique<std::barrier<>>(nt);
        warps.clear();
        for (unsigned w = 0; w * 32 < nt; ++w)
            warps.push_back(std::make_unique<std::barrier<>>(std::min(32u, nt - w * 32)));
        pask_emu_block_barrier = block_barrier.get();
    };
    std::barrier<decltype(set_up_next)> gate(nt, set_up_next);
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < nt; ++t)
        threads.emplace_back([&, t] {
            threadIdx = {t, 0, 0};
            for (unsigned long long b = 0; b < blocks; ++b) {
                gate.arrive_and_wait();
                pask_emu_warp_barrier = warps[t / 32].get();
                kernel(p);
                pask_emu_warp_barrier->arrive_and_drop();
                pask_emu_block_barrier->arrive_and_drop();
            }
        });
    for (auto &th : threads) th.join();
}
