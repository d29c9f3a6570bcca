"""Numpy textures and colours for the procedural scenes.

Every pattern is a pointwise function of surface coordinates, so a scene only evaluates the pixels
where a surface is visible, and the same surface drawn at two resolutions shows the same pattern.
"""
from __future__ import annotations

import colorsys

import numpy as np


def child(rng: np.random.Generator) -> np.random.Generator:
  """An independent generator that consumes exactly one draw of `rng`."""
  return np.random.default_rng(int(rng.integers(2**63)))


def lattice_noise(lattice: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Smooth bilinear interpolation of a periodic `lattice` [n, n] at lattice coordinates (x, y)."""
  n = lattice.shape[0]
  x0, y0 = np.floor(x), np.floor(y)
  fx, fy = x - x0, y - y0
  fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)  # smoothstep
  ix, iy = x0.astype(np.int64) % n, y0.astype(np.int64) % n
  jx, jy = (ix + 1) % n, (iy + 1) % n
  top = lattice[iy, ix] * (1 - fx) + lattice[iy, jx] * fx
  bottom = lattice[jy, ix] * (1 - fx) + lattice[jy, jx] * fx
  return (top * (1 - fy) + bottom * fy).astype(np.float32)


def value_noise(rng: np.random.Generator, u: np.ndarray, v: np.ndarray,
                cells: float) -> np.ndarray:
  """Value noise in [0, 1] with `cells` lattice cells per unit length over the unit square.

  The lattice covers the unit square in absolute coordinates, so the noise is the same function
  of (u, v) at every resolution and for every crop of the grid.
  """
  n = int(np.ceil(cells)) + 2
  lattice = rng.random((n, n)).astype(np.float32)
  return lattice_noise(lattice, np.clip(u, 0.0, 1.0) * cells, np.clip(v, 0.0, 1.0) * cells)


def fractal_noise(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Four octaves of value noise, in [0, 1]."""
  base = rng.uniform(3.0, 10.0)
  total, weight = np.zeros_like(u), 0.0
  for octave in range(4):
    amp = 0.55 ** octave
    total += amp * value_noise(rng, u, v, base * 2 ** octave)
    weight += amp
  return total / weight


def strokes(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, frame) -> np.ndarray:
  """Glyph-like pattern: a few thick line segments and arcs inside `frame`, 1 on the strokes."""
  out = np.zeros_like(u)
  cx, cy, half = frame
  extent = 2.0 * half
  width = extent * rng.uniform(0.01, 0.03)
  for _ in range(int(rng.integers(3, 9))):
    p = np.array([cx - half, cy - half]) + rng.random(2) * extent
    if rng.random() < 0.6:  # segment
      q = p + rng.normal(size=2) * extent * 0.3
      d = q - p
      t = np.clip(((u - p[0]) * d[0] + (v - p[1]) * d[1]) / max(float(d @ d), 1e-12), 0.0, 1.0)
      dist = np.hypot(u - p[0] - t * d[0], v - p[1] - t * d[1])
    else:  # ring arc
      radius = extent * rng.uniform(0.05, 0.25)
      dist = np.abs(np.hypot(u - p[0], v - p[1]) - radius)
    out = np.maximum(out, (dist <= width).astype(np.float32))
  return out


def natural_colour(rng: np.random.Generator, hues: tuple[float, float] | None = None,
                   saturation: tuple[float, float] = (2.0, 4.0),
                   value: tuple[float, float] = (4.0, 3.0)) -> np.ndarray:
  """An sRGB colour with the statistics of natural surfaces: mostly muted, mid-to-light.

  Saturation and value are Beta-distributed with the given (a, b); hue is uniform in `hues`
  (a fraction of the colour wheel, may wrap past 1) or anywhere when None.
  """
  hue = rng.uniform(*hues) % 1.0 if hues is not None else rng.random()
  rgb = colorsys.hsv_to_rgb(hue, rng.beta(*saturation), rng.beta(*value))
  return np.asarray(rgb, np.float32)


def texture(rng: np.random.Generator, u: np.ndarray, v: np.ndarray,
            frame: tuple[float, float, float],
            colours: tuple[np.ndarray, np.ndarray] | None = None,
            kind: int | None = None) -> np.ndarray:
  """A random colour texture [..., 3] at points (u, v): noise, stripes, checkers, gradient, strokes.

  `frame` = (centre x, centre y, half extent) of the surface it covers, for gradients and strokes.
  `colours` = the two colours the pattern blends (uniform random RGB when None); `kind` = the
  pattern, 0-4 in the order above (random when None). Draws from `rng` do not depend on either.
  """
  c0, c1 = rng.random(3).astype(np.float32), rng.random(3).astype(np.float32)
  if colours is not None:
    c0, c1 = (np.asarray(c, np.float32) for c in colours)
  drawn = int(rng.integers(5))
  kind = drawn if kind is None else kind
  angle = rng.uniform(0.0, np.pi)
  along = np.cos(angle) * u + np.sin(angle) * v
  across = -np.sin(angle) * u + np.cos(angle) * v
  freq = rng.uniform(6.0, 60.0)  # cycles per unit length (longer image side)
  if kind == 0:
    t = fractal_noise(rng, u, v)
  elif kind == 1:
    t = 0.5 + 0.5 * np.sin(2 * np.pi * freq * along + rng.uniform(0, 2 * np.pi))
    if rng.random() < 0.5:
      t = (t > 0.5).astype(np.float32)
  elif kind == 2:
    t = ((np.floor(along * freq) + np.floor(across * freq)) % 2).astype(np.float32)
  elif kind == 3:
    centre = np.cos(angle) * frame[0] + np.sin(angle) * frame[1]
    t = np.clip(0.5 + 0.5 * (along - centre) / frame[2], 0.0, 1.0)
  else:
    t = strokes(rng, u, v, frame)
  t = t.astype(np.float32)
  image = c0 + (c1 - c0) * t[..., None]
  grain = rng.uniform(0.01, 0.06)  # per-pixel detail: real high-frequency content everywhere
  image = image + grain * rng.standard_normal(image.shape, dtype=np.float32)
  return np.clip(image, 0.0, 1.0).astype(np.float32)
