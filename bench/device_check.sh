#!/usr/bin/env bash
# One device-machine call that re-checks the GPU path after a change: builds and
# installs paskdnn, runs the CUDA and cuDNN tests, the prepared-call dispatch
# benchmark, the eager host-overhead benchmark and the cold-start job, logs
# under $OUT.   (device tool) carry [".whl"]: bash bench/device_check.sh
# TESTS=... picks the test files; THEN=... the steps after them (default
# "dispatch overhead coldstart"; also onnx, peeronnx, firsttrace, yieldab, steady, fleet, loadprofile, doctor,
# driver, nanprobe). An empty TESTS= or THEN= runs none (unset: the defaults).
set -uo pipefail
REPO=$(pwd)
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
t0=$SECONDS
[ -n "${SKIP_BUILD:-}" ] && [ -d /tmp/pask/paskdnn ] ||   # SKIP_BUILD=1: a later call on the same machine
python3 -m pip install -q --upgrade --no-build-isolation --no-deps --no-index --target /tmp/pask . > /tmp/build.log 2>&1 \
  || { cp /tmp/build.log "$OUT/"; tail -50 /tmp/build.log; exit 1; }
echo "build: $((SECONDS - t0)) s"
export PYTHONPATH=/tmp/pask:/tmp/site
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cd /tmp
# TESTS: test files relative to the repository; "|" separates groups, each run
# with its own log ($OUT/gpu_tests_N.log) and TEST_TIMEOUT, so a group cut off
# by its limit does not take the others' results with it.
IFS='|' read -ra groups <<< "${TESTS-tests/test_cuda.py tests/test_cudnn.py}"
n=0
for group in "${groups[@]}"; do
  n=$((n + 1)); files=()
  for f in $group; do case $f in /*) files+=("$f") ;; *) files+=("$REPO/$f") ;; esac; done
  [ ${#files[@]} -eq 0 ] && continue
  limit=TEST_TIMEOUT_$n; limit=${!limit:-${TEST_TIMEOUT:-420}}   # TEST_TIMEOUT_2=300: group 2's own
  PYTHONUNBUFFERED=1 timeout $limit python3 -m pytest -q -rfEs --tb=short --durations=10 \
    -p no:cacheprovider "${files[@]}" > "$OUT/gpu_tests_$n.log" 2>&1
  echo "tests group $n: exit $?"; grep -E "passed|failed|FAILED|Error" "$OUT/gpu_tests_$n.log" | tail -25
done
for what in ${THEN-dispatch overhead coldstart}; do
  case $what in
    nanprobe) timeout 60 python3 "$REPO/bench/nan_probe.py" "$REPO/tests" 2>&1 | tail -24 ;;
    onnx) PYTHONUNBUFFERED=1 timeout 240 python3 "$REPO/bench/onnx_gpu_check.py" ${ONNX_ARGS:-} --out "$OUT/onnx_gpu.md" 2>&1 | grep -v Warning | tail -12 ;;
    doctor) python3 -m paskdnn doctor --device cuda > "$OUT/doctor.txt" 2>&1; echo "doctor: exit $?"; head -30 "$OUT/doctor.txt" ;;
    driver) timeout 60 python3 "$REPO/bench/driver_costs.py" 2>&1 | tail -8 ;;
    dispatch) timeout 120 python3 "$REPO/bench/plan_dispatch.py" --device cuda --iterations 100000 \
                --out "$OUT/plan_dispatch_cuda.md" 2>&1 | tail -9
              timeout 120 python3 "$REPO/bench/plan_dispatch.py" --device cuda --native --iterations 100000 \
                --out "$OUT/plan_dispatch_cuda_native.md" 2>&1 | tail -9 ;;
    overhead) timeout 180 python3 "$REPO/bench/host_overhead.py" > "$OUT/host_overhead.log" 2>&1; tail -15 "$OUT/host_overhead.log" ;;
    steady) PYTHONUNBUFFERED=1 timeout ${STEADY_TIMEOUT:-420} python3 "$REPO/bench/steady.py" ${STEADY_ARGS:-} --out "$OUT/steady.json" 2>&1 | tail -20 ;;
    fleet) python3 -m paskdnn precompile resnet50 --arch sm_90 --dtype float16 --layout NHWC -o /tmp/r50.pask \
             > "$OUT/precompile.log" 2>&1 && python3 -m paskdnn inspect /tmp/r50.pask | head -20
           PYTHONUNBUFFERED=1 timeout ${FLEET_TIMEOUT:-420} python3 "$REPO/bench/fleet.py" --bundle /tmp/r50.pask --out "$OUT/fleet" ${FLEET_ARGS:-} 2>&1 \
             | tail -20 ;;
    peeronnx) PYTHONUNBUFFERED=1 timeout ${PEER_TIMEOUT:-480} python3 "$REPO/bench/peer_onnx.py" ${PEER_ARGS:-} --out "$OUT" \
                2>&1 | grep -v -i warn | tail -30 ;;
    yieldab)  # first inference with loader_yield_ms 0 and the default, alternating, REPEATS rounds (session 23)
      mkdir -p /tmp/onnx
      for m in ${TRACE_MODELS:-torchvision:mnasnet1_0 torchvision:googlenet torchvision:regnet_y_400mf torchvision:densenet121}; do
        case $m in torchvision:*)
          n=${m#torchvision:}
          [ -f /tmp/onnx/$n.onnx ] || python3 -c "import sys; sys.path.insert(0, '$REPO/bench'); import peer_onnx; peer_onnx._export('$n', '/tmp/onnx')" \
            > /dev/null 2>&1
          m=/tmp/onnx/$n.onnx ;;
        esac
        for rep in $(seq ${REPEATS:-2}); do
          for y in 0 50; do
            mkdir -p "$OUT/yield"
            f="$OUT/yield/$(basename "$m" .onnx)_y${y}_r$rep"
            PASKDNN_LOADER_YIELD_MS=$y timeout 120 python3 "$REPO/bench/first_trace.py" --model "$m" --device cuda \
              --json-out "$f.json" > "$f.log" 2>&1
            echo "$(basename "$m") loader_yield_ms=$y round $rep: $(grep -m1 'first inference' "$f.log")"
          done
        done
      done
      # one file back instead of four a run (the device tool returns a limited number of files)
      tar czf "$OUT/yield.tgz" -C "$OUT" yield && rm -r "$OUT/yield" ;;
    firsttrace) for m in ${TRACE_MODELS:-resnet50}; do   # zoo names, FILE.onnx or torchvision:NAME
                  PYTHONUNBUFFERED=1 timeout 200 python3 "$REPO/bench/first_trace.py" --model $m --device cuda --after-loads ${TRACE_ARGS:-} \
                    --json-out "$OUT/first_trace_${m##*:}.json" 2>&1 | grep -v -i warn | tail -40
                done ;;
    loadprofile)  # a bundle's load with an empty user cache (twice) and then with the one the first warm run filled
      [ -f /tmp/r50.pask ] || python3 -m paskdnn precompile resnet50 --arch sm_90 --dtype float16 --layout NHWC \
        -o /tmp/r50.pask > "$OUT/precompile.log" 2>&1
      warm=$(mktemp -d)
      for run in cold1 cold2 warm1 warm2; do
        case $run in cold*) dir=$(mktemp -d) ;; *) dir=$warm ;; esac
        PASKDNN_CACHE_DIR=$dir timeout 120 python3 "$REPO/bench/load_profile.py" /tmp/r50.pask --top 25 \
          > "$OUT/load_profile_$run.log" 2>&1
        echo "load profile $run: $(head -1 "$OUT/load_profile_$run.log")"
      done ;;
    coldstart) PYTHONUNBUFFERED=1 timeout 240 python3 -m paskdnn coldstart --model resnet50 --device cuda --repeats 1 \
                 --out /tmp/coldstart > /tmp/coldstart.log 2>&1; tail -16 /tmp/coldstart.log
               cp /tmp/coldstart/coldstart.md /tmp/coldstart/coldstart.png "$OUT/" 2>/dev/null ;;
  esac
done
