#!/usr/bin/env bash
# The doctor's real output on a GPU machine, kept in bench/results/ (issue 21).
# Run on the GPU machine from the repository root, after installing paskdnn with
# the extra for that machine's driver, e.g.:
#   python3 -m pip install ".[cuda12]"    # CUDA 12.x driver (".[cuda13]" for CUDA 13, ".[rocm]" on ROCm)
#   bash bench/doctor_gpu.sh [cuda|hip]   # default cuda
# Writes bench/results/doctor-<device>-<gpu>.txt (the text report, with the
# nvidia-smi / rocm-smi line that identifies the machine) and .json (the same
# findings, machine-readable); exits with the doctor's status (1: the backend
# cannot work on this machine, and the files say why). Commit both files.
set -uo pipefail
DEVICE=${1:-cuda}
RESULTS=${RESULTS:-bench/results}
mkdir -p "$RESULTS"
if [ "$DEVICE" = cuda ] && command -v nvidia-smi > /dev/null; then
  MACHINE=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)
elif [ "$DEVICE" = hip ] && command -v rocm-smi > /dev/null; then
  MACHINE=$(rocm-smi --showproductname --csv 2>/dev/null | sed -n 2p)
else
  MACHINE="unknown (no nvidia-smi / rocm-smi)"
fi
TAG=$(echo "${MACHINE%%,*}" | tr -cs 'A-Za-z0-9' '-' | sed 's/-$//' | tr 'A-Z' 'a-z')
BASE="$RESULTS/doctor-$DEVICE-${TAG:-unknown}"
{
  echo "# python -m paskdnn doctor --device $DEVICE on: $MACHINE ($(date -u +%Y-%m-%dT%H:%MZ))"
  python3 -m paskdnn doctor --device "$DEVICE"
} > "$BASE.txt" 2>&1
STATUS=$?
python3 -m paskdnn doctor --device "$DEVICE" --json > "$BASE.json" 2> /dev/null
cat "$BASE.txt"
echo "exit status $STATUS; written: $BASE.txt $BASE.json"
exit $STATUS
