"""Slow, exact numpy references for the renderer tests (small images only).

Written independently of `diffcamera_jax.optics`: coverage by brute-force sub-pixel inside tests
of the polar aperture formula, and a per-source-pixel scatter with per-target-pixel depth ordering.
"""
from __future__ import annotations

import numpy as np


def inside(dx: np.ndarray, dy: np.ndarray, radius: float, blades: int, rotation: float) -> np.ndarray:
  """Whether offsets lie inside the aperture: rho <= R(theta) (polar form of disk / n-gon)."""
  rho = np.hypot(dx, dy)
  if blades == 0:
    return rho <= radius
  theta = np.arctan2(dy, dx)
  sector = 2 * np.pi / blades
  psi = np.mod(theta - rotation, sector) - sector / 2
  return rho <= radius * np.cos(np.pi / blades) / np.cos(psi)


def coverage(radius: float, blades: int = 0, rotation: float = 0.0, supersample: int = 32) -> np.ndarray:
  """Normalised area-coverage kernel, ``(2 ceil(r + 1) + 1)^2``; a single pixel if nothing covers."""
  half = int(np.ceil(radius + 1))
  sub = (np.arange(supersample) + 0.5) / supersample - 0.5
  coords = (np.arange(-half, half + 1)[:, None] + sub[None, :]).reshape(-1)
  hit = inside(coords[None, :], coords[:, None], radius, blades, rotation)
  size = 2 * half + 1
  kernel = hit.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
  if kernel.sum() == 0 or radius < 0.5:
    kernel = np.zeros_like(kernel)
    kernel[half, half] = 1.0
  return kernel / kernel.sum()


def convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  """Direct 'same' convolution of ``[H, W, C]`` with zero outside (compare away from borders)."""
  height, width = image.shape[:2]
  half = kernel.shape[0] // 2
  padded = np.pad(image, ((half, half), (half, half), (0, 0)))
  out = np.zeros_like(image, dtype=np.float64)
  for i in range(kernel.shape[0]):
    for j in range(kernel.shape[1]):
      if kernel[i, j]:
        # scatter: the source at p lands on p + (i - half, j - half)
        out += kernel[i, j] * padded[2 * half - i:2 * half - i + height, 2 * half - j:2 * half - j + width]
  return out


def scatter(
    image: np.ndarray, disparity: np.ndarray, focus: float, blur: float,
    blades: int = 0, rotation: float = 0.0,
) -> np.ndarray:
  """Exact layered scatter of linear ``image`` ``[H, W, 3]``: every source pixel spreads its light
  over its own coverage kernel of radius ``blur * |D - focus|``; at every target pixel the
  contributions are grouped by source depth and composited nearest first (alpha = summed kernel
  weight of the group, colour = weighted light), then normalised by the total alpha.
  """
  height, width = disparity.shape
  depths = np.unique(disparity)[::-1]  # nearest (largest disparity) first
  transmittance = np.ones((height, width))
  colour = np.zeros((height, width, 3))
  kernels = {}
  for depth in depths:
    radius = abs(blur * (depth - focus))
    if radius not in kernels:
      kernels[radius] = coverage(radius, blades, rotation)
    kernel = kernels[radius]
    half = kernel.shape[0] // 2
    group_light = np.zeros((height + 2 * half, width + 2 * half, 3))
    group_alpha = np.zeros((height + 2 * half, width + 2 * half))
    for y, x in zip(*np.nonzero(disparity == depth)):  # per source pixel
      group_light[y:y + 2 * half + 1, x:x + 2 * half + 1] += kernel[..., None] * image[y, x]
      group_alpha[y:y + 2 * half + 1, x:x + 2 * half + 1] += kernel
    group_light = group_light[half:half + height, half:half + width]
    group_alpha = np.minimum(group_alpha[half:half + height, half:half + width], 1.0)
    colour += transmittance[..., None] * group_light
    transmittance *= 1.0 - group_alpha
  return colour / np.maximum(1.0 - transmittance, 1e-12)[..., None]


def psnr(a: np.ndarray, b: np.ndarray, margin: int = 0) -> float:
  """PSNR (peak 1) of ``a`` against ``b`` on the region ``margin`` pixels away from the borders."""
  if margin:
    a, b = a[margin:-margin, margin:-margin], b[margin:-margin, margin:-margin]
  mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
  return float(10 * np.log10(1.0 / max(mse, 1e-20)))
