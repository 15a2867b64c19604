#!/usr/bin/env bash
# Runs the CUDA GPU tests (tests/test_cuda.py) with paskdnn's prebuilt cubins
# rebuilt through the portable main loop that AMD GPUs use (-DPASK_PORTABLE_MMA=1:
# synchronous 16-byte copies and the FMA warp tile instead of cp.async and
# mma.sync). No AMD GPU is at hand; this checks that part of the HIP path
# numerically on an NVIDIA GPU. Needs nvcc, a CUDA GPU and paskdnn installed.
#   tools/check_portable_kernels_cuda.sh KERNEL_DIR [pytest args...]
# KERNEL_DIR: the installed kernels/ folder (its .cubin files are replaced).
set -euo pipefail
src="$(cd "$(dirname "$0")/../src/kernels/cuda" && pwd)"
tests="$(cd "$(dirname "$0")/../tests" && pwd)"
kdir="$1"
shift
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
n=0
for cubin in "$kdir"/pask_cuda_*.cubin; do
  base=$(basename "$cubin" .cubin)                  # pask_cuda_<object>.dtype=<d>.sm_<NN>
  obj=${base#pask_cuda_}; obj=${obj%%.*}
  dtype=${base#*dtype=}; dtype=${dtype%%.*}
  arch=${base##*.}
  "$nvcc" -cubin -arch="$arch" -std=c++17 -DPASK_DTYPE="$dtype" -DPASK_PORTABLE_MMA=1 -I"$src" -o "$cubin" "$src/$obj.cu"
  n=$((n + 1))
done
echo "$n cubins rebuilt with the portable main loop in $kdir"
# The tests that run the rebuilt cubins' main loop: conv2d.cuda_igemm pinned,
# and gemm / linear / matmul with cuDNN kept out (a path that does not exist).
# On HIP the igemm / gemm kernels always run the 64x64 tile, which these cover.
PASKDNN_CUDNN=/nonexistent/libcudnn.so.9 python3 -m pytest -q -p no:cacheprovider "$tests/test_cuda.py" \
  -k "(conv_solver_with_residual and cuda_igemm-) or test_gemm or linear_and_matmul" "$@"
