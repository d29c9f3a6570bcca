"""Procedural all-in-focus scenes with exact disparity: the built-in, download-free dataset.

Two layouts, drawn per scene:
- "ground" (`GROUND_FRACTION` of scenes, `data_pipeline/ground_scene.py`): a ground plane receding
  in perspective under a sky, objects standing on it, with the depth cues of a photograph;
- "layers": a dead-leaves-style stack of textured, occluding shapes at many depths in front of a
  slanted or gently curved background: dense depth edges at every disparity.
Both get small bright highlights that turn into visible bokeh when rendered out of focus. Every
pixel's colour and disparity come from the same surface, so the disparity map is exact (a
per-pixel z-buffer decides occlusion).

Scenes are deterministic in `(seed, index)`, numpy-only (they are generated inside Grain worker
processes) and resolution independent in layout: geometry lives in coordinates scaled by the longer
image side, so one scene drawn at two sizes shows the same objects in the same places.
"""
from __future__ import annotations

import numpy as np

from data_pipeline import ground_scene
from data_pipeline import textures

# The held-out benchmark used by evaluation: scene i is `make_scene(BENCHMARK_SEED, i, H, W)`.
BENCHMARK_SEED = 10_000
BENCHMARK_NUM_SCENES = 150

_BACKGROUND_MAX_DISPARITY = 0.3  # background surfaces stay behind every foreground shape
_FOREGROUND_DISPARITY = (0.3, 1.0)
LAYOUTS = ("ground", "layers")
GROUND_FRACTION = 0.5


def make_scene(seed: int, index: int, height: int, width: int,
               layout: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Returns scene `(seed, index)` as (image [H, W, 3] f32 sRGB in [0, 1], disparity [H, W] f32).

  Disparity is in [0, 1] with 1 = nearest. Training draws `index` = 0, 1, 2, ... under
  `config.data.procedural_seed`; evaluation uses `BENCHMARK_SEED`, so the two never overlap.
  `layout` forces one of `LAYOUTS`; by default each scene draws its own.
  """
  _check_int("seed", seed, minimum=0)
  _check_int("index", index, minimum=0)
  _check_int("height", height, minimum=1)
  _check_int("width", width, minimum=1)
  if layout is not None and layout not in LAYOUTS:
    raise ValueError(f"layout must be one of {LAYOUTS} or None, got {layout!r}")
  rng = _scene_rng(seed, index)
  drawn = _draw_layout(rng)
  scale = float(max(height, width))
  xs = (np.arange(width, dtype=np.float32) + 0.5) / scale  # x to the right
  ys = (np.arange(height, dtype=np.float32) + 0.5) / scale  # y down
  u, v = np.meshgrid(xs, ys)
  if (layout or drawn) == "ground":
    image, disparity = ground_scene.paint_ground_scene(rng, u, v)
  else:
    image, disparity = _layered_scene(rng, u, v)
  np.clip(image, 0.0, 1.0, out=image)
  np.clip(disparity, 0.0, 1.0, out=disparity)
  return image.astype(np.float32), disparity.astype(np.float32)


def scene_layout(seed: int, index: int) -> str:
  """The layout scene `(seed, index)` draws (cheap: no pixels are computed)."""
  return _draw_layout(_scene_rng(seed, index))


def _scene_rng(seed: int, index: int) -> np.random.Generator:
  return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def _draw_layout(rng: np.random.Generator) -> str:
  """The scene generator's first draw: its layout."""
  return "ground" if rng.random() < GROUND_FRACTION else "layers"


def _layered_scene(rng: np.random.Generator, u: np.ndarray,
                   v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Dead-leaves layout: occluding shapes in front of a slanted or curved background."""
  height, width = u.shape
  scale = float(max(height, width))
  background = _background_disparity(rng, u, v)
  background_rng = textures.child(rng)
  # Painted front to back with a z-test, so each pixel's texture is computed once, for the
  # surface that is visible there; the background fills whatever no shape covers.
  image = np.zeros((height, width, 3), np.float32)
  disparity = np.full((height, width), -1.0, np.float32)
  num_shapes = int(rng.integers(8, 25))
  shape_disparities = np.sort(rng.uniform(*_FOREGROUND_DISPARITY, size=num_shapes))[::-1]
  for d in shape_disparities:
    _paint_shape(rng, u, v, float(d), image, disparity)
  uncovered = disparity < 0
  disparity[uncovered] = background[uncovered]
  image[uncovered] = textures.texture(background_rng, u[uncovered], v[uncovered],
                                      frame=(0.5, 0.5, 0.5))
  _paint_highlights(rng, u, v, image, scale)
  return image, disparity


def benchmark_scene(index: int, height: int, width: int,
                    seed: int = BENCHMARK_SEED) -> tuple[np.ndarray, np.ndarray]:
  """Returns held-out benchmark scene `index` (the fixed evaluation set; never used in training)."""
  return make_scene(seed, index, height, width)


# ------------------------------------------------------------------------------------ geometry


def _check_int(name: str, value: int, minimum: int) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"{name} must be an int, got {type(value).__name__}")
  if value < minimum:
    raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _background_disparity(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """A slanted plane or smooth surface with disparity in [0, _BACKGROUND_MAX_DISPARITY]."""
  lo = rng.uniform(0.0, 0.15)
  hi = rng.uniform(lo + 0.05, _BACKGROUND_MAX_DISPARITY)
  angle = rng.uniform(0.0, 2.0 * np.pi)
  ramp = np.cos(angle) * u + np.sin(angle) * v
  if rng.random() < 0.5:  # smooth, gently curved surface
    for _ in range(3):
      freq = rng.uniform(0.5, 2.5)
      phase = rng.uniform(0.0, 2.0 * np.pi, size=2)
      bump = np.sin(2 * np.pi * freq * u + phase[0]) * np.cos(2 * np.pi * freq * v + phase[1])
      ramp = ramp + 0.15 * bump
  ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
  return (lo + (hi - lo) * ramp).astype(np.float32)


def _shape_mask(rng: np.random.Generator, u: np.ndarray, v: np.ndarray,
                cx: float, cy: float, size: float) -> np.ndarray:
  """Boolean mask of one random shape (ellipse, rotated rectangle, convex polygon, blob, bar)."""
  angle = rng.uniform(0.0, np.pi)
  c, s = np.cos(angle), np.sin(angle)
  a = (u - cx) * c + (v - cy) * s
  b = -(u - cx) * s + (v - cy) * c
  kind = rng.integers(5)
  if kind == 0:  # ellipse
    aspect = rng.uniform(0.4, 1.0)
    return (a / size) ** 2 + (b / (size * aspect)) ** 2 <= 1.0
  if kind == 1:  # rotated rectangle
    aspect = rng.uniform(0.3, 1.0)
    return (np.abs(a) <= size) & (np.abs(b) <= size * aspect)
  if kind == 2:  # convex polygon: jittered, evenly spread half-planes (gaps < pi keep it bounded)
    n = int(rng.integers(4, 9))
    normals = (np.arange(n) + rng.uniform(-0.25, 0.25, size=n)) * (2 * np.pi / n)
    mask = np.ones_like(u, dtype=bool)
    for t in normals:
      mask &= a * np.cos(t) + b * np.sin(t) <= size * rng.uniform(0.6, 1.0)
    return mask
  if kind == 3:  # blob: radius modulated by a few harmonics
    r = np.hypot(a, b)
    theta = np.arctan2(b, a)
    radius = np.full_like(r, size * 0.8)
    for k in range(2, 5):
      radius += size * rng.uniform(0.0, 0.15) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return r <= radius
  # thin bar (stems, poles): long and narrow
  return (np.abs(a) <= size * rng.uniform(1.5, 3.0)) & (np.abs(b) <= size * rng.uniform(0.05, 0.15))


def _paint_shape(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, d: float,
                 image: np.ndarray, disparity: np.ndarray) -> None:
  """Z-buffers one textured shape at disparity ~d (slightly slanted) into `image`/`disparity`.

  Only pixels where the shape is nearer than what is already painted take its texture.
  """
  height, width = u.shape
  scale = float(max(height, width))
  # Every random draw from `rng` happens here, before any array work, so the sequence of draws
  # (and so the scene's layout) does not depend on the resolution.
  cx = rng.uniform(-0.05, width / scale + 0.05)
  cy = rng.uniform(-0.05, height / scale + 0.05)
  size = rng.uniform(0.04, 0.14) * (0.6 + 1.2 * d)  # nearer shapes are larger on average
  tilt = rng.uniform(-0.3, 0.3, size=2)
  shape_rng, texture_rng = textures.child(rng), textures.child(rng)
  # Restrict work to the shape's bounding box (the longest extent is a bar of 3 * size).
  reach = 3.2 * size
  i0, i1 = _span(cy - reach, cy + reach, scale, height)
  j0, j1 = _span(cx - reach, cx + reach, scale, width)
  if i0 >= i1 or j0 >= j1:
    return
  uu, vv = u[i0:i1, j0:j1], v[i0:i1, j0:j1]
  mask = _shape_mask(shape_rng, uu, vv, cx, cy, size)
  local_d = d + tilt[0] * (uu - cx) + tilt[1] * (vv - cy)
  local_d = np.clip(local_d, _BACKGROUND_MAX_DISPARITY, 1.0).astype(np.float32)
  visible = mask & (local_d > disparity[i0:i1, j0:j1])
  if not visible.any():
    return
  image[i0:i1, j0:j1][visible] = textures.texture(texture_rng, uu[visible], vv[visible],
                                                  frame=(cx, cy, reach))
  disparity[i0:i1, j0:j1][visible] = local_d[visible]


def _span(lo: float, hi: float, scale: float, size: int) -> tuple[int, int]:
  return max(0, int(np.floor(lo * scale))), min(size, int(np.ceil(hi * scale)) + 1)


def _paint_highlights(rng: np.random.Generator, u: np.ndarray, v: np.ndarray,
                      image: np.ndarray, scale: float) -> None:
  """Small saturated spots (lamps, speculars) on existing surfaces: they become bokeh discs."""
  height, width = u.shape
  for _ in range(int(rng.integers(2, 9))):
    cx = rng.uniform(0.0, width / scale)
    cy = rng.uniform(0.0, height / scale)
    radius = max(rng.uniform(0.003, 0.01), 0.75 / scale)  # at least about one pixel
    tint = 1.0 - rng.uniform(0.0, 0.25, size=3) * (rng.random() < 0.5)
    i0, i1 = _span(cy - radius, cy + radius, scale, height)
    j0, j1 = _span(cx - radius, cx + radius, scale, width)
    spot = np.hypot(u[i0:i1, j0:j1] - cx, v[i0:i1, j0:j1] - cy) <= radius
    image[i0:i1, j0:j1][spot] = tint.astype(np.float32)
