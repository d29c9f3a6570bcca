"""Resampling between pyramid levels: exact area decimation and a cubic 2x upsampler."""
from __future__ import annotations

import jax
import jax.numpy as jnp

# Keys cubic (a = -0.5) weights of source pixels i-2 .. i+1 for the output at i - 1/4; the output
# at i + 1/4 uses the mirrored weights on i-1 .. i+2 (pixel-centre aligned 2x upsampling).
_CUBIC = (-0.0234375, 0.2265625, 0.8671875, -0.0703125)


def decimate(x: jax.Array, factor: int) -> jax.Array:
  """Area average over ``factor x factor`` blocks of ``x`` ``[B, H, W, ...]`` (H, W divisible)."""
  if factor == 1:
    return x
  batch, height, width = x.shape[:3]
  if height % factor or width % factor:
    raise ValueError(f"image size {(height, width)} is not divisible by {factor}")
  blocks = x.reshape(batch, height // factor, factor, width // factor, factor, *x.shape[3:])
  return blocks.mean(axis=(2, 4))


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
