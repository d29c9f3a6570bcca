"""Spatially invariant blurs of image planes with per-example kernels (no wrap-around)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def convolve(planes: jax.Array, kernel: jax.Array) -> jax.Array:
  """Convolves ``planes`` ``[B, H, W, C]`` with ``kernel`` ``[B, k, k]`` (odd ``k``) via FFT.

  The planes are padded by ``k // 2`` with half-sample symmetric reflection, so no light wraps
  around from the opposite edge; the output has the input's shape.
  """
  batch, height, width, _ = planes.shape
  size = kernel.shape[-1]
  pad = size // 2
  padded = jnp.pad(planes, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="symmetric")
  shape = (height + 2 * pad, width + 2 * pad)
  placed = jnp.zeros((batch,) + shape, kernel.dtype).at[:, :size, :size].set(kernel)
  placed = jnp.roll(placed, (-pad, -pad), axis=(1, 2))
  spectrum = jnp.fft.rfft2(padded, axes=(1, 2)) * jnp.fft.rfft2(placed, axes=(1, 2))[..., None]
  out = jnp.fft.irfft2(spectrum, s=shape, axes=(1, 2))
  return out[:, pad:pad + height, pad:pad + width, :]
