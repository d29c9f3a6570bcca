"""Layered defocus renderer: scatter semantics with partial occlusion, in linear light.

The signed circle of confusion ``s`` is split into depth layers (hard bins in ``s``). Each layer's
premultiplied colour and its coverage (alpha) are blurred by the aperture kernel whose radius is the
layer's mean ``|s|``, so a scene at one depth is rendered exactly. Layers are composited back to
front (far = most negative ``s`` first) with the blurred alpha, and the result is divided by the
accumulated alpha. See ``docs/optics.md`` for the formulation and what is approximated.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp

from diffcamera_jax.optics import aperture as aperture_lib
from diffcamera_jax.optics import blur as blur_lib
from diffcamera_jax.optics.aperture import Aperture
from diffcamera_jax.optics.focus import per_example, signed_coc

DEFAULT_MAX_RADIUS = 64.0
# Layers: |s| < CENTRE_HALF_WIDTH is the in-focus layer; beyond it bins grow geometrically.
CENTRE_HALF_WIDTH = 0.5
LAYER_RATIO = 2.0 ** 0.25
_TINY = 1e-12


def to_linear(image: jax.Array, gamma: float) -> jax.Array:
  """Power-law decode ``image ** gamma`` (clipped at 0); identity for ``gamma == 1``."""
  if gamma == 1.0:
    return image
  return jnp.maximum(image, 0.0) ** gamma


def from_linear(image: jax.Array, gamma: float) -> jax.Array:
  """Inverse of `to_linear`, with a finite gradient at 0."""
  if gamma == 1.0:
    return image
  positive = image > _TINY
  safe = jnp.where(positive, image, 1.0)
  return jnp.where(positive, safe ** (1.0 / gamma), 0.0)


@functools.lru_cache(maxsize=None)
def layer_bins(max_radius: float) -> tuple[tuple[float, float], ...]:
  """Signed-CoC bins ``(lo, hi)`` ordered far to near; they tile ``[-max_radius, max_radius]``."""
  if max_radius <= 0:
    raise ValueError(f"max_radius must be positive, got {max_radius}")
  edges = [CENTRE_HALF_WIDTH]
  while edges[-1] < max_radius:
    edges.append(edges[-1] * LAYER_RATIO)
  edges[-1] = max(edges[-1], max_radius) + 1.0  # clipped CoCs land in the outermost bin
  front = [(lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]
  back = [(-hi, -lo) for lo, hi in reversed(front)]
  return tuple(back) + ((-CENTRE_HALF_WIDTH, CENTRE_HALF_WIDTH),) + tuple(front)


def composite_layers(
    rgb: jax.Array,
    groups: Sequence[tuple[jax.Array, jax.Array]],
    aperture: Aperture,
    max_radius: float,
) -> jax.Array:
  """Renders linear ``rgb`` ``[B, H, W, 3]`` from ``groups`` of ``(weight, signed_coc)`` ``[B, H, W]``.

  Groups are composited in order (each over the previous); within a group the layers go far to
  near. ``weight`` selects the pixels of a group (they sum to 1 over groups).
  """
  bins = jnp.asarray(layer_bins(max_radius), rgb.dtype)
  support = aperture_lib.kernel_size(max_radius)

  def add_layer(carry, bounds, weight, coc):
    colour, alpha = carry
    member = weight * ((coc >= bounds[0]) & (coc < bounds[1])).astype(rgb.dtype)
    count = jnp.sum(member, axis=(1, 2))
    radius = jnp.sum(member * jnp.abs(coc), axis=(1, 2)) / jnp.maximum(count, _TINY)
    kernel = aperture_lib.coverage_kernel(aperture, radius, support)
    planes = jnp.concatenate([rgb * member[..., None], member[..., None]], axis=-1)
    blurred = blur_lib.convolve(planes, kernel)
    layer_colour, layer_alpha = blurred[..., :3], blurred[..., 3]
    colour = layer_colour + (1.0 - layer_alpha)[..., None] * colour
    alpha = layer_alpha + (1.0 - layer_alpha) * alpha
    return (colour, alpha), None

  carry = (jnp.zeros_like(rgb), jnp.zeros(rgb.shape[:-1], rgb.dtype))
  for weight, coc in groups:
    coc = jnp.clip(coc, -max_radius, max_radius)
    step = functools.partial(add_layer, weight=weight, coc=coc)
    carry, _ = jax.lax.scan(step, carry, bins)
  colour, alpha = carry
  return colour / jnp.maximum(alpha, 1e-6)[..., None]


def _as_batch(image: jax.Array, disparity: jax.Array) -> tuple[jax.Array, jax.Array, bool]:
  image = jnp.asarray(image, jnp.float32)
  disparity = jnp.asarray(disparity, jnp.float32)
  if image.ndim not in (3, 4) or image.shape[-1] != 3:
    raise ValueError(f"image must be [H, W, 3] or [B, H, W, 3], got shape {image.shape}")
  if disparity.shape != image.shape[:-1]:
    raise ValueError(f"disparity shape {disparity.shape} does not match image shape {image.shape}")
  batched = image.ndim == 4
  if not batched:
    image, disparity = image[None], disparity[None]
  return image, disparity, batched


def _batched_aperture(aperture: Aperture, batch: int) -> Aperture:
  blades = jnp.broadcast_to(jnp.asarray(aperture.blades, jnp.int32), (batch,))
  rotation = jnp.broadcast_to(jnp.asarray(aperture.rotation, jnp.float32), (batch,))
  return Aperture(blades, rotation)


def _batched_scalar(value, batch: int, name: str) -> jax.Array:
  value = jnp.asarray(value, jnp.float32)
  if value.ndim > 1 or (value.ndim == 1 and value.shape[0] != batch):
    raise ValueError(f"{name} must be a scalar or [B] with B={batch}, got shape {value.shape}")
  return jnp.broadcast_to(value, (batch,))


def render(
    image: jax.Array,
    disparity: jax.Array,
    focus_disparity,
    blur,
    *,
    aperture: Aperture = Aperture(),
    gamma: float = 2.2,
    max_radius: float = DEFAULT_MAX_RADIUS,
) -> jax.Array:
  """Renders ``image`` focused at ``focus_disparity`` with CoC radius ``blur * |D - d_f|`` pixels.

  ``image`` is ``[H, W, 3]`` or ``[B, H, W, 3]`` with ``disparity`` ``[H, W]`` / ``[B, H, W]``;
  ``focus_disparity``, ``blur`` and the aperture fields are scalars or ``[B]``. ``gamma`` decodes
  the image to linear light before blurring and re-encodes after (1.0: render values as given).
  CoC radii beyond ``max_radius`` (static) are clipped. Returns an image of the input's shape.
  """
  image, disparity, batched = _as_batch(image, disparity)
  batch = image.shape[0]
  d_f = _batched_scalar(focus_disparity, batch, "focus_disparity")
  k = _batched_scalar(blur, batch, "blur")
  coc = signed_coc(disparity, d_f, k)
  out = composite_layers(
      to_linear(image, gamma), [(jnp.ones_like(coc), coc)], _batched_aperture(aperture, batch),
      float(max_radius))
  out = from_linear(out, gamma)
  return out if batched else out[0]


def render_multifocus(
    image: jax.Array,
    disparity: jax.Array,
    focus_disparity_1,
    focus_disparity_2,
    blur,
    *,
    aperture: Aperture = Aperture(),
    gamma: float = 2.2,
    max_radius: float = DEFAULT_MAX_RADIUS,
) -> jax.Array:
  """Renders the image in which both focal planes are sharp: CoC ``blur * min(|D-d1|, |D-d2|)``.

  Each pixel is defocused relative to its nearer focal plane (ties go to plane 1, matching the
  stacking mask ``|D - d1| <= |D - d2|``). Depth order is kept: the pixels nearer the farther
  plane are all behind those nearer the closer plane, so the two groups are composited in turn.
  Arguments as in `render`.
  """
  image, disparity, batched = _as_batch(image, disparity)
  batch = image.shape[0]
  d1 = _batched_scalar(focus_disparity_1, batch, "focus_disparity_1")
  d2 = _batched_scalar(focus_disparity_2, batch, "focus_disparity_2")
  k = _batched_scalar(blur, batch, "blur")
  nearer_1 = (jnp.abs(disparity - per_example(d1)) <= jnp.abs(disparity - per_example(d2)))
  nearer_1 = nearer_1.astype(jnp.float32)
  group_1 = (nearer_1, signed_coc(disparity, d1, k))
  group_2 = (1.0 - nearer_1, signed_coc(disparity, d2, k))
  plane_1_behind = per_example(d1 <= d2)
  back = jax.tree.map(lambda a, b: jnp.where(plane_1_behind, a, b), group_1, group_2)
  front = jax.tree.map(lambda a, b: jnp.where(plane_1_behind, b, a), group_1, group_2)
  out = composite_layers(
      to_linear(image, gamma), [back, front], _batched_aperture(aperture, batch), float(max_radius))
  out = from_linear(out, gamma)
  return out if batched else out[0]
