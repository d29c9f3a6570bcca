"""Full-resolution frames from a model that works at a lower resolution, within a memory budget.

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

The full-resolution render runs in horizontal strips when one frame's compiled plan exceeds the
memory budget (`render_in_strips`). Strips overlap by the largest blur radius and start on the
renderer's coarsest pyramid grid; with layered depth they match the whole-frame render exactly,
with continuous depth each strip takes its own mean radius per CoC bin (the renderer's binning
tolerance, docs/optics.md).
"""
from __future__ import annotations

import functools
import math
import os
import re
import jax
import jax.numpy as jnp
import numpy as np

from diffcamera_jax import optics
from diffcamera_jax.evaluation import metrics
from diffcamera_jax.optics import layers as layers_lib

_UNITS = {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}


def parse_bytes(text: str) -> int:
  """`"8G"`, `"512M"`, `"1.5G"` or a plain byte count -> bytes (binary units); ValueError else."""
  match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
  if not match:
    raise ValueError(f"expected a size like 8G, 512M or 1.5G, got {text!r}")
  value = float(match.group(1)) * _UNITS[match.group(2).upper()]
  if value < 2 ** 20:
    raise ValueError(f"a memory budget below 1M cannot hold a frame, got {text!r}")
  return int(value)


def default_memory_budget() -> int:
  """Bytes the inference programs may plan for: 80 % of the first accelerator's memory limit, or
  half of the host memory available now on a CPU backend."""
  device = jax.devices()[0]
  if device.platform != "cpu":
    stats = device.memory_stats() or {}
    if stats.get("bytes_limit"):
      return int(0.8 * stats["bytes_limit"])
  return host_budget()


# Host bytes a call holds per photo pixel (the photo, its disparity, the deblurred photo, the
# band-split copies and the full-resolution render's buffers, which on a CPU live in host memory
# too) and per frame and pixel (the frame, its render, the composition's temporaries). Measured
# peak RSS growth (benchmarks/host_memory.py, 1.5 and 6 megapixels, 1 and 4 frames, with and
# without the optics pre-pass) stays below these plus a fixed part (compiling the programs for
# the photo's size).
HOST_BYTES_FIXED = 256 * 2 ** 20
HOST_BYTES_PER_PIXEL = 80
HOST_BYTES_PER_FRAME_PIXEL = 84


def host_bytes(image_hw: tuple[int, int], frames: int) -> int:
  """Host memory a call on one photo of `image_hw` with `frames` cameras plans for."""
  pixels = int(image_hw[0]) * int(image_hw[1])
  return HOST_BYTES_FIXED + pixels * (HOST_BYTES_PER_PIXEL + frames * HOST_BYTES_PER_FRAME_PIXEL)


def host_budget() -> int:
  """Host memory the programs may plan for: half of what is available now."""
  try:
    return int(0.5 * os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
  except (ValueError, OSError):
    return 4 * 2 ** 30


def compiled_bytes(compiled) -> int:
  """Peak bytes of a compiled XLA program: arguments + temporaries + outputs (less aliasing)."""
  m = compiled.memory_analysis()
  if m is None:  # a backend without the analysis: assume it fits
    return 0
  return int(m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes
             - m.alias_size_in_bytes)


def working_size(height: int, width: int, max_side: int) -> tuple[int, int]:
  """The photo's size scaled so that its longer side is at most `max_side` (never enlarged)."""
  scale = min(1.0, max_side / max(height, width))
  return max(1, round(height * scale)), max(1, round(width * scale))


@functools.lru_cache(maxsize=64)
def _resizer(shape: tuple[int, ...], method: str):
  return jax.jit(lambda x: jax.image.resize(x, shape, method, antialias=method != "nearest"))


def downscale(x: np.ndarray, hw: tuple[int, int], method: str = "linear") -> np.ndarray:
  """`[N, H, W, ...]` -> `[N, h, w, ...]`, antialiased (the model's input; `nearest` for depth)."""
  shape = (x.shape[0], *hw, *x.shape[3:])
  if tuple(x.shape) == shape:
    return np.asarray(x)
  return np.asarray(_resizer(shape, method)(jnp.asarray(x, jnp.float32)))


def upscale(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  """`[N, h, w, ...]` -> `[N, H, W, ...]` by cubic interpolation."""
  shape = (x.shape[0], *hw, *x.shape[3:])
  if tuple(x.shape) == shape:
    return np.asarray(x)
  return np.asarray(_resizer(shape, "cubic")(jnp.asarray(x, jnp.float32)))


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
  lap = jnp.pad(metrics.laplacian(jnp.asarray(x, jnp.float32)), 1, mode="edge")
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
  that each strip's compiled program fits `budget` bytes. Strips overlap by the blur radius and
  start on the renderer's coarsest pyramid grid (the module docstring says how they compare
  with the whole-frame render)."""
  height, width = image.shape[:2]
  run = lambda a, b: np.asarray(_compiled_render((b - a, width), float(gamma), float(max_radius))(
      jnp.asarray(image[a:b], jnp.float32), jnp.asarray(disparity[a:b], jnp.float32),
      jnp.float32(focus_disparity), jnp.float32(blur), jnp.int32(blades), jnp.float32(rotation)))
  need = compiled_bytes(_compiled_render((height, width), float(gamma), float(max_radius)))
  if need <= budget:
    return run(0, height)
  levels = layers_lib.plan(max_radius)
  grain = levels[-1].factor if levels else 1
  halo = grain * math.ceil((max_radius + 8) / grain)
  rows = max(grain, grain * int(height * budget / need / grain) - 2 * halo)
  out = np.empty(image.shape, np.float32)
  for start in range(0, height, rows):
    stop = min(height, start + rows)
    a, b = max(0, start - halo), min(height, stop + halo)
    out[start:stop] = run(a, b)[start - a: stop - a]
  return out


__all__ = ["compiled_bytes", "compose", "compose_without_depth", "default_memory_budget", "downscale", "parse_bytes",
           "radius_bucket", "render_in_strips", "upscale", "working_size"]
