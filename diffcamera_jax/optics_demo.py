"""Renders a focal sweep and a few aperture shapes of a procedural scene to PNGs.

    python -m diffcamera_jax.optics_demo --out DIR [--size 256] [--blur 12] [--seed 0]

Writes ``DIR/input.png``, ``DIR/disparity.png``, ``DIR/sweep_<i>.png`` (focus from far to near),
``DIR/aperture_<name>.png`` and ``DIR/multifocus.png``, so the renderer can be judged by eye.
"""
from __future__ import annotations

import os
from typing import Sequence

import jax
import numpy as np
from PIL import Image

from data_pipeline import procedural
from diffcamera_jax import optics
from diffcamera_jax.cli import ArgumentParser, fail

APERTURES = {"disk": optics.Aperture(0, 0.0), "hexagon": optics.Aperture(6, 0.2),
             "pentagon": optics.Aperture(5, 0.0), "triangle": optics.Aperture(3, 0.5)}


def _save(path: str, array: np.ndarray) -> None:
  Image.fromarray(np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)).save(path)


def write_demo(out_dir: str, *, size: int = 256, blur: float = 12.0, seed: int = 0,
               sweep: int = 5) -> list[str]:
  """Renders the demo images into ``out_dir``; returns the paths written."""
  if size < 16:
    raise ValueError(f"size must be >= 16, got {size}")
  if blur < 0:
    raise ValueError(f"blur must be >= 0, got {blur}")
  if sweep < 1:
    raise ValueError(f"sweep must be >= 1, got {sweep}")
  os.makedirs(out_dir, exist_ok=True)
  image, disparity = procedural.make_scene(seed, 0, size, size)
  max_radius = max(float(blur), 1.0)
  optics.validate(image, disparity, blur=blur, max_radius=max_radius)
  render = jax.jit(lambda f, a: optics.render(image, disparity, f, blur, aperture=a,
                                              max_radius=max_radius))
  written = []

  def save(name: str, array) -> None:
    path = os.path.join(out_dir, name)
    _save(path, np.asarray(array))
    written.append(path)

  save("input.png", image)
  save("disparity.png", np.repeat(disparity[..., None], 3, axis=-1))
  lo, hi = float(disparity.min()), float(disparity.max())
  for i, focus in enumerate(np.linspace(lo, hi, sweep)):
    save(f"sweep_{i}.png", render(np.float32(focus), APERTURES["disk"]))
  far_focus = np.float32(hi)  # focus on the nearest object: the background shows the bokeh
  for name, aperture in APERTURES.items():
    save(f"aperture_{name}.png", render(far_focus, aperture))
  both = optics.render_multifocus(image, disparity, lo, hi, blur, max_radius=max_radius)
  save("multifocus.png", both)
  return written


def main(argv: Sequence[str] | None = None) -> int:
  parser = ArgumentParser(prog="python -m diffcamera_jax.optics_demo",
                          description="Render a focal sweep and aperture shapes.")
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--size", type=int, default=256)
  parser.add_argument("--blur", type=float, default=12.0, help="blur level K in pixels")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--sweep", type=int, default=5, help="number of focal planes")
  args = parser.parse_args(argv)
  if args.size < 16 or args.sweep < 1 or not args.blur >= 0:
    fail("optics_demo", "--size must be >= 16, --sweep >= 1 and --blur >= 0")
  for path in write_demo(args.out, size=args.size, blur=args.blur, seed=args.seed, sweep=args.sweep):
    print(path)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
