"""Focus disparity from a focus point, and the signed circle of confusion."""
from __future__ import annotations

from typing import Union

import jax
import jax.numpy as jnp

ArrayLike = Union[jax.Array, float]


def focus_window(height: int, width: int) -> int:
  """Side of the square window whose median disparity is the focus: ~1/32 of the shorter side, odd."""
  return 2 * max(1, min(height, width) // 64) + 1


def focus_disparity(disparity: jax.Array, point: jax.Array) -> jax.Array:
  """Robust disparity at focus point ``(x, y)`` in [0, 1]^2: median of a small window around it.

  ``disparity`` is ``[H, W]`` with ``point`` ``[2]`` (returns a scalar), or ``[B, H, W]`` with
  ``point`` ``[B, 2]`` or ``[2]`` (returns ``[B]``). The window is clipped to the image, so points
  on the border use the nearest full window. The median ignores thin structures (an edge, a
  highlight) that a single-pixel read would latch onto.
  """
  disparity = jnp.asarray(disparity, jnp.float32)
  point = jnp.asarray(point, jnp.float32)
  if disparity.ndim not in (2, 3):
    raise ValueError(f"disparity must be [H, W] or [B, H, W], got shape {disparity.shape}")
  if point.shape[-1:] != (2,):
    raise ValueError(f"point must end in a dimension of 2 (x, y), got shape {point.shape}")
  if disparity.ndim == 2:
    if point.ndim != 1:
      raise ValueError(f"point must be [2] for a [H, W] disparity, got shape {point.shape}")
    return _focus_one(disparity, point)
  point = jnp.broadcast_to(point, (disparity.shape[0], 2))
  return jax.vmap(_focus_one)(disparity, point)


def _focus_one(disparity: jax.Array, point: jax.Array) -> jax.Array:
  height, width = disparity.shape
  size = min(focus_window(height, width), height, width)
  col = jnp.clip(jnp.floor(point[0] * width).astype(jnp.int32) - size // 2, 0, width - size)
  row = jnp.clip(jnp.floor(point[1] * height).astype(jnp.int32) - size // 2, 0, height - size)
  window = jax.lax.dynamic_slice(disparity, (row, col), (size, size))
  return jnp.median(window)


def signed_coc(disparity: jax.Array, focus_disparity: ArrayLike, blur: ArrayLike) -> jax.Array:
  """Signed circle-of-confusion radius in pixels: ``blur * (disparity - focus_disparity)``.

  Positive in front of the focal plane. Scalars or ``[B]`` values broadcast over ``[B, H, W]``.
  """
  disparity = jnp.asarray(disparity, jnp.float32)
  return per_example(blur) * (disparity - per_example(focus_disparity))


def per_example(value: ArrayLike) -> jax.Array:
  """A scalar, or ``[B]`` reshaped to ``[B, 1, 1]`` so it broadcasts over ``[B, H, W]``."""
  value = jnp.asarray(value, jnp.float32)
  return value if value.ndim == 0 else value[..., None, None]
