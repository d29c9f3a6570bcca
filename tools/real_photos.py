"""Transfer to real photos without depth: blur sweeps and light-defocus removal on held-out photos.

    python tools/real_photos.py --model models/default --out docs/results/real_photos

Uses the photos scikit-image ships (a dev-only dependency: `pip install scikit-image`); they are
reserved for this evaluation and never used to train or tune. For each photo, with no depth map:
- blur sweep: `Refocuser.refocus(photo, focus, blur=[0, 8, 16, 24])` (K in pixels at the photo's
  size); reports the log Laplacian variance of each frame (it should fall as K rises) and the
  sharpness of a window around the focus point relative to the whole frame (it should stay
  sharper than the rest);
- light defocus: the photo blurred by a 3 px disk (the classical renderer at constant depth) and
  asked for K = 0; reports PSNR against the original and the Laplacian variance, before and after.
With `--other-blurs`, also the no-depth optics deblurring alone (`physics_deblur.deblur_uniform`,
the step before the model) on the photo under other blurs than the renderer's 3 px disk: disks
of 2 and 4.5 px, a 3 px disk applied to the encoded values (as software blurs), the 3 px disk
with noise (sigma 0.004) saved at 8 bits, a Gaussian (sigma 1.5 px), and the sharp photo itself.
Writes `OUT/real_photos.json` and a figure `OUT/real_photos.png`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

PHOTOS = {  # name: focus point (x, y) on the main subject
    "astronaut": (0.45, 0.3),
    "coffee": (0.45, 0.45),
    "chelsea": (0.35, 0.4),
    "rocket": (0.55, 0.4),
    "motorcycle": (0.5, 0.55),
}
SWEEP = (0.0, 8.0, 16.0, 24.0)
DEFOCUS_RADIUS = 3.0


def load_photo(name: str) -> np.ndarray:
  """A scikit-image photo as float32 RGB in [0, 1]."""
  from skimage import data
  image = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
  return np.asarray(image[..., :3], np.float32) / 255.0


def log_lv(image: np.ndarray) -> float:
  """log Laplacian variance of the luminance: a sharpness measure."""
  luma = image.mean(-1)
  lap = (4 * luma[1:-1, 1:-1] - luma[:-2, 1:-1] - luma[2:, 1:-1] - luma[1:-1, :-2]
         - luma[1:-1, 2:])
  return float(np.log(lap.var() + 1e-10))


def focus_window(image: np.ndarray, focus: tuple[float, float], frac: float = 0.15) -> np.ndarray:
  h, w = image.shape[:2]
  half = int(frac * max(h, w) / 2)
  cx, cy = int(focus[0] * w), int(focus[1] * h)
  return image[max(0, cy - half):cy + half, max(0, cx - half):cx + half]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
  return float(-10 * np.log10(np.mean((a - b) ** 2) + 1e-12))


def defocus(image: np.ndarray, radius: float, gamma: float = 2.2) -> np.ndarray:
  """The photo blurred by a disk of `radius` pixels (constant depth): in linear light, or on the
  encoded values with `gamma=1` (as software blurs a saved image)."""
  from diffcamera_jax import optics
  flat = np.zeros(image.shape[:2], np.float32)
  return np.asarray(optics.render(image, flat, 1.0, radius, gamma=gamma, max_radius=radius + 1))


def _gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
  import scipy.ndimage
  return np.stack([scipy.ndimage.gaussian_filter(image[..., c], sigma, mode="reflect")
                   for c in range(3)], -1).astype(np.float32)


def _noisy_8bit(image: np.ndarray, sigma: float = 0.004) -> np.ndarray:
  noisy = image + np.random.default_rng(0).normal(0.0, sigma, image.shape)
  return (np.round(np.clip(noisy, 0, 1) * 255) / 255).astype(np.float32)


OTHER_BLURS = {
    "disk_2px": lambda p: defocus(p, 2.0),
    "disk_4.5px": lambda p: defocus(p, 4.5),
    "disk_3px_encoded": lambda p: defocus(p, 3.0, gamma=1.0),
    "disk_3px_noise_8bit": lambda p: _noisy_8bit(defocus(p, 3.0)),
    "gaussian_1.5px": lambda p: _gaussian(p, 1.5),
    "sharp": lambda p: p,
}


def other_blurs(names) -> dict:
  """`physics_deblur.deblur_uniform` alone on each photo under `OTHER_BLURS`."""
  from diffcamera_jax.inference.physics_deblur import UniformSearch, deblur_uniform
  results = {}
  for name in names:
    photo = load_photo(name)
    for blur, make in OTHER_BLURS.items():
      blurred = make(photo)
      out, info = deblur_uniform(blurred[None], UniformSearch())
      results[f"{name}/{blur}"] = {
          "radius": float(info["blur"][0]), "gain": float(info["gain"][0]),
          "gamma": float(info["gamma"][0]), "deblurred": bool(info["deblurred"][0]),
          "psnr_input": psnr(blurred, photo) if blur != "sharp" else None,
          "psnr_output": psnr(out[0], photo) if blur != "sharp" else None,
          "max_change": float(np.abs(out[0] - blurred).max()),
          "log_lv_input": log_lv(blurred), "log_lv_output": log_lv(out[0])}
  return results


def evaluate(refocuser, names) -> tuple[dict, dict]:
  results, frames = {}, {}
  for name in names:
    photo, focus = load_photo(name), PHOTOS[name]
    sweep = refocuser.refocus(photo, focus, list(SWEEP))
    blurred = defocus(photo, DEFOCUS_RADIUS)
    restored = refocuser.refocus(blurred, focus, 0.0)[0]
    results[name] = {
        "size": list(photo.shape[:2]),
        "focus": list(focus),
        "sweep_blur": list(SWEEP),
        "sweep_log_lv": [log_lv(f) for f in sweep],
        "sweep_log_lv_input": log_lv(photo),
        # Focus window sharpness minus whole-frame sharpness (log ratio): > input's means the
        # focus point is kept sharper than the rest.
        "sweep_focus_minus_frame": [log_lv(focus_window(f, focus)) - log_lv(f) for f in sweep],
        "input_focus_minus_frame": log_lv(focus_window(photo, focus)) - log_lv(photo),
        "defocus_radius": DEFOCUS_RADIUS,
        "deblur_psnr_input": psnr(blurred, photo),
        "deblur_psnr_output": psnr(restored, photo),
        "deblur_log_lv_input": log_lv(blurred),
        "deblur_log_lv_output": log_lv(restored),
        "deblur_log_lv_original": log_lv(photo),
    }
    frames[name] = (photo, sweep, blurred, restored)
  return results, frames


def write_figure(frames: dict, path: str, height: int = 160) -> None:
  """One row per photo: input, the sweep frames, the 3 px defocused input and its K = 0 output."""
  import jax
  from PIL import Image
  rows = []
  for photo, sweep, blurred, restored in frames.values():
    tiles = [photo, *sweep[1:], blurred, restored]
    h, w = photo.shape[:2]
    size = (height, max(1, round(w * height / h)))
    tiles = [np.asarray(jax.image.resize(t, size + (3,), "linear", antialias=True)) for t in tiles]
    gap = np.ones((height, 4, 3), np.float32)
    rows.append(np.concatenate(sum([[t, gap] for t in tiles], [])[:-1], axis=1))
  width = max(r.shape[1] for r in rows)
  rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=1.0) for r in rows]
  sheet = (np.clip(np.concatenate(rows), 0, 1) * 255).round().astype(np.uint8)
  Image.fromarray(sheet).save(path)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--model", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--photos", default=",".join(PHOTOS))
  p.add_argument("--max-side", type=int, default=512)
  p.add_argument("--other-blurs", action="store_true",
                 help="also score the no-depth optics deblurring under other blurs")
  args = p.parse_args(argv)
  from diffcamera_jax.inference.refocuser import Refocuser
  names = [n for n in args.photos.split(",") if n]
  unknown = [n for n in names if n not in PHOTOS]
  if unknown:
    print(f"error: unknown photos {unknown}; choose from {sorted(PHOTOS)}", file=sys.stderr)
    return 2
  refocuser = Refocuser.load(args.model, max_side=args.max_side)
  results, frames = evaluate(refocuser, names)
  if args.other_blurs:
    results["other_blurs"] = other_blurs(names)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "real_photos.json"), "w") as f:
    json.dump(results, f, indent=1)
  write_figure(frames, os.path.join(args.out, "real_photos.png"))
  for name, r in results.get("other_blurs", {}).items():
    print(f"{name}: deblurred {r['deblurred']} (radius {r['radius']:.2f}, gain {r['gain']:.2f}, "
          f"gamma {r['gamma']:g}); PSNR {r['psnr_input']} -> {r['psnr_output']}")
  for name, r in results.items():
    if name == "other_blurs":
      continue
    print(f"{name}: sweep log LV {np.round(r['sweep_log_lv'], 2).tolist()} (input "
          f"{r['sweep_log_lv_input']:.2f}); focus-frame {np.round(r['sweep_focus_minus_frame'], 2).tolist()}"
          f" (input {r['input_focus_minus_frame']:.2f}); deblur PSNR {r['deblur_psnr_input']:.2f}"
          f" -> {r['deblur_psnr_output']:.2f}, log LV {r['deblur_log_lv_input']:.2f} -> "
          f"{r['deblur_log_lv_output']:.2f} (original {r['deblur_log_lv_original']:.2f})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
