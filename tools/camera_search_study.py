"""Whether the optics pre-pass can search a photo's camera on a smaller copy of it.

    python tools/camera_search_study.py --size 256 --sides 64,128,256 --out OUT/search_256.json

`physics_deblur.deblur_with_depth` searches the camera (focus disparity, blur) that explains a
photo on a copy of a given size, then inverts the renderer at the photo's size with that camera
scaled to it. The search costs in proportion to the pixels and, through the renderer's layers, the
blurs searched, so a smaller copy would make it cheap if it found the same cameras. On validation
scenes (`--scene-seed`, default 20 000) at `--size`, with
the true disparity, this scores each search side on
- the deblur task's photos (the benchmark's cameras): PSNR gain over the photo of the pre-pass
  output against the sharp image, the share deblurred, and the found camera's errors (focus
  disparity, blur ratio), beside the inversion with the true camera (the ceiling);
- sharp photos (`--num-sharp` of the same scenes): the share wrongly deblurred and the PSNR lost;
- time: the first batch (compiles included) and the median warm seconds per photo.
Paired differences against the largest side come with their standard errors.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def _stats(x: np.ndarray) -> dict:
  from diffcamera_jax.evaluation.result_summary import standard_error
  x = np.asarray(x, np.float64)
  return {"mean": float(x.mean()), "stderr": standard_error(x)}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=256, help="the working frame's side")
  parser.add_argument("--sides", default="64,128,256", help="search sides to compare")
  parser.add_argument("--num-scenes", type=int, default=12)
  parser.add_argument("--num-sharp", type=int, default=None,
                      help="sharp photos to check (default: half the scenes)")
  parser.add_argument("--scene-seed", type=int, default=20_000)
  parser.add_argument("--batch", type=int, default=2, help="photos per search call")
  parser.add_argument("--out", required=True, help="JSON file to write")
  args = parser.parse_args(argv)
  sides = sorted({int(s) for s in args.sides.split(",")})
  if sides[0] < 8 or sides[-1] > args.size:
    print(f"camera_search_study: --sides must lie in [8, --size {args.size}], got {args.sides}",
          file=sys.stderr)
    return 2

  import jax.numpy as jnp

  from diffcamera_jax.configs import default as default_config
  from diffcamera_jax.evaluation import benchmark, metrics
  from diffcamera_jax.inference import physics_deblur

  n, size = args.num_scenes, args.size
  num_sharp = n // 2 if args.num_sharp is None else args.num_sharp
  scenes = benchmark.procedural_scenes(n, size, size, seed=args.scene_seed)
  spec = benchmark.BenchmarkSpec()
  gt = benchmark.ground_truth(scenes, range(n), spec)
  photo, _, _, sharp = benchmark.task_request(gt, "deblur")
  photos = np.concatenate([photo, sharp[:num_sharp]]).astype(np.float32)
  disparity = np.concatenate([gt.disparity, gt.disparity[:num_sharp]]).astype(np.float32)
  truth = np.concatenate([sharp, sharp[:num_sharp]]).astype(np.float32)
  d_true, k_true = np.asarray(gt.cameras.disparity_a), np.asarray(gt.cameras.blur)
  psnr = lambda x, t: np.minimum(np.asarray(metrics.psnr(jnp.asarray(x), jnp.asarray(t))),
                                 benchmark.PSNR_CAP)
  base = psnr(photos, truth)
  data = default_config.get_config().data
  options = dict(threshold=0.04, min_gain=0.65)

  results = {"size": size, "scenes": n, "sharp_photos": num_sharp, "scene_seed": args.scene_seed,
             "benchmark_blur_range_px": [spec.pixels(b, size, size) for b in spec.blur_range],
             "sides": {}}
  gains = {}
  deblurrer = physics_deblur.Deblurrer(data, size, **options)
  full = deblurrer.search_for((size, size))
  oracle = np.concatenate([  # the pre-pass's own inversion, given the true camera
      np.asarray(physics_deblur._invert(*(jnp.asarray(a[i:i + args.batch], jnp.float32)
                                          for a in (photo, gt.disparity, d_true, k_true)),
                                        full, float(np.ceil(full.max_blur))))
      for i in range(0, n, args.batch)])
  results["true camera"] = {"deblur_gain_db": _stats(psnr(oracle, sharp) - base[:n])}
  for side in sides:
    search_hw = (side, side)
    search = deblurrer.search_for(search_hw)
    outs, infos, seconds = [], [], []
    for start in range(0, len(photos), args.batch):
      t = time.perf_counter()
      out, info = physics_deblur.deblur_with_depth(photos[start:start + args.batch],
                                                   disparity[start:start + args.batch],
                                                   search_hw, search)
      seconds.append((time.perf_counter() - t) / len(out))
      outs.append(out)
      infos.append(info)
      print(f"side {side}: {start + len(out)}/{len(photos)} photos, {seconds[-1]:.1f} s each",
            flush=True)
    out = np.concatenate(outs)
    info = {k: np.concatenate([i[k] for i in infos]) for k in infos[0]}
    gain = psnr(out, truth) - base
    gains[side] = gain
    blurred = slice(0, n)
    ratio = info["blur"][blurred] / k_true
    results["sides"][str(side)] = {
        "search_hw": list(search_hw), "max_blur_searched_px": search.max_blur,
        "deblur_gain_db": _stats(gain[blurred]),
        "share_deblurred": float(info["deblurred"][blurred].mean()),
        "share_better": float(np.mean(gain[blurred] > 0)),
        "focus_abs_error_median": float(np.median(np.abs(info["focus_disparity"][blurred]
                                                         - d_true))),
        "blur_ratio_median": float(np.median(ratio)),
        "share_blur_within_10pct": float(np.mean(np.abs(ratio - 1) < 0.1)),
        "sharp_share_deblurred": float(info["deblurred"][n:].mean()) if num_sharp else None,
        "sharp_psnr_db": _stats(psnr(out, truth)[n:]) if num_sharp > 1 else None,
        "first_batch_seconds_per_photo": round(seconds[0], 2),
        "warm_seconds_per_photo_median": (round(float(np.median(seconds[1:])), 2)
                                          if len(seconds) > 1 else None)}
  for side in sides[:-1]:
    results["sides"][str(side)]["deblur_gain_minus_largest_side_db"] = _stats(
        gains[side][:n] - gains[sides[-1]][:n])

  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(results, f, indent=1)
  print(json.dumps(results, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
