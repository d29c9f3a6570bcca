"""The physics prior: a classical render towards the requested camera that the flow starts from.

With `config.objective.prior` other than "none" the flow generates the change from this prior
rather than from the reference, and the network sees the prior beside the reference
(docs/model.md):
- "render": the reference itself, treated as all-in-focus, rendered with the given disparity at
  the requested focus and blur: exact when the reference is sharp (bokeh), a re-blur of an already
  blurred reference otherwise. Where depth is absent the prior is the reference itself.
- "restore": the restoration stage's sharp estimate of the reference (`models/restorer.py`)
  rendered with the given disparity, or with the stage's own disparity estimate where depth is
  absent: deblur, refocus and bokeh without depth all start from a physical render.

The camera is read back from its features (`camera.camera_features`), so the sampler, the training
step and every caller share one definition of the condition.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from data_pipeline.cameras import blur_pixels
from diffcamera_jax import optics

PRIORS = ("none", "render", "restore")


def camera_from_features(camera: jax.Array, image_hw: tuple[int, int]) -> dict[str, jax.Array]:
  """Inverse of `camera_features`: focus `[B, 2]`, blur `[B]` (pixels), blades and rotation `[B]`.

  The rotation of an n-gon comes back modulo its symmetry 2 pi / n (the same polygon).
  """
  camera = jnp.asarray(camera, jnp.float32)
  inverse_blades = camera[:, 3]
  polygon = inverse_blades > 0
  blades = jnp.where(polygon, jnp.round(3.0 / jnp.where(polygon, inverse_blades, 1.0)), 0.0)
  rotation = jnp.where(polygon, jnp.arctan2(camera[:, 5], camera[:, 4]) / jnp.maximum(blades, 1.0),
                       0.0)
  return {"focus": camera[:, :2], "blur": camera[:, 2] * float(max(image_hw)),
          "blades": blades.astype(jnp.int32), "rotation": rotation}


def prior_max_radius(image_hw: tuple[int, int], blur_range_high: float,
                     blur_reference_size: int) -> float:
  """The renderer's static radius bound for the prior at this image size (twice the training
  range, so requests somewhat beyond it are still rendered, not clipped)."""
  return max(2.0 * blur_pixels(blur_range_high, image_hw, blur_reference_size), 1.0)


def render_prior(reference_image: jax.Array, disparity: jax.Array | None, camera: jax.Array,
                 depth_keep: jax.Array, *, gamma: float, max_radius: float) -> jax.Array:
  """The prior images `[B, H, W, 3]`: `render(reference, disparity, camera)` where `depth_keep`
  `[B]` is set (and disparity given), the reference itself elsewhere. Pure JAX (jit, grad)."""
  if disparity is None:
    return reference_image
  image_hw = reference_image.shape[1:3]
  cam = camera_from_features(camera, image_hw)
  rendered = optics.render(
      reference_image, disparity, optics.focus_disparity(disparity, cam["focus"]), cam["blur"],
      aperture=optics.Aperture(cam["blades"], cam["rotation"]), gamma=gamma, max_radius=max_radius)
  return jnp.where(depth_keep[:, None, None, None], rendered, reference_image)


def restored_prior(sharp: jax.Array, disparity: jax.Array | None, disparity_hat: jax.Array,
                   camera: jax.Array, depth_keep: jax.Array, *, gamma: float,
                   max_radius: float) -> jax.Array:
  """The "restore" prior `[B, H, W, 3]`: `render(sharp, D, camera)`, D the given disparity where
  `depth_keep` is set (and disparity given), the estimate `disparity_hat` elsewhere."""
  if disparity is None:
    disparity = disparity_hat
  else:
    disparity = jnp.where(depth_keep[:, None, None], disparity, disparity_hat)
  return render_prior(jnp.clip(sharp, 0.0, 1.0), disparity, camera,
                      jnp.ones(depth_keep.shape, bool), gamma=gamma, max_radius=max_radius)


__all__ = ["PRIORS", "camera_from_features", "prior_max_radius", "render_prior",
           "restored_prior"]
