"""What knowing the photo's camera is worth: deblur and refocus by inverting the renderer.

    python tools/camera_limit.py --model models/default --out docs/results/camera_limit.json

On validation scenes (`--scene-seed`, default the validation seed 20 000; the benchmark's cameras
and tasks), with the true disparity, scores per scene against the input:
- the model's restoration stage (its sharp estimate), the model's estimate of the source camera
  (its blur map fitted as `K |D - d|`, `models.restorer.fit_defocus`) and how far that is off;
- `optics.invert_render` (the sharp image whose render reproduces the photo) with the true source
  camera, with the camera perturbed (blur scaled, focus disparity shifted) and with the model's
  estimate;
- refocus: the classical re-render of the input (the benchmark's renderer baseline) against the
  re-render of the inverted sharp image, each at the requested camera.
Means of per-scene differences with their standard error, and the share of scenes improved.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import numpy as np


def _summary(gain: np.ndarray) -> dict:
  n = len(gain)
  return {"mean_gain_db": float(gain.mean()),
          "stderr_db": float(gain.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
          "share_better": float(np.mean(gain > 0))}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", required=True,
                      help="an exported model with a restoration stage (objective.prior='restore')")
  parser.add_argument("--out", required=True, help="JSON file to write")
  parser.add_argument("--num-scenes", type=int, default=48)
  parser.add_argument("--scene-seed", type=int, default=20_000)
  parser.add_argument("--iterations", type=int, default=50)
  parser.add_argument("--tv-weight", type=float, default=3e-4)
  args = parser.parse_args(argv)

  import jax
  import jax.numpy as jnp

  from diffcamera_jax import optics
  from diffcamera_jax.evaluation import benchmark, metrics
  from diffcamera_jax.exported import load_exported
  from diffcamera_jax.models import build_model
  from diffcamera_jax.models.restorer import fit_defocus
  from diffcamera_jax.optics.invert import invert_render

  config, params = load_exported(args.model)
  if config.objective.get("prior", "none") != "restore":
    print(f"camera_limit: {args.model} has no restoration stage (objective.prior != 'restore')",
          file=sys.stderr)
    return 2
  model, _ = build_model(config)
  h, w = config.data.image_size
  n = args.num_scenes
  scenes = benchmark.procedural_scenes(n, h, w, seed=args.scene_seed)
  spec = benchmark.BenchmarkSpec()
  gt = benchmark.ground_truth(scenes, range(n), spec)
  photo, _, _, sharp_true = benchmark.task_request(gt, "deblur")
  _, focus_b, blur_b, refocus_true = benchmark.task_request(gt, "refocus")
  disparity = jnp.asarray(gt.disparity)
  d_true, k_true = gt.cameras.disparity_a, gt.cameras.blur
  max_radius = 2.0 * float(k_true.max()) + 1.0

  psnr = lambda x, t: np.asarray(jnp.minimum(metrics.psnr(jnp.asarray(x, jnp.float32), t),
                                             benchmark.PSNR_CAP))
  deblur_input = psnr(photo, sharp_true)
  invert = jax.jit(functools.partial(invert_render, iterations=args.iterations,
                                     tv_weight=args.tv_weight, gamma=spec.gamma,
                                     max_radius=max_radius))
  render = jax.jit(lambda x, d, k: optics.render(x, disparity, d, k, gamma=spec.gamma,
                                                 max_radius=max_radius))
  d_b = jnp.asarray(gt.cameras.disparity_b)

  results = {"scenes": n, "scene_seed": args.scene_seed, "iterations": args.iterations,
             "tv_weight": args.tv_weight, "deblur": {}, "refocus": {}}
  start = time.perf_counter()
  sharp, _, blur_map = model.apply({"params": params}, jnp.asarray(photo), disparity,
                                   jnp.ones((n,), bool), method="restore")
  sharp = jnp.clip(sharp, 0.0, 1.0)
  results["deblur"]["restoration stage"] = _summary(psnr(sharp, sharp_true) - deblur_input)
  d_est, k_est = (np.asarray(a) for a in fit_defocus(blur_map, disparity))
  results["estimated camera"] = {
      "focus_disparity_abs_error_median": float(np.median(np.abs(d_est - d_true))),
      "blur_ratio_median": float(np.median(k_est / k_true)),
      "blur_ratio_quartiles": [float(np.percentile(k_est / k_true, q)) for q in (25, 75)],
      "share_blur_within_10pct": float(np.mean(np.abs(k_est / k_true - 1) < 0.1)),
      "share_focus_within_0.03": float(np.mean(np.abs(d_est - d_true) < 0.03))}

  cameras = {"true camera": (d_true, k_true)}
  for scale in (0.8, 0.9, 1.1, 1.2):
    cameras[f"blur x{scale}"] = (d_true, k_true * scale)
  for shift in (-0.1, -0.03, 0.03, 0.1):
    cameras[f"focus disparity {shift:+}"] = (np.clip(d_true + shift, 0.0, 1.0), k_true)
  cameras["model's estimate"] = (d_est, k_est)
  refocus_renderer = psnr(render(jnp.asarray(photo), d_b, jnp.asarray(blur_b)), refocus_true)
  for name, (d, k) in cameras.items():
    restored = invert(jnp.asarray(photo), disparity, jnp.asarray(d, jnp.float32),
                      jnp.asarray(k, jnp.float32))
    results["deblur"][f"inversion, {name}"] = _summary(psnr(restored, sharp_true) - deblur_input)
    refocused = render(restored, d_b, jnp.asarray(blur_b))
    results["refocus"][f"inversion, {name}, over the renderer"] = _summary(
        psnr(refocused, refocus_true) - refocus_renderer)
  results["seconds"] = round(time.perf_counter() - start, 1)

  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(results, f, indent=1)
  for task in ("deblur", "refocus"):
    for name, s in results[task].items():
      print(f"{task:8s} {name:55s} {s['mean_gain_db']:+7.3f} ± {s['stderr_db']:.3f} dB "
            f"(better {s['share_better']:.0%})")
  print("estimated camera:", results["estimated camera"])
  return 0


if __name__ == "__main__":
  sys.exit(main())
