"""Wall time and peak memory to refocus large photos: 1, 4 and 12 megapixels, 1 frame and a stack.

    python -m benchmarks.refocus_photo --model models/default \
        [--out benchmarks/results/refocus_photo_cpu.json]

Each case runs in a fresh process (so its peak resident memory is its own): load the export,
build a procedural photo of that size with its disparity (`procedural.make_scene`, benchmark
seed), then `Refocuser.refocus` with the depth map: one frame (K = 24 at the photo's size), and an
8-frame focal stack (8 focus points down the frame, K = 24). Reported per case: the cold call
(compiles the sampler and the renderer), the median of `--repeats` warm calls, the process's peak
RSS, and the plan (`Refocuser.plan_for(...).describe()`, which names the working resolution).
Extra cases: the no-depth path at 12 MP, and a patch-4 model of the default size (randomly
initialised; time and memory do not depend on the weights) at 12 MP, at its trained resolution
and at `max_side=512` (attention over 24 k tokens, in query blocks), the latter also as an
8-frame stack under `max_memory="2G"` (batches split, the render in strips).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

SIZES = {"1MP": (864, 1152), "4MP": (1728, 2304), "12MP": (3000, 4000)}
BLUR = 24.0


def _stack(frames: int) -> list[tuple[float, float]]:
  return [(0.5, (i + 0.5) / frames) for i in range(frames)]


def run_case(model: str, size: str, frames: int, depth: bool, max_side: int | None,
             repeats: int, max_memory: str | None = None) -> dict:
  """One case in this process (called in a child)."""
  import numpy as np
  from data_pipeline import procedural
  from diffcamera_jax.inference.refocuser import Refocuser

  h, w = SIZES[size]
  image, disparity = procedural.make_scene(procedural.BENCHMARK_SEED, 0, h, w)
  start = time.perf_counter()
  from diffcamera_jax.inference.memory import parse_bytes
  r = Refocuser.load(model, max_side=max_side,
                     max_memory=parse_bytes(max_memory) if max_memory else None)
  load_s = time.perf_counter() - start
  focus = _stack(frames)
  call = lambda: r.refocus(image, focus, BLUR, disparity=disparity if depth else None)
  start = time.perf_counter()
  out = call()
  cold = time.perf_counter() - start
  warm = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = call()
    warm.append(time.perf_counter() - start)
  assert out.shape == (frames, h, w, 3) and np.isfinite(out).all()
  return {"size": size, "hw": [h, w], "megapixels": h * w / 1e6, "frames": frames, "depth": depth,
          "plan": r.plan_for((h, w), frames, depth=depth).describe(), "load_s": load_s,
          "cold_s": cold, "warm_median_s": statistics.median(warm), "warm_s": warm,
          "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def make_patch4_export(path: str) -> None:
  """A randomly initialised default-size model with patch 4, exported to `path`."""
  import jax
  import flax.linen as nn
  from diffcamera_jax.configs.default import get_config
  from diffcamera_jax.exported import save_exported
  from diffcamera_jax.models import build_model, example_inputs
  config = get_config()
  config.model.patch_size = 4
  model, codec = build_model(config)
  params = model.init({"params": jax.random.key(0)},
                      *example_inputs(codec, tuple(config.data.image_size)))["params"]
  save_exported(path, config, nn.meta.unbox(params))


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--model", required=True, help="exported default model")
  p.add_argument("--out", default="benchmarks/results/refocus_photo_cpu.json")
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print its JSON
  args = p.parse_args(argv)
  if args.case:
    spec = json.loads(args.case)
    print(json.dumps(run_case(repeats=args.repeats, **spec)))
    return 0
  import jax
  with tempfile.TemporaryDirectory() as tmp:
    patch4 = os.path.join(tmp, "patch4")
    make_patch4_export(patch4)
    cases = [dict(model=args.model, size=s, frames=f, depth=True, max_side=None)
             for s in SIZES for f in (1, 8)]
    cases += [dict(model=args.model, size="12MP", frames=1, depth=False, max_side=None),
              dict(model=patch4, size="12MP", frames=1, depth=True, max_side=None),
              dict(model=patch4, size="12MP", frames=1, depth=True, max_side=512),
              dict(model=patch4, size="12MP", frames=8, depth=True, max_side=512,
                   max_memory="2G")]
    results = []
    for spec in cases:
      proc = subprocess.run([sys.executable, "-m", "benchmarks.refocus_photo", "--model",
                             spec["model"], "--repeats", str(args.repeats), "--case",
                             json.dumps(spec)], capture_output=True, text=True)
      if proc.returncode:
        result = {**spec, "error": proc.stderr.strip().splitlines()[-1:]}
      else:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
      result["model"] = "patch4 (random init)" if spec["model"] == patch4 else "default export"
      result["max_side"], result["max_memory"] = spec["max_side"], spec.get("max_memory")
      print(json.dumps(result), flush=True)
      results.append(result)
  report = {"device": jax.devices()[0].platform, "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "blur": BLUR, "repeats": args.repeats,
            "load_average_1min": os.getloadavg()[0], "cases": results}
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(report, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
