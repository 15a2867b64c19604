#!/usr/bin/env bash
# One device-machine call: install the wheels paskdnn's build needs, build and
# install paskdnn, run the GPU tests, then the GPU benchmark. Logs under $OUT.
#   (device tool) carry [".whl"]: bash bench/device_run.sh [--quick]
set -uo pipefail
REPO=$(pwd)
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --upgrade --no-build-isolation --no-deps --no-index --target /tmp/pask . > "$OUT/build.log" 2>&1 \
  || { tail -50 "$OUT/build.log"; exit 1; }
export PYTHONPATH=/tmp/pask:/tmp/site
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cd /tmp
if [ "${1:-}" = "--peer" ]; then
  PYTHONUNBUFFERED=1 timeout 400 python3 "$REPO/bench/peer_torch.py" --models ${PEER_MODELS:-resnet50} \
    --repeats ${REPEATS:-1} --out "$OUT" 2>&1 | tail -8
  exit 0
fi
if [ "${1:-}" = "--coldstart" ]; then  # the main job on the GPU, and the PyTorch peer comparison
  for m in ${MODELS:-resnet50}; do
    PYTHONUNBUFFERED=1 timeout 300 python3 -m paskdnn coldstart --model $m --device cuda --repeats ${REPEATS:-2} \
      --out "$OUT/coldstart-$m" 2>&1 | tail -14
  done
  PYTHONUNBUFFERED=1 timeout 300 python3 "$REPO/bench/peer_torch.py" --models ${PEER_MODELS:-resnet50} \
    --repeats ${REPEATS:-2} --out "$OUT" 2>&1 | tail -8
  exit 0
fi
if [ "${1:-}" = "--tests" ]; then  # named test files (TESTS), then optional commands (THEN), logs in $OUT
  PYTHONUNBUFFERED=1 timeout ${TEST_TIMEOUT:-300} python3 -m pytest -q -rs -p no:cacheprovider ${TESTS:-"$REPO/tests/test_cuda.py"} 2>&1 \
    | tee "$OUT/tests.log" | grep -E "passed|failed|FAILED|Error|error" | tail -40
  if [ -n "${THEN:-}" ]; then eval "$THEN"; fi
  exit 0
fi
if [ "${1:-}" = "--bench-only" ]; then
  PYTHONUNBUFFERED=1 timeout 500 python3 "$REPO/bench/gpu_ops.py" --out "$OUT/gpu.md" > "$OUT/gpu_bench.log" 2>&1
  tail -30 "$OUT/gpu_bench.log"
  PYTHONUNBUFFERED=1 timeout 300 python3 "$REPO/bench/cudnn_ops.py" --out "$OUT/cudnn.md" > "$OUT/cudnn_bench.log" 2>&1
  tail -8 "$OUT/cudnn_bench.log"; exit 0
fi
PYTHONUNBUFFERED=1 timeout 400 python3 -m pytest -q -x -p no:cacheprovider "$REPO/tests/test_cuda.py" "$REPO/tests/test_cudnn.py" 2>&1 | tee "$OUT/test_cuda.log" | tail -25
if [ "${1:-}" != "--tests-only" ]; then
  PYTHONUNBUFFERED=1 timeout 420 python3 "$REPO/bench/gpu_ops.py" ${1:-} --out "$OUT/gpu.md" > "$OUT/gpu_bench.log" 2>&1
  tail -40 "$OUT/gpu_bench.log"
fi
