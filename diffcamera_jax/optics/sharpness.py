"""Local sharpness of an image: the Laplacian of its luma, the classical focus measure.

Shared by the metrics (LVCorr, focus accuracy) and by inference (how much detail a frame kept).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

LUMA = (0.2126, 0.7152, 0.0722)  # Rec. 709 weights


def laplacian(image: jax.Array) -> jax.Array:
  """4-neighbour Laplacian of luma on the valid interior: `[..., H, W, 3]` -> `[..., H-2, W-2]`."""
  image = jnp.asarray(image, jnp.float32)
  if image.ndim < 3 or image.shape[-1] != 3 or min(image.shape[-3:-1]) < 3:
    raise ValueError(f"image: expected [..., H, W, 3] with H, W >= 3, got shape {image.shape}")
  y = image @ jnp.asarray(LUMA, jnp.float32)
  c = y[..., 1:-1, 1:-1]
  return y[..., :-2, 1:-1] + y[..., 2:, 1:-1] + y[..., 1:-1, :-2] + y[..., 1:-1, 2:] - 4.0 * c


__all__ = ["LUMA", "laplacian"]
