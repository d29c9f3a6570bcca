"""How the no-depth deblurring of a photo defocused as a whole behaves, for choosing its threshold.

    python tools/uniform_deblur_study.py --size 64 --num-scenes 48 --out uniform_64.json

On procedural scenes of `--scene-seed` (default the validation seed 20 000; the benchmark's
cameras), runs `physics_deblur.deblur_uniform` with evidence threshold `--min-gain` on:
- `sharp`: the all-in-focus photo (should come back unchanged);
- `varying`: the benchmark's blurred input, whose blur varies with depth (should be left alone);
- `uniformR`: the photo rendered at constant depth with a disk of R px (should be restored);
- `encoded3`: the same with a 3 px disk applied to the encoded values (gamma 1), as software
  blurs a saved image (should be restored).
Per input kind: the share deblurred and the PSNR change against the all-in-focus photo (mean ±
standard error over scenes, minimum). Per scene: the identified radius, its evidence, whether the
quadrants agreed, so that other thresholds can be read off the same run.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

RADII = (1.5, 2.0, 3.0, 5.0)


def _defocused(images: np.ndarray, radius: float, gamma: float = 2.2) -> np.ndarray:
  """Images `[N, H, W, 3]` blurred by one disk of `radius` px (constant depth)."""
  from diffcamera_jax import optics
  n = len(images)
  return np.asarray(optics.render(images, np.zeros(images.shape[:3], np.float32),
                                  np.ones(n, np.float32), np.full(n, radius, np.float32),
                                  gamma=gamma, max_radius=radius + 1))


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="JSON file to write")
  parser.add_argument("--size", type=int, default=64)
  parser.add_argument("--num-scenes", type=int, default=48)
  parser.add_argument("--scene-seed", type=int, default=20000)
  parser.add_argument("--min-gain", type=float, default=None,
                      help="evidence threshold (default: physics_deblur.UniformSearch's)")
  args = parser.parse_args(argv)
  if args.size < 16 or not 1 <= args.num_scenes <= 150:
    print("error: --size must be >= 16 and --num-scenes in [1, 150]", file=sys.stderr)
    return 2

  from diffcamera_jax.evaluation import benchmark, metrics
  from diffcamera_jax.inference.physics_deblur import UniformSearch, deblur_uniform

  search = UniformSearch() if args.min_gain is None else UniformSearch(min_gain=args.min_gain)
  scenes = benchmark.procedural_scenes(args.num_scenes, args.size, args.size,
                                       seed=args.scene_seed)
  spec = benchmark.BenchmarkSpec()
  psnr = lambda a, b: np.asarray(metrics.psnr(a, b))
  rows = []
  for start in range(0, len(scenes), 8):
    gt = benchmark.ground_truth(scenes[start:start + 8], range(start, start + 8), spec)
    n = len(gt.image)
    inputs = {"sharp": gt.image, "varying": gt.render_a}
    for radius in RADII:
      inputs[f"uniform{radius:g}"] = _defocused(gt.image, radius)
    inputs["encoded3"] = _defocused(gt.image, 3.0, gamma=1.0)
    for kind, photo in inputs.items():
      out, info = deblur_uniform(photo, search)
      change = psnr(out, gt.image) - psnr(photo, gt.image) if kind != "sharp" else \
          -np.mean(np.abs(out - photo), axis=(1, 2, 3))  # 0 when left unchanged
      for j in range(n):
        rows.append({"scene": start + j, "kind": kind, "radius": float(info["blur"][j]),
                     "gain": float(info["gain"][j]), "gamma": float(info["gamma"][j]),
                     "tiles_agree": bool(info["tiles_agree"][j]),
                     "deblurred": bool(info["deblurred"][j]), "change": float(change[j])})
  summary = {}
  for kind in dict.fromkeys(r["kind"] for r in rows):
    change = np.asarray([r["change"] for r in rows if r["kind"] == kind])
    summary[kind] = {
        "share_deblurred": float(np.mean([r["deblurred"] for r in rows if r["kind"] == kind])),
        "mean_change": float(change.mean()),
        "stderr": float(change.std(ddof=1) / np.sqrt(len(change))) if len(change) > 1 else 0.0,
        "min_change": float(change.min())}
    print(f"{kind:10s} deblurred {summary[kind]['share_deblurred']:.2f}  change "
          f"{summary[kind]['mean_change']:+.2f} ± {summary[kind]['stderr']:.2f} (min "
          f"{summary[kind]['min_change']:+.2f})")
  with open(args.out, "w") as f:
    json.dump({"size": args.size, "scene_seed": args.scene_seed, "min_gain": search.min_gain,
               "change_unit": "dB against the all-in-focus photo; for sharp, minus the mean "
                              "absolute change", "summary": summary, "per_scene": rows}, f,
              indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
