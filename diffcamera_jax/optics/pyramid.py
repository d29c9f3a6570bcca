"""Resampling between pyramid levels: a centroid-preserving 2x decimator and a cubic 2x upsampler."""
from __future__ import annotations

import jax
import jax.numpy as jnp

# Keys cubic (a = -0.5) weights of source pixels i-2 .. i+1 for the output at i - 1/4; the output
# at i + 1/4 uses the mirrored weights on i-1 .. i+2 (pixel-centre aligned 2x upsampling).
_CUBIC = (-0.0234375, 0.2265625, 0.8671875, -0.0703125)


def decimate(x: jax.Array, factor: int) -> jax.Array:
  """Halves ``H`` and ``W`` of ``x`` ``[..., H, W]`` log2(``factor``) times.

  Each halving filters with [1, 3, 3, 1] / 8 per axis (edge-clamped): the transpose of linear
  interpolation, so a point's light keeps its centroid (a 2x2 box average would move it by half a
  pixel) and aliasing is weaker than with the box.
  """
  if factor & (factor - 1) or factor < 1:
    raise ValueError(f"factor must be a power of two, got {factor}")
  while factor > 1:
    x = _decimate_axis(_decimate_axis(x, x.ndim - 2), x.ndim - 1)
    factor //= 2
  return x


def _decimate_axis(x: jax.Array, axis: int) -> jax.Array:
  n = x.shape[axis]
  if n % 2:
    raise ValueError(f"size {n} along axis {axis} is not even")
  part = lambda start, stop, stride=1: jax.lax.slice_in_dim(x, start, stop, stride, axis=axis)
  even, odd = part(0, n, 2), part(1, n, 2)  # sources 2i and 2i + 1
  # sources 2i - 1 and 2i + 2, clamped at the edges (each concatenation has a single user, so
  # the whole filter stays one fused loop over the output)
  before = jnp.concatenate([part(0, 1), part(1, n - 2, 2)], axis=axis)
  after = jnp.concatenate([part(2, n, 2), part(n - 1, n)], axis=axis)
  return (before + 3.0 * even + 3.0 * odd + after) * 0.125


def decimate_window(x: jax.Array, start: tuple[int, int], size: tuple[int, int]) -> jax.Array:
  """One `decimate` step of the window ``x[..., start : start + size]`` (per axis) of ``x``
  ``[..., H, W]``, reading the neighbours just outside the window instead of clamping: when ``x``
  is the window padded by half-sample symmetric reflection, the two are equal. Plain strided
  slices, so the producer of ``x`` fuses into the filter.
  """
  for axis, s, n in ((x.ndim - 2, start[0], size[0]), (x.ndim - 1, start[1], size[1])):
    if n % 2 or s < 1 or s + n + 1 > x.shape[axis]:
      raise ValueError(f"window {s}:{s + n} of axis {axis} needs even size and a 1-pixel border")
    # the output's axis i reads sources s + 2i - 1 + k, k = 0..3
    tap = lambda k, axis=axis, s=s, n=n: jax.lax.slice_in_dim(x, s - 1 + k, s - 1 + k + n - 1, 2, axis)
    x = (tap(0) + 3.0 * tap(1) + 3.0 * tap(2) + tap(3)) * 0.125
  return x


def upsample2(x: jax.Array) -> jax.Array:
  """Doubles ``H`` and ``W`` of ``x`` ``[..., H, W]`` with a Keys cubic, edge-clamped."""
  return _upsample_axis(_upsample_axis(x, x.ndim - 2), x.ndim - 1)


def _upsample_axis(x: jax.Array, axis: int) -> jax.Array:
  n = x.shape[axis]
  padded = _clamp_pad(x, 2, axis)
  tap = lambda k: jax.lax.slice_in_dim(padded, k, k + n, axis=axis)  # source i - 2 + k
  even = sum(w * tap(k) for k, w in enumerate(_CUBIC))
  odd = sum(w * tap(k + 1) for k, w in enumerate(reversed(_CUBIC)))
  out = jnp.stack([even, odd], axis=axis + 1)
  shape = list(x.shape)
  shape[axis] *= 2
  return out.reshape(shape)


def _clamp_pad(x: jax.Array, pad: int, axis: int) -> jax.Array:
  """``x`` extended by ``pad`` copies of its first and last slices along ``axis``."""
  first = jax.lax.slice_in_dim(x, 0, 1, axis=axis)
  last = jax.lax.slice_in_dim(x, x.shape[axis] - 1, x.shape[axis], axis=axis)
  return jnp.concatenate([first] * pad + [x] + [last] * pad, axis=axis)
