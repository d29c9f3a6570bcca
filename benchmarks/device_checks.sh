#!/usr/bin/env bash
# Every GPU measurement the benchmarks name, in one command for a lent device machine:
#   OUT=<dir> bash benchmarks/device_checks.sh
# The render benchmark (Mpix/s, bytes moved and share of the H200's 4.8 TB/s, point-light PSF
# measures), then one Genfocus refocus at FLUX.1-dev size (8-step stages; 28-step figures
# extrapolated). ml_collections is installed from wheels in .whl/ when the machine lacks it.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="/tmp/site:$PWD"
OUT="${OUT:-benchmarks/results}"
if ! python3 -c "import ml_collections" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-deps --target /tmp/site .whl/*.whl
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
timeout 200 python3 -m benchmarks.render --peak_bandwidth_gbs 4800 --out "$OUT/render_h200.json" \
  > "$OUT/render_h200.log" 2>&1; echo "render exit $?"
timeout 360 python3 benchmarks/genfocus_refocus.py --steps 8 --out "$OUT/genfocus_refocus_h200.json" \
  2>&1 | tee "$OUT/genfocus_refocus_h200.log" | tail -30
