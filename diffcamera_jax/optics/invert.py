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


__all__ = ["invert_render", "total_variation"]
