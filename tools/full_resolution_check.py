"""Full-resolution refocusing of a real photo with its real disparity: is detail kept in focus?

    python tools/full_resolution_check.py --model models/default --out docs/results/full_resolution.json

The photo is scikit-image's stereo motorcycle (left view, with the disparity map of the stereo
pair), upscaled 3x to 2223x1500 (3.3 MP) as the photos users bring are large; a reserved photo,
never used to train or tune. The focus is on the motorcycle. Two requests, with the true
disparity and without depth:
- K = 0 (all in focus): should leave the photo unchanged where it is in focus;
- bokeh K = 30 px: the in-focus region should keep its detail and the background should blur as
  the classical renderer (true disparity, full resolution) blurs it.
Regions: "in focus" = pixels whose CoC under the bokeh request is below 1 px (with the true
disparity), "background" = CoC at least 6 px. Reported per region: Laplacian energy kept
(sum of squared Laplacian of the luminance, output / reference) and PSNR against the reference:
the input photo, and for the bokeh request also the full-resolution render. (The upscaled photo
is smooth at the pixel level, so the renderer's sub-quantisation compositing noise in the
in-focus layer, ~53 dB, already multiplies its Laplacian energy; against the render the ratio
is the one to read.) Each setting is run
with the frame composed at full resolution (`Refocuser(full_resolution=True)`, the default) and
with the working frame upscaled (`full_resolution=False`), at the model's trained resolution and
at `--max-side` 512.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

FOCUS = (0.5, 0.55)
BOKEH = 30.0
SCALE = 3


def load_scene() -> tuple[np.ndarray, np.ndarray]:
  """The motorcycle photo and its disparity in [0, 1] (1 = near), upscaled `SCALE`x."""
  import jax
  from skimage import data
  left, _, disparity = data.stereo_motorcycle()
  valid = np.isfinite(disparity)
  disparity = np.where(valid, disparity, np.min(disparity[valid]))  # unmatched pixels: far
  disparity = (disparity - disparity.min()) / (disparity.max() - disparity.min())
  h, w = disparity.shape
  size = (SCALE * h, SCALE * w)
  photo = np.clip(np.asarray(jax.image.resize(left.astype(np.float32) / 255.0, size + (3,),
                                              "cubic")), 0, 1)
  disparity = np.clip(np.asarray(jax.image.resize(disparity.astype(np.float32), size,
                                                  "linear")), 0, 1)
  return photo.astype(np.float32), disparity.astype(np.float32)


def laplacian(image: np.ndarray) -> np.ndarray:
  """The luma Laplacian `[H, W]` (`metrics.laplacian`, zero on the border)."""
  from diffcamera_jax.evaluation import metrics
  return np.pad(np.asarray(metrics.laplacian(image)), 1)


def region_scores(out: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> dict:
  energy = float((laplacian(out)[mask] ** 2).sum() / (laplacian(reference)[mask] ** 2).sum())
  mse = float(((out - reference)[mask] ** 2).mean())
  return {"laplacian_energy_kept": energy, "psnr": float(-10 * np.log10(mse + 1e-12))}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--model", required=True)
  p.add_argument("--out", required=True, help="JSON file to write")
  p.add_argument("--max-sides", default="trained,512",
                 help="working sizes to try: 'trained' (the model's) and/or numbers")
  args = p.parse_args(argv)
  import jax.numpy as jnp
  from diffcamera_jax import optics
  from diffcamera_jax.inference.refocuser import Refocuser

  photo, disparity = load_scene()
  d_f = float(optics.focus_disparity(disparity, jnp.asarray(FOCUS)))
  coc = BOKEH * np.abs(disparity - d_f)
  in_focus, background = coc < 1.0, coc >= 6.0
  render = np.asarray(optics.render(photo, disparity, d_f, BOKEH, max_radius=BOKEH))
  results = {"photo": "skimage stereo_motorcycle left, cubic 3x", "size": list(photo.shape[:2]),
             "focus": list(FOCUS), "bokeh_blur": BOKEH,
             "in_focus_fraction": float(in_focus.mean()),
             "background_fraction": float(background.mean()), "runs": []}
  for side in args.max_sides.split(","):
    max_side = None if side == "trained" else int(side)
    for full in (True, False):
      r = Refocuser.load(args.model, max_side=max_side, full_resolution=full)
      for depth in (True, False):
        disp = disparity if depth else None
        plan = r.plan_for(photo.shape[:2], 1, depth=depth)
        start = time.perf_counter()
        sharp = r.refocus(photo, FOCUS, 0.0, disparity=disp)[0]
        bokeh = r.refocus(photo, FOCUS, BOKEH, disparity=disp)[0]
        seconds = time.perf_counter() - start
        run = {"max_side": r.max_side, "full_resolution": full, "depth": depth,
               "plan": plan.describe(), "seconds_two_frames": seconds,
               "k0_in_focus": region_scores(sharp, photo, in_focus),
               "k0_frame": region_scores(sharp, photo, np.ones_like(in_focus)),
               "bokeh_in_focus": region_scores(bokeh, photo, in_focus),
               "bokeh_in_focus_vs_renderer": region_scores(bokeh, render, in_focus),
               "bokeh_background_vs_renderer": region_scores(bokeh, render, background)}
        results["runs"].append(run)
        print(json.dumps(run), flush=True)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(results, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
