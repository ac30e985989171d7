#!/usr/bin/env bash
# The device check, for a GPU machine lent to the session (at most ~8 minutes). Prepare once here with
# scripts/device_wheels.sh, then run through the device tool with carry [".whl", ".gl"]:
#   bash scripts/device_check.sh            # results in $OUT (the device tool's folder) or ./device_check_out
# It installs the carried wheels and GL loaders, runs the CUDA-relevant tests and benchmarks/device_check.py
# (float16 encoders, the reference preset, batched scoring, every backbone family on CUDA, a throughput table),
# and leaves device_check.json / device_check.md / pytest.log in the output folder. Record the card's figures in
# BENCHMARKS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-device_check_out}"
mkdir -p "$out"
for f in .gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
ldconfig 2>/dev/null || true
export MUJOCO_GL=egl PYTHONUNBUFFERED=1 PYTHONPATH="/tmp/site:$PWD" XLA_PYTHON_CLIENT_PREALLOCATE=false
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 2; }
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.csv" 2>&1 || true
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_encoders.py tests/test_presets.py -x 2>&1 \
  | tee "$out/pytest.log" | tail -3
timeout 330 python3 benchmarks/device_check.py --out "$out" --steps "${STEPS:-300}" 2>&1 | tee "$out/device_check.log" \
  | grep -E '^\[|steps/s|frames/s|check\(s\)'
