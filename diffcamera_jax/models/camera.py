"""The camera condition: features of (focus point, blur, aperture) and their projection to tokens.

`camera_features` is a pure function shared by training, sampling and evaluation; `CameraEmbedder`
is the model's learnable side (Fourier features -> linear projection -> camera tokens).
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from diffcamera_jax.models.layers import dense

CAMERA_FEATURES = 6  # x, y, K / max(H, W), 3 / blades, cos(blades * rot), sin(blades * rot)


def camera_features(focus: jnp.ndarray, blur: jnp.ndarray, image_hw: Sequence[int],
                    blades: jnp.ndarray, rotation: jnp.ndarray) -> jnp.ndarray:
  """Camera condition `[B, 6]` from focus `[B, 2]` (x, y in [0, 1]), blur `K` `[B]` (pixels),
  aperture blades `[B]` (0 = disk, n >= 3 = n-gon) and rotation `[B]` (radians).

  The blur is divided by the image's longer side so the feature means the same at any resolution.
  An n-gon is encoded by `3 / n` (1 for a triangle, tending to 0 = the disk as n grows) and by its
  rotation modulo the polygon's symmetry, `(cos n*rot, sin n*rot)`, which is zero for the disk.
  """
  focus, blur = jnp.asarray(focus, jnp.float32), jnp.asarray(blur, jnp.float32)
  blades, rotation = jnp.asarray(blades), jnp.asarray(rotation, jnp.float32)
  if focus.ndim != 2 or focus.shape[-1] != 2:
    raise ValueError(f"camera_features: focus must be [B, 2], got {focus.shape}")
  batch = focus.shape[0]
  for name, value in (("blur", blur), ("blades", blades), ("rotation", rotation)):
    if value.shape != (batch,):
      raise ValueError(f"camera_features: {name} must be [{batch}] like focus, got {value.shape}")
  if len(image_hw) != 2 or min(image_hw) <= 0:
    raise ValueError(f"camera_features: image_hw must be a positive (H, W), got {image_hw}")
  n = blades.astype(jnp.float32)
  polygon = n >= 3
  inverse_blades = jnp.where(polygon, 3.0 / jnp.maximum(n, 3.0), 0.0)
  angle = n * rotation
  return jnp.stack([
      focus[:, 0], focus[:, 1], blur / float(max(image_hw)), inverse_blades,
      jnp.where(polygon, jnp.cos(angle), 0.0), jnp.where(polygon, jnp.sin(angle), 0.0),
  ], axis=-1)


def fourier_features(x: jnp.ndarray, num_frequencies: int) -> jnp.ndarray:
  """`[B, F] -> [B, F * (2 * num_frequencies + 1)]`: x and sin/cos(2 pi 2^k x) for
  k < num_frequencies."""
  freqs = 2.0 * jnp.pi * 2.0 ** jnp.arange(num_frequencies, dtype=jnp.float32)
  angles = (x[..., None] * freqs).reshape(*x.shape[:-1], -1)
  return jnp.concatenate([x, jnp.sin(angles), jnp.cos(angles)], axis=-1)


class CameraEmbedder(nn.Module):
  """Camera features `[B, F]` -> `num_tokens` camera tokens `[B, num_tokens, width]`."""
  num_tokens: int
  width: int
  num_frequencies: int = 8
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, camera: jnp.ndarray) -> jnp.ndarray:
    features = fourier_features(camera.astype(jnp.float32), self.num_frequencies)
    return dense((self.num_tokens, self.width), ("channels", None, "embed"), (None, "embed"),
                 name="proj", dtype=self.dtype, param_dtype=self.param_dtype)(features)
