"""Frames at the photo's own size from a model that works at a lower resolution.

The model refocuses a downscaled copy of the photo (its working resolution). The frame returned
at the photo's own size is composed by a band split:

    out = up(O_w) + R - up(down(R))

`O_w` is the model's frame at the working resolution; `R` is the classical renderer's frame at
the photo's resolution (the photo, its disparity — given, or the model's estimate upsampled —
and the requested camera); `down` is the resize that made the model's input and `up` a cubic
resize back. The model supplies everything the working resolution can represent (deblurred or
generated content, and the blur at that scale); the renderer supplies the finer band. Where the
request keeps the photo in focus that band is the photo's own detail (R is the photo there);
where the request adds blur it is the photo's detail blurred at full resolution, and it vanishes
once the blur is large. Where the model leaves its input unchanged (K = 0 on a sharp photo) the
output is the photo itself; detail the model generates when deblurring is as fine as the working
resolution allows, with the photo's own finer band added on top.

Without any disparity (`compose_without_depth`) the photo's finer band is added back scaled by
the share of local detail the model's frame kept.

The full-resolution render runs in horizontal strips when one frame's compiled plan exceeds the
memory budget (`render_in_strips`). Strips overlap by the largest blur radius; with layered
depth they match the whole-frame render exactly,
with continuous depth each strip takes its own mean radius per CoC bin (the renderer's binning
tolerance, docs/optics.md).
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from diffcamera_jax import optics
from diffcamera_jax.inference.memory import compiled_bytes
from diffcamera_jax.inference.resize import downscale, upscale
from diffcamera_jax.optics.aperture import support_size
from diffcamera_jax.optics.sharpness import laplacian


def compose(frame_w: np.ndarray, render: np.ndarray) -> np.ndarray:
  """`up(frame_w) + render - up(down(render))`: the working-resolution frame `[h, w, 3]` with
  the finer band of the full-resolution render `[H, W, 3]` (see the module docstring)."""
  hw, work_hw = render.shape[:2], frame_w.shape[:2]
  if tuple(hw) == tuple(work_hw):
    return np.asarray(frame_w)
  fine = render[None] - upscale(downscale(render[None], work_hw), hw)
  return upscale(np.asarray(frame_w)[None], hw)[0] + fine[0]


def _local_energy(x: np.ndarray, size: int = 5) -> np.ndarray:
  """Box-filtered squared Laplacian of the luminance `[h, w]`: local fine detail."""
  lap = jnp.pad(laplacian(jnp.asarray(x, jnp.float32)), 1, mode="edge")
  box = jnp.ones((size, size), jnp.float32) / size ** 2
  return np.asarray(jax.scipy.signal.convolve2d(lap ** 2, box, mode="same"))


def compose_without_depth(frame_w: np.ndarray, photo_w: np.ndarray,
                          photo: np.ndarray) -> np.ndarray:
  """`up(frame_w) + g * (photo - up(down(photo)))` for a model with no disparity to render with:
  the photo's finer band scaled by `g` in [0, 1], the share of the working photo's local detail
  that the model's frame kept (its square-rooted local Laplacian energy ratio, upscaled)."""
  hw, work_hw = photo.shape[:2], frame_w.shape[:2]
  if tuple(hw) == tuple(work_hw):
    return np.asarray(frame_w)
  if min(work_hw) < 3:  # too small for a Laplacian: keep the band as it is
    kept = np.ones(work_hw, np.float32)
  else:
    kept = np.sqrt(_local_energy(frame_w) / (_local_energy(photo_w) + 1e-8))
  gain = upscale(np.clip(kept, 0.0, 1.0)[None, ..., None], hw)[0]
  fine = photo[None] - upscale(downscale(photo[None], work_hw), hw)
  return upscale(np.asarray(frame_w)[None], hw)[0] + np.clip(gain, 0.0, 1.0) * fine[0]


def radius_bucket(blur: float) -> float:
  """The renderer's static radius bound for blur K: K rounded up to 1, 2, 4, ... (so the calls
  of one photo share compiled programs)."""
  return float(2 ** max(0, math.ceil(math.log2(max(blur, 1.0)))))


@functools.lru_cache(maxsize=32)
def _compiled_render(shape: tuple[int, int], gamma: float, max_radius: float):
  """`optics.render` of one `[H, W, 3]` frame, compiled once per shape and radius bound."""
  def render(image, disparity, focus_disparity, blur, blades, rotation):
    return optics.render(image[None], disparity[None], focus_disparity[None], blur[None],
                         aperture=optics.Aperture(blades[None], rotation[None]), gamma=gamma,
                         max_radius=max_radius)[0]
  f32, i32 = jax.ShapeDtypeStruct((), jnp.float32), jax.ShapeDtypeStruct((), jnp.int32)
  return jax.jit(render).lower(jax.ShapeDtypeStruct((*shape, 3), jnp.float32),
                               jax.ShapeDtypeStruct(shape, jnp.float32), f32, f32, i32,
                               f32).compile()


def render_in_strips(image: np.ndarray, disparity: np.ndarray, focus_disparity: float,
                     blur: float, *, blades: int = 0, rotation: float = 0.0, gamma: float = 2.2,
                     max_radius: float, budget: int) -> np.ndarray:
  """`optics.render` of one frame `[H, W, 3]` at the photo's size, in horizontal strips sized so
  that each strip's compiled program fits `budget` bytes. Strips overlap by the blur radius (the
  module docstring says how they compare with the whole-frame render)."""
  height, width = image.shape[:2]
  run = lambda a, b: np.asarray(_compiled_render((b - a, width), float(gamma), float(max_radius))(
      jnp.asarray(image[a:b], jnp.float32), jnp.asarray(disparity[a:b], jnp.float32),
      jnp.float32(focus_disparity), jnp.float32(blur), jnp.int32(blades), jnp.float32(rotation)))
  need = compiled_bytes(_compiled_render((height, width), float(gamma), float(max_radius)))
  if need <= budget:
    return run(0, height)
  halo = support_size(max_radius) // 2 + 1  # the farthest any light travels, and a pixel more
  rows = max(1, int(height * budget / need) - 2 * halo)
  out = np.empty(image.shape, np.float32)
  for start in range(0, height, rows):
    stop = min(height, start + rows)
    a, b = max(0, start - halo), min(height, stop + halo)
    out[start:stop] = run(a, b)[start - a: stop - a]
  return out


def compose_frames(photos: np.ndarray, disparity: np.ndarray | None, frames_w: np.ndarray,
                   photos_w: np.ndarray, focus: np.ndarray, blur: np.ndarray, *, blades: int,
                   rotation: float, gamma: float, budget: int,
                   on_frame: Callable[[], None] = lambda: None) -> np.ndarray:
  """Frames `[N, H, W, 3]` at the photo's size, clipped to [0, 1]: `compose` of each working
  frame `frames_w` `[N, h, w, 3]` with the full-resolution render of its camera (focus `[N, 2]`,
  blur `[N]` in pixels at the photo's size), or `compose_without_depth` when `disparity` is
  None. `photos` `[1 or N, H, W, 3]`, `disparity` like them, `photos_w` the working copies."""
  n = len(frames_w)
  image_hw = photos.shape[1:3]
  out = np.empty((n, *image_hw, 3), np.float32)
  max_radius = radius_bucket(float(blur.max()))
  pick = lambda a, i: a[min(i, len(a) - 1)]
  for i in range(n):
    if disparity is None:
      frame = compose_without_depth(frames_w[i], pick(photos_w, i), pick(photos, i))
    else:
      disp = np.asarray(pick(disparity, i), np.float32)
      d_f = float(optics.focus_disparity(disp, jnp.asarray(focus[i])))
      render = render_in_strips(pick(photos, i), disp, d_f, float(blur[i]), blades=int(blades),
                                rotation=float(rotation), gamma=gamma, max_radius=max_radius,
                                budget=budget)
      frame = compose(frames_w[i], render)
    out[i] = np.clip(frame, 0.0, 1.0)
    on_frame()
  return out


__all__ = ["compose", "compose_frames", "compose_without_depth", "radius_bucket",
           "render_in_strips"]
