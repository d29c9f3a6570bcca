"""Resampling between pyramid levels: a centroid-preserving 2x decimator and a cubic 2x upsampler."""
from __future__ import annotations

import jax
import jax.numpy as jnp

# Keys cubic (a = -0.5) weights of source pixels i-2 .. i+1 for the output at i - 1/4; the output
# at i + 1/4 uses the mirrored weights on i-1 .. i+2 (pixel-centre aligned 2x upsampling).
_CUBIC = (-0.0234375, 0.2265625, 0.8671875, -0.0703125)


def decimate(x: jax.Array, factor: int) -> jax.Array:
  """Halves ``H`` and ``W`` of ``x`` ``[B, H, W, ...]`` log2(``factor``) times.

  Each halving filters with [1, 3, 3, 1] / 8 per axis (edge-clamped): the transpose of linear
  interpolation, so a point's light keeps its centroid (a 2x2 box average would move it by half a
  pixel) and aliasing is weaker than with the box.
  """
  if factor & (factor - 1) or factor < 1:
    raise ValueError(f"factor must be a power of two, got {factor}")
  while factor > 1:
    x = _decimate_axis(_decimate_axis(x, 1), 2)
    factor //= 2
  return x


def _decimate_axis(x: jax.Array, axis: int) -> jax.Array:
  n = x.shape[axis]
  if n % 2:
    raise ValueError(f"size {n} along axis {axis} is not even")
  padded = jnp.take(x, jnp.clip(jnp.arange(-1, n + 1), 0, n - 1), axis=axis)
  tap = lambda k: jax.lax.slice_in_dim(padded, k, k + n - 1, stride=2, axis=axis)  # source 2i-1+k
  return (tap(0) + 3.0 * tap(1) + 3.0 * tap(2) + tap(3)) * 0.125


def upsample2(x: jax.Array) -> jax.Array:
  """Doubles ``H`` and ``W`` of ``x`` ``[B, H, W, ...]`` with a Keys cubic, edge-clamped."""
  return _upsample_axis(_upsample_axis(x, 1), 2)


def _upsample_axis(x: jax.Array, axis: int) -> jax.Array:
  n = x.shape[axis]
  padded = jnp.take(x, jnp.clip(jnp.arange(-2, n + 2), 0, n - 1), axis=axis)
  tap = lambda k: jax.lax.slice_in_dim(padded, k, k + n, axis=axis)  # source i - 2 + k
  even = sum(w * tap(k) for k, w in enumerate(_CUBIC))
  odd = sum(w * tap(k + 1) for k, w in enumerate(reversed(_CUBIC)))
  out = jnp.stack([even, odd], axis=axis + 1)
  shape = list(x.shape)
  shape[axis] *= 2
  return out.reshape(shape)
