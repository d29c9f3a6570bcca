"""Inaccurate depth maps for training: random errors of the kinds real disparity maps carry.

A model that is only ever given exact maps (or none, under depth dropout) learns to trust the
map it is given. `corrupt` replaces a fraction of the training maps with wrong ones, drawn inside
the jitted step, so that a model which can correct the map (`model.restorer.refine_depth`) is
taught to. The kinds are those of `evaluation/depth_corruption.py` with their sizes drawn at random
per example (the evaluation applies one fixed setting of each kind, deterministically per scene):

- `blur`: Gaussian blur, sigma 1-6 % of the longer side (evaluation: 4 %).
- `warp`: the monotone warp `d**g`, `g` log-uniform in [1/2.5, 2.5] (evaluation: `d**2`).
- `noise`: Gaussian noise of sigma 0.01-0.08, quantised to 8, 16, 32 or 64 levels (0.05, 16).
- `coarse`: means over cells of 1/4, 1/8 or 1/16 of the side, enlarged by nearest neighbour (1/8).
- `holes`: 1-6 rectangles of 5-30 % of each side set to 0 (4 of 10-25 %).

Pure JAX on `[B, H, W]` maps in [0, 1]; the errors are clipped back into [0, 1].
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

BLUR_SIGMA = (0.01, 0.06)  # of the longer side
WARP_GAMMA = 2.5  # exponent log-uniform in [1 / WARP_GAMMA, WARP_GAMMA]
NOISE_SIGMA = (0.01, 0.08)
NOISE_LEVELS = (8, 16, 32, 64)
COARSE_CELLS = (4, 8, 16)  # cells per longer side
MAX_HOLES, HOLE_SIZE = 6, (0.05, 0.30)


def _blur(key: jax.Array, d: jax.Array) -> jax.Array:
  """Separable Gaussian blur, per-example sigma, mirrored edges."""
  b, h, w = d.shape
  side = max(h, w)
  sigma = jax.random.uniform(key, (b,), minval=BLUR_SIGMA[0], maxval=BLUR_SIGMA[1]) * side
  radius = max(1, min(math.ceil(3 * BLUR_SIGMA[1] * side), min(h, w) - 1))
  x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  kernel = jnp.exp(-0.5 * (x[None] / jnp.maximum(sigma[:, None], 0.3)) ** 2)
  kernel = kernel / kernel.sum(-1, keepdims=True)  # [B, 2r + 1]
  taps = range(2 * radius + 1)
  out = jnp.pad(d, ((0, 0), (radius, radius), (0, 0)), mode="reflect")
  out = sum(kernel[:, i, None, None] * out[:, i:i + h] for i in taps)
  out = jnp.pad(out, ((0, 0), (0, 0), (radius, radius)), mode="reflect")
  return sum(kernel[:, i, None, None] * out[:, :, i:i + w] for i in taps)


def _warp(key: jax.Array, d: jax.Array) -> jax.Array:
  log_g = jax.random.uniform(key, (d.shape[0],), minval=-1.0, maxval=1.0) * math.log(WARP_GAMMA)
  return jnp.power(jnp.maximum(d, 0.0), jnp.exp(log_g)[:, None, None])


def _noise(key: jax.Array, d: jax.Array) -> jax.Array:
  k_sigma, k_levels, k_noise = jax.random.split(key, 3)
  b = d.shape[0]
  sigma = jax.random.uniform(k_sigma, (b,), minval=NOISE_SIGMA[0], maxval=NOISE_SIGMA[1])
  levels = jnp.asarray(NOISE_LEVELS, jnp.float32)[
      jax.random.randint(k_levels, (b,), 0, len(NOISE_LEVELS))][:, None, None] - 1.0
  noisy = jnp.clip(d + sigma[:, None, None] * jax.random.normal(k_noise, d.shape), 0.0, 1.0)
  return jnp.round(noisy * levels) / levels


def _cell_means(d: jax.Array, cells: int) -> jax.Array:
  """Means over square cells of `max(H, W) // cells` pixels, enlarged by nearest neighbour."""
  b, h, w = d.shape
  cell = max(1, max(h, w) // cells)
  rows, cols = jnp.arange(h) // cell, jnp.arange(w) // cell
  ncols = (w - 1) // cell + 1
  num = ((h - 1) // cell + 1) * ncols
  ids = (rows[:, None] * ncols + cols[None, :])[None] + num * jnp.arange(b)[:, None, None]
  total = lambda x: jax.ops.segment_sum(x.reshape(-1), ids.reshape(-1), num_segments=b * num)
  means = total(d) / jnp.maximum(total(jnp.ones_like(d)), 1.0)
  return means[ids]


def _coarse(key: jax.Array, d: jax.Array) -> jax.Array:
  choice = jax.random.randint(key, (d.shape[0],), 0, len(COARSE_CELLS))[:, None, None]
  out = d
  for i, cells in enumerate(COARSE_CELLS):
    out = jnp.where(choice == i, _cell_means(d, cells), out)
  return out


def _holes(key: jax.Array, d: jax.Array) -> jax.Array:
  b, h, w = d.shape
  k_count, k_size, k_pos = jax.random.split(key, 3)
  count = jax.random.randint(k_count, (b, 1), 1, MAX_HOLES + 1)
  size = jax.random.uniform(k_size, (b, MAX_HOLES, 2), minval=HOLE_SIZE[0], maxval=HOLE_SIZE[1])
  start = jax.random.uniform(k_pos, (b, MAX_HOLES, 2)) * (1.0 - size)
  y = (jnp.arange(h, dtype=jnp.float32) + 0.5) / h
  x = (jnp.arange(w, dtype=jnp.float32) + 0.5) / w
  in_y = (y[None, None] >= start[..., 0:1]) & (y[None, None] < start[..., 0:1] + size[..., 0:1])
  in_x = (x[None, None] >= start[..., 1:2]) & (x[None, None] < start[..., 1:2] + size[..., 1:2])
  active = jnp.arange(MAX_HOLES)[None] < count  # [B, MAX_HOLES]
  hole = jnp.any(active[..., None, None] & in_y[..., :, None] & in_x[..., None, :], axis=1)
  return jnp.where(hole, 0.0, d)


CORRUPTIONS = {"blur": _blur, "warp": _warp, "noise": _noise, "coarse": _coarse, "holes": _holes}


def corrupt(key: jax.Array, disparity: jax.Array, probability: float) -> tuple[jax.Array, jax.Array]:
  """`(maps, corrupted)`: each map of `disparity` `[B, H, W]` replaced, with `probability`, by
  one of the `CORRUPTIONS` (kind chosen uniformly) with randomly drawn sizes; `corrupted` `[B]` says which."""
  if disparity.ndim != 3:
    raise ValueError(f"corrupt: disparity must be [B, H, W], got {disparity.shape}")
  k_apply, k_kind, *k_each = jax.random.split(key, 2 + len(CORRUPTIONS))
  b = disparity.shape[0]
  d = disparity.astype(jnp.float32)
  kind = jax.random.randint(k_kind, (b,), 0, len(CORRUPTIONS))[:, None, None]
  out = d
  for i, (fn, k) in enumerate(zip(CORRUPTIONS.values(), k_each)):
    out = jnp.where(kind == i, fn(k, d), out)
  corrupted = jax.random.uniform(k_apply, (b,)) < probability
  out = jnp.where(corrupted[:, None, None], jnp.clip(out, 0.0, 1.0), d)
  return out.astype(disparity.dtype), corrupted


__all__ = ["CORRUPTIONS", "corrupt"]
