"""Spatially invariant blurs of image planes with per-example kernels (no wrap-around)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def fast_length(n: int) -> int:
  """The smallest ``2^a 3^b 5^c >= n``: an FFT length without large prime factors."""
  best = 1 << (n - 1).bit_length()
  p3 = 1
  while p3 < best:
    p35 = p3
    while p35 < best:
      p = p35
      while p < n:
        p *= 2
      best = min(best, p)
      p35 *= 5
    p3 *= 3
  return best


def convolve(planes: jax.Array, kernel: jax.Array) -> jax.Array:
  """Convolves ``planes`` ``[B, H, W, L, C]`` with per-layer kernels ``[B, L, k, k]`` (odd ``k``).

  The planes are padded by ``k // 2`` with half-sample symmetric reflection (so no light wraps in
  from the opposite edge), zero-padded to FFT-friendly lengths, and convolved via real FFTs.
  Returns the input's shape.
  """
  batch, height, width, num_layers, _ = planes.shape
  size = kernel.shape[-1]
  if size % 2 != 1 or kernel.shape != (batch, num_layers, size, size):
    raise ValueError(f"kernel must be [B, L, k, k] with odd k, got {kernel.shape}")
  pad = size // 2
  padded = jnp.pad(planes, ((0, 0), (pad, pad), (pad, pad), (0, 0), (0, 0)), mode="symmetric")
  shape = (fast_length(height + 2 * pad), fast_length(width + 2 * pad))
  placed = jnp.zeros((batch, num_layers) + shape, kernel.dtype).at[..., :size, :size].set(kernel)
  placed = jnp.roll(placed, (-pad, -pad), axis=(2, 3))
  kernel_spectrum = jnp.fft.rfft2(placed, axes=(2, 3))  # [B, L, h, w']
  spectrum = jnp.fft.rfft2(padded, s=shape, axes=(1, 2))  # [B, h, w', L, C]
  spectrum = spectrum * jnp.moveaxis(kernel_spectrum, 1, -1)[..., None]
  out = jnp.fft.irfft2(spectrum, s=shape, axes=(1, 2))
  return out[:, pad:pad + height, pad:pad + width]
