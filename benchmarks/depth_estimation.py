"""Photos per second of depth estimation (Depth Anything V2, `diffcamera_jax.depth`) at 518 px.

    python -m benchmarks.depth_estimation [--variants small] [--dtypes float32] \
        [--out benchmarks/results/depth_estimation_cpu.json]

Per variant (randomly initialised: time does not depend on the weights) and compute dtype:
- `network`: the jitted network alone on a 518 x 518 batch, for batch sizes 1 and `--batch`;
- `end_to_end`: `DepthEstimator.estimate_many` on `--batch` 3-megapixel photos (2048 x 1536,
  network input 518 x 686): Pillow resizing, the network, resizing back and normalisation.
Each reports the first (compiling) call and the median of `--repeats` warm calls, as seconds
and photos per second, measured in this one process.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time


def _time(call, repeats: int) -> tuple[float, list[float]]:
  start = time.perf_counter()
  call()
  cold = time.perf_counter() - start
  warm = []
  for _ in range(repeats):
    start = time.perf_counter()
    call()
    warm.append(time.perf_counter() - start)
  return cold, warm


def run(variant: str, dtype: str, batch: int, repeats: int) -> list[dict]:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from diffcamera_jax.depth import VARIANTS, DepthAnything, DepthEstimator

  config = VARIANTS[variant]
  params = jax.jit(lambda: DepthAnything(config).init(
      jax.random.key(0), jnp.zeros((1, 518, 518, 3)))["params"])()
  estimator = DepthEstimator(config, params, dtype=jnp.dtype(dtype), batch_size=batch)
  rng = np.random.default_rng(0)
  rows = []
  for n in sorted({1, batch}):
    pixels = jnp.asarray(rng.standard_normal((n, 518, 518, 3)), jnp.float32)
    call = lambda: estimator._run(estimator.params, pixels).block_until_ready()
    cold, warm = _time(call, repeats)
    median = statistics.median(warm)
    rows.append({"variant": variant, "dtype": dtype, "case": "network", "input": [518, 518],
                 "batch": n, "cold_s": cold, "warm_median_s": median, "warm_s": warm,
                 "photos_per_s": n / median})
  photos = [rng.random((1536, 2048, 3)).astype(np.float32) for _ in range(batch)]
  cold, warm = _time(lambda: estimator.estimate_many(photos), repeats)
  median = statistics.median(warm)
  rows.append({"variant": variant, "dtype": dtype, "case": "end_to_end", "photo": [1536, 2048],
               "input": [518, 686], "batch": batch, "cold_s": cold, "warm_median_s": median,
               "warm_s": warm, "photos_per_s": batch / median})
  return rows


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--variants", default="small", help="comma-separated: small, base, large")
  p.add_argument("--dtypes", default="float32", help="comma-separated compute dtypes")
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--out", default="benchmarks/results/depth_estimation_cpu.json")
  args = p.parse_args(argv)
  import jax
  rows = []
  for variant in args.variants.split(","):
    for dtype in args.dtypes.split(","):
      for row in run(variant, dtype, args.batch, args.repeats):
        print(json.dumps(row), flush=True)
        rows.append(row)
  device = jax.devices()[0]
  report = {"device": device.platform, "device_kind": device.device_kind,
            "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "jax": jax.__version__, "repeats": args.repeats,
            "load_average_1min": os.getloadavg()[0], "cases": rows}
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(report, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
