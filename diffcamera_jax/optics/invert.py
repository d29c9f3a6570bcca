"""Deblurring by inverting the renderer: the sharp image whose render reproduces the photo.

A photo focused at disparity d with blur K is, under this project's optics, `render(S, D, d, K)`
of its all-in-focus image S. Given the disparity D and the camera (d, K), S is recovered by
minimising `mean((render(x, D, d, K) - photo)^2) + tv_weight * TV(x)` over x in [0, 1] with Adam,
starting from an initial estimate (the photo, or a learned sharp estimate). Because the renderer
models the spatially varying disk and the partial occlusion at depth edges, this restores where
a deconvolution by one kernel rings (docs/optics.md, "Inversion").

The result is only as good as the camera: an over-estimated blur or a focus disparity off by
~0.1 rings and loses to the photo, an under-estimated blur restores less (the `blur_scale`
argument of callers biases it low). Pure JAX (jit, vmap); `iterations` is static.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from diffcamera_jax.optics.aperture import Aperture
from diffcamera_jax.optics.render import render


def total_variation(x: jax.Array) -> jax.Array:
  """Mean isotropic total variation of `[B, H, W, C]` images (smoothed at 0: finite gradient)."""
  dy = x[:, 1:, :-1] - x[:, :-1, :-1]
  dx = x[:, :-1, 1:] - x[:, :-1, :-1]
  return jnp.mean(jnp.sqrt(jnp.square(dy) + jnp.square(dx) + 1e-6))


def invert_render(photo: jax.Array, disparity: jax.Array, focus_disparity: jax.Array,
                  blur: jax.Array, *, init: jax.Array | None = None, iterations: int = 50,
                  step_size: float = 0.01, tv_weight: float = 3e-4,
                  aperture: Aperture = Aperture(), gamma: float = 2.2,
                  max_radius: float = 8.0) -> jax.Array:
  """The all-in-focus estimate `[B, H, W, 3]` of `photo` `[B, H, W, 3]` (sRGB, [0, 1]) taken at
  `(focus_disparity, blur)` `[B]` of a scene of disparity `[B, H, W]`.

  `init` (default: the photo) is where the descent starts. `iterations` Adam steps of
  `step_size` on the render's squared error plus `tv_weight` times the total variation, each
  followed by clipping to [0, 1]. `max_radius` (static) bounds the renderer's CoC as in `render`.
  """
  if photo.ndim != 4 or photo.shape[-1] != 3:
    raise ValueError(f"invert_render: photo must be [B, H, W, 3], got {photo.shape}")
  if iterations < 0:
    raise ValueError(f"invert_render: iterations must be >= 0, got {iterations}")
  photo = jnp.clip(photo.astype(jnp.float32), 0.0, 1.0)
  x = photo if init is None else jnp.clip(init.astype(jnp.float32), 0.0, 1.0)
  optimizer = optax.adam(step_size)

  def objective(x):
    rendered = render(x, disparity, focus_disparity, blur, aperture=aperture, gamma=gamma,
                      max_radius=max_radius)
    return jnp.mean(jnp.square(rendered - photo)) + tv_weight * total_variation(x)

  def step(carry, _):
    x, state = carry
    grad = jax.grad(objective)(x)
    updates, state = optimizer.update(grad, state)
    return (jnp.clip(optax.apply_updates(x, updates), 0.0, 1.0), state), None

  (x, _), _ = jax.lax.scan(step, (x, optimizer.init(x)), None, length=iterations)
  return x


def explained_residual(photo: jax.Array, disparity: jax.Array, focus_disparity: jax.Array,
                       blur: jax.Array, *, iterations: int, step_size: float = 0.02,
                       aperture: Aperture = Aperture(), gamma: float = 2.2,
                       max_radius: float = 8.0) -> jax.Array:
  """How well the camera `(focus_disparity, blur)` `[B]` explains `photo` `[B, H, W, 3]`: the
  render error left after `iterations` unregularised, unclipped descent steps on the sharp image,
  over the error of rendering the photo itself `[B]` (lower: more likely the photo's camera).

  The true camera is where a sharp image exists whose render is the photo: there the error falls
  by orders of magnitude. A larger blur or a focus plane elsewhere cannot be reproduced (the
  photo holds detail that camera would have removed); a smaller blur is reproduced only by an
  image blurred in a way the renderer does not make, and its starting error is small, so the
  ratio stays high.
  """
  photo = jnp.clip(photo.astype(jnp.float32), 0.0, 1.0)
  optimizer = optax.adam(step_size)
  rendered = lambda x: render(x, disparity, focus_disparity, blur, aperture=aperture, gamma=gamma,
                              max_radius=max_radius)
  error = lambda x: jnp.mean(jnp.square(rendered(x) - photo), axis=(1, 2, 3))

  def step(carry, _):
    x, state = carry
    grad = jax.grad(lambda x: jnp.sum(error(x)))(x)
    updates, state = optimizer.update(grad, state)
    return (optax.apply_updates(x, updates), state), None

  (x, _), _ = jax.lax.scan(step, (photo, optimizer.init(photo)), None, length=iterations)
  return error(x) / jnp.maximum(error(photo), 1e-12)


def estimate_camera(photo: jax.Array, disparity: jax.Array, *, blur_range: tuple[float, float],
                    focus_levels: int = 9, blur_levels: int = 7, refinements: int = 2,
                    iterations: int = 40, gamma: float = 2.2,
                    max_radius: float = 8.0) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The camera `(focus_disparity, blur, score)` `[B]` that best explains each photo
  `[B, H, W, 3]` of known disparity `[B, H, W]` (`explained_residual`, lowest wins).

  A grid of `focus_levels` focus disparities (quantiles of the photo's disparity: the focus lies
  on some surface of the scene) by `blur_levels` blurs spaced geometrically over `blur_range`
  (pixels, low > 0), then `refinements` rounds of a 3 x 3 grid around the best, each halving the
  steps. `score` is the winner's residual ratio: near 1 means
  no camera in the range explains the photo better than leaving it as it is (a sharp photo).

  Candidates are scored nine at a time in one loop (the grid in chunks, then each refinement), so
  the inversion is compiled once, whatever the grid's size.
  """
  lo, hi = (float(v) for v in blur_range)
  if not 0.0 < lo <= hi:
    raise ValueError(f"estimate_camera: blur_range must satisfy 0 < low <= high, got {blur_range}")
  b = photo.shape[0]
  chunk = 9  # a refinement's 3 x 3 grid; the first grid is scored in chunks of this size

  def scores(d, k):  # d, k [B, chunk] -> [B, chunk]
    tile = lambda x: jnp.repeat(x, chunk, axis=0)
    out = explained_residual(tile(photo), tile(disparity), d.reshape(-1), k.reshape(-1),
                             iterations=iterations, gamma=gamma, max_radius=max_radius)
    return out.reshape(b, chunk)

  levels = jnp.linspace(0.0, 1.0, focus_levels)
  focus = jnp.quantile(disparity.reshape(b, -1).astype(jnp.float32), levels, axis=1).T  # [B, L]
  blurs = jnp.geomspace(lo, hi, blur_levels)
  grid_d = jnp.repeat(focus, blur_levels, axis=1)
  grid_k = jnp.tile(blurs, (b, focus_levels))
  count = focus_levels * blur_levels
  chunks = -(-count // chunk)
  pad = lambda x: jnp.concatenate([x, jnp.repeat(x[:, -1:], chunks * chunk - count, 1)], 1)
  grid_d, grid_k = pad(grid_d), pad(grid_k)  # repeats of the last candidate never win a tie
  spread = (jnp.max(focus, 1) - jnp.min(focus, 1))[:, None, None]
  step_d0 = spread / max(focus_levels - 1, 1) / 2.0
  log_step_k0 = jnp.log(hi / lo) / max(blur_levels - 1, 1) / 2.0
  offsets = jnp.asarray([-1.0, 0.0, 1.0])

  def candidates(i, d, k):
    """Chunk `i` of the grid, or for `i >= chunks` the 3 x 3 grid of refinement `i - chunks`
    around `(d, k)`, with the steps halved (the blur's in log) once per refinement before it."""
    start = jnp.minimum(i, chunks - 1) * chunk
    from_grid = tuple(jax.lax.dynamic_slice_in_dim(x, start, chunk, 1) for x in (grid_d, grid_k))
    halving = 0.5 ** jnp.maximum(i - chunks, 0).astype(jnp.float32)
    cd = jnp.clip(d[:, None, None] + step_d0 * halving * offsets[None, :, None], 0.0, 1.0)
    ck = k[:, None, None] * jnp.exp(log_step_k0 * halving * offsets[None, None, :])
    cd, ck = jnp.broadcast_arrays(cd, ck)
    refined = (cd.reshape(b, chunk), ck.reshape(b, chunk))
    return tuple(jnp.where(i < chunks, g, r) for g, r in zip(from_grid, refined))

  def round_(i, best):
    d, k, s = best
    cd, ck = candidates(i, d, k)
    cs = scores(cd, ck)
    j = jnp.argmin(cs, axis=1)
    pick = lambda x: jnp.take_along_axis(x, j[:, None], 1)[:, 0]
    better = pick(cs) < s  # the first of equal scores is kept, as by one argmin over all
    return tuple(jnp.where(better, pick(x), y) for x, y in ((cd, d), (ck, k), (cs, s)))

  start = (grid_d[:, 0], grid_k[:, 0], jnp.full((b,), jnp.inf, jnp.float32))
  return jax.lax.fori_loop(0, chunks + refinements, round_, start)


__all__ = ["estimate_camera", "explained_residual", "invert_render", "total_variation"]
