"""The benchmark's ground truth as arrays, to check what a renderer change moves.

    python tools/ground_truth_digest.py --out A.npz [--size 64] [--num-scenes 150]
    python tools/ground_truth_digest.py --compare A.npz B.npz

Renders every target of the benchmark (the two single-focus renders and the multi-focus render
of each scene) and the LVCorr blur sweep, with the renderer of the checkout it runs in. Run it in
two checkouts and compare: the largest absolute difference per field, and the PSNR between them.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def digest(size: int, num_scenes: int, batch: int = 25) -> dict[str, np.ndarray]:
  from diffcamera_jax.evaluation import benchmark
  spec = benchmark.BenchmarkSpec()
  scenes = benchmark.procedural_scenes(num_scenes, size, size)
  fields: dict[str, list[np.ndarray]] = {"render_a": [], "render_b": [], "multifocus": [],
                                         "sweep": []}
  for start in range(0, num_scenes, batch):
    part = scenes[start:start + batch]
    gt = benchmark.ground_truth(part, range(start, start + len(part)), spec)
    fields["render_a"].append(gt.render_a)
    fields["render_b"].append(gt.render_b)
    fields["multifocus"].append(gt.multifocus)
    fields["sweep"].append(np.stack([
        np.asarray(benchmark._render(gt.image, gt.disparity, gt.cameras.disparity_a,
                                     np.full(len(part), k, np.float32), gamma=spec.gamma))
        for k in spec.sweep(size, size)], axis=1))
  return {k: np.concatenate(v) for k, v in fields.items()}


def compare(a: dict, b: dict) -> dict[str, dict[str, float]]:
  out = {}
  for key in a:
    diff = np.abs(a[key].astype(np.float64) - b[key])
    mse = float(np.mean(diff ** 2))
    out[key] = {"max_abs": float(diff.max()),
                "psnr_db": float("inf") if mse == 0 else 10 * np.log10(1 / mse)}
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out")
  parser.add_argument("--size", type=int, default=64)
  parser.add_argument("--num-scenes", type=int, default=150)
  parser.add_argument("--compare", nargs=2, metavar=("A", "B"))
  args = parser.parse_args(argv)
  if args.compare:
    a, b = (dict(np.load(p)) for p in args.compare)
    for key, value in compare(a, b).items():
      print(f"{key}: max |diff| {value['max_abs']:.3g}, PSNR {value['psnr_db']:.1f} dB")
    return 0
  if not args.out:
    parser.error("--out is required unless --compare is given")
  np.savez_compressed(args.out, **digest(args.size, args.num_scenes))
  return 0


if __name__ == "__main__":
  sys.exit(main())
