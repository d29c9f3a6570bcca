"""Point-spread-function measures: what a single point light renders to, read as a lens would be.

A point light at constant depth renders to the aperture's kernel. These measures read its outline
along rays from the light: the radius where the disc falls to half its level, the 10-90 % edge
width, the roundness of the half-level outline and the most negative value. The renderer's tests
and `benchmarks/render.py` share them.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage


@dataclasses.dataclass(frozen=True)
class PSFMeasures:
  """Outline measures of one rendered point light (pixels unless noted)."""

  radius_at_half: float  # mean over rays of the half-level crossing
  edge_width_10_90: float  # median over rays of the distance from the 90 % to the 10 % crossing
  outline_max_over_min: float  # half-level outline: largest over smallest crossing radius
  min_over_peak: float  # most negative value relative to the peak (0 when none is negative)
  level: float  # the disc's level: median inside half the radius asked

  def as_dict(self) -> dict[str, float]:
    return {k: round(float(v), 6) for k, v in dataclasses.asdict(self).items()}


def point_light_scene(size: int) -> tuple[np.ndarray, np.ndarray]:
  """A dark ``size``² RGB image with one unit light at the centre, and a constant disparity."""
  image = np.zeros((size, size, 3), np.float32)
  image[size // 2, size // 2] = 1.0
  return image, np.zeros((size, size), np.float32)


def measure(psf: np.ndarray, radius: float, rays: int = 360) -> PSFMeasures:
  """Measures of the point light at the centre of ``psf`` ([H, W]) whose CoC radius is ``radius``."""
  psf = np.asarray(psf, np.float64)
  h, w = psf.shape
  cy, cx = h // 2, w // 2
  yy, xx = np.mgrid[:h, :w]
  inside = np.hypot(yy - cy, xx - cx) <= max(radius / 2, 1.0)
  level = float(np.median(psf[inside]))
  step = 0.05
  distance = np.arange(0.0, min(cy, cx, 2 * radius + 8), step)
  angles = np.linspace(0, 2 * np.pi, rays, endpoint=False)
  ys = cy + distance[None, :] * np.sin(angles)[:, None]
  xs = cx + distance[None, :] * np.cos(angles)[:, None]
  profile = ndimage.map_coordinates(psf, [ys.ravel(), xs.ravel()], order=1).reshape(rays, -1) / level
  half = np.array([_last_crossing(p, distance, 0.5) for p in profile])
  p90 = np.array([_last_crossing(p, distance, 0.9) for p in profile])
  p10 = np.array([_last_crossing(p, distance, 0.1) for p in profile])
  return PSFMeasures(
      radius_at_half=float(half.mean()), edge_width_10_90=float(np.median(p10 - p90)),
      outline_max_over_min=float(half.max() / half.min()),
      min_over_peak=float(min(psf.min(), 0.0) / psf.max()), level=level)


def _last_crossing(profile: np.ndarray, distance: np.ndarray, threshold: float) -> float:
  """The largest distance at which ``profile`` falls through ``threshold`` (linear interpolation)."""
  above = profile >= threshold
  idx = np.nonzero(above[:-1] & ~above[1:])[0]
  if idx.size == 0:
    return float("nan")
  i = idx[-1]
  a, b = profile[i], profile[i + 1]
  return float(distance[i] + (a - threshold) / (a - b) * (distance[i + 1] - distance[i]))
