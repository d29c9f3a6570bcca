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
  """
  lo, hi = (float(v) for v in blur_range)
  if not 0.0 < lo <= hi:
    raise ValueError(f"estimate_camera: blur_range must satisfy 0 < low <= high, got {blur_range}")
  b = photo.shape[0]

  def scores(d, k):  # d, k [B, C] -> [B, C]
    c = d.shape[1]
    tile = lambda x: jnp.repeat(x, c, axis=0)
    out = explained_residual(tile(photo), tile(disparity), d.reshape(-1), k.reshape(-1),
                             iterations=iterations, gamma=gamma, max_radius=max_radius)
    return out.reshape(b, c)

  def best(d, k):
    s = scores(d, k)
    i = jnp.argmin(s, axis=1)
    pick = lambda x: jnp.take_along_axis(x, i[:, None], 1)[:, 0]
    return pick(d), pick(k), pick(s)

  levels = jnp.linspace(0.0, 1.0, focus_levels)
  focus = jnp.quantile(disparity.reshape(b, -1).astype(jnp.float32), levels, axis=1).T  # [B, L]
  blurs = jnp.geomspace(lo, hi, blur_levels)
  d, k, s = best(jnp.repeat(focus, blur_levels, axis=1),
                 jnp.tile(blurs, (b, focus_levels)))
  spread = (jnp.max(focus, 1) - jnp.min(focus, 1))[:, None, None]
  step_d = spread / max(focus_levels - 1, 1) / 2.0
  step_k = (hi / lo) ** (1.0 / max(blur_levels - 1, 1) / 2.0)
  offsets = jnp.asarray([-1.0, 0.0, 1.0])
  for _ in range(refinements):
    cd = jnp.clip(d[:, None, None] + step_d * offsets[None, :, None], 0.0, 1.0)
    ck = k[:, None, None] * step_k ** offsets[None, None, :]
    cd, ck = jnp.broadcast_arrays(cd, ck)
    d, k, s = best(cd.reshape(b, -1), ck.reshape(b, -1))
    step_d, step_k = step_d / 2.0, step_k ** 0.5
  return d, k, s


__all__ = ["estimate_camera", "explained_residual", "invert_render", "total_variation"]
