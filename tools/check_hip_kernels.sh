#!/usr/bin/env bash
# Compiles paskdnn's GPU kernel sources (src/kernels/cuda) for AMD GPUs with
# hipcc, as code objects (--genco), for every dtype, the fixed-geometry variant
# of conv_igemm, and two targets (gfx90a: wave64, gfx1030: wave32). Only checks
# that the HIP path compiles: nothing runs (no AMD GPU here).
#   tools/check_hip_kernels.sh [OUT_DIR]
# Exit status 0 when everything compiled; 77 when hipcc is not installed.
set -euo pipefail
cd "$(dirname "$0")/../src/kernels/cuda"
command -v hipcc >/dev/null || { echo "hipcc not found: HIP kernel compile check skipped"; exit 77; }
export HIP_PLATFORM=amd  # hipcc would pick nvcc where the CUDA toolkit is installed
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
archs="${PASK_HIP_ARCHS:-gfx90a gfx1030}"
# one line a code object: its hipcc arguments; run nproc at a time (32 serial
# compiles took about 6 of CI's minutes on 2 cores)
jobs=()
for arch in $archs; do
  for obj in conv_igemm conv_depthwise gemm pool eltwise; do
    for dtype in 0 1 2; do
      jobs+=("--offload-arch=$arch --genco -std=c++17 -DPASK_DTYPE=$dtype -o $out/pask_hip_$obj.dtype=$dtype.$arch.hsaco $obj.cu")
    done
  done
  jobs+=("--offload-arch=$arch --genco -std=c++17 -DPASK_DTYPE=1 -DPASK_FIXED_KH=3 -DPASK_FIXED_KW=3 \
-DPASK_FIXED_STRIDE=1 -DPASK_FIXED_PAD=1 -DPASK_FIXED_DIL=1 -o $out/pask_hip_conv_igemm.fixed.$arch.hsaco conv_igemm.cu")
done
# xargs exits non-zero (123) when any compile fails; hipcc's own errors go to stderr
printf '%s\n' "${jobs[@]}" | xargs -P "$(nproc 2>/dev/null || echo 2)" -L 1 hipcc
n=${#jobs[@]}
echo "hipcc $(hipcc --version 2>/dev/null | grep -m1 -i 'HIP version' || true): $n HIP code objects compiled into $out"
