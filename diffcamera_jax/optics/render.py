"""Layered defocus renderer: scatter semantics with partial occlusion, in linear light.

The signed circle of confusion ``s`` is split into depth layers (hard bins in ``s``, see
`layers`). Each layer's premultiplied colour and coverage (alpha) are blurred by the aperture kernel
whose radius is the layer's mean ``|s|`` (so a scene at one depth is rendered exactly), at a
resolution reduced in proportion to that radius (so the cost does not grow with the blur). Layers
are composited back to front (far = most negative ``s`` first) with the blurred alpha, and the
result is divided by the accumulated alpha. Premultiplied "over" is associative, so the far layers
and the near layers are each accumulated coarse to fine and meet at full resolution around the
in-focus layer. See ``docs/optics.md`` for the formulation and what is approximated.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from diffcamera_jax.optics import aperture as aperture_lib
from diffcamera_jax.optics import blur as blur_lib
from diffcamera_jax.optics import layers as layers_lib
from diffcamera_jax.optics import pyramid
from diffcamera_jax.optics.aperture import Aperture
from diffcamera_jax.optics.focus import per_example, signed_coc

DEFAULT_MAX_RADIUS = 64.0
# Per-axis variance (in units of (f^2 - 1) full-resolution px^2) that the [1,3,3,1] decimation and
# cubic upsampling add to a layer blurred at 1/f resolution; measured, see docs/optics.md.
RESAMPLING_VARIANCE = 0.2
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


def composite_layers(
    rgb: jax.Array,
    groups: Sequence[tuple[jax.Array, jax.Array]],
    aperture: Aperture,
    max_radius: float,
) -> jax.Array:
  """Renders linear ``rgb`` ``[B, H, W, 3]`` from ``groups`` of ``(weight, signed_coc)`` ``[B, H, W]``.

  Groups are composited in order (each over the previous); within a group the layers go far to
  near. ``weight`` selects the pixels of a group (weights sum to 1 over groups). ``aperture``
  fields are ``[B]``. Returns the normalised linear image ``[B, H, W, 3]``.
  """
  levels = layers_lib.plan(max_radius)
  _, height, width, _ = rgb.shape
  pad_h = layers_lib.padded_size(height, levels) - height
  pad_w = layers_lib.padded_size(width, levels) - width
  pad = lambda x: jnp.pad(
      x, ((0, 0), (0, pad_h), (0, pad_w)) + ((0, 0),) * (x.ndim - 3), mode="symmetric")
  rgb = pad(rgb)
  total = None
  for weight, coc in groups:
    coc = jnp.clip(pad(coc), -max_radius, max_radius)
    group = _render_group(rgb, pad(weight), coc, aperture, levels)
    total = group if total is None else _over(group, total)
  total = total[:, :height, :width]
  return total[..., :3] / jnp.maximum(total[..., 3:], 1e-6)


def _over(top: jax.Array, bottom: jax.Array) -> jax.Array:
  """Premultiplied RGBA ``top`` over ``bottom`` (last axis = 4)."""
  return top + (1.0 - jnp.clip(top[..., 3:], 0.0, 1.0)) * bottom


def _render_group(rgb, weight, coc, aperture, levels) -> jax.Array:
  """Premultiplied RGBA ``[B, H, W, 4]`` of one depth-ordered group of layers."""
  magnitude = jnp.abs(coc)
  behind = (coc < 0).astype(rgb.dtype)
  rgba = jnp.concatenate([rgb, jnp.ones_like(rgb[..., :1])], axis=-1)
  members = [_level_members(level, weight, magnitude, behind) for level in levels]
  centre = weight - sum(jnp.sum(m, axis=-1) for m in members)
  blurred, planes, factor = [], None, 1
  for i, (level, member) in enumerate(zip(levels, members)):
    if planes is None:  # the finest level: planes straight from full resolution
      planes = rgba[..., None, :] * jnp.concatenate(members[i:], axis=-1)[..., None]
    planes = pyramid.decimate(planes, level.factor // factor)  # cascade: each pixel read once
    factor = level.factor
    blurred.append(_blur_level(level, planes[..., :member.shape[-1], :], member, magnitude, aperture))
    planes = planes[..., member.shape[-1]:, :]
  back = front = None
  for level, layers in zip(reversed(levels), reversed(blurred)):
    if back is not None:
      back, front = pyramid.upsample2(back), pyramid.upsample2(front)
    else:
      back = front = jnp.zeros_like(layers[..., 0, :])
    for j in range(level.num_bins):
      back = _over(layers[..., j, :], back)
      front = _over(front, layers[..., -1 - j, :])
  centre_rgba = rgba * jnp.maximum(centre, 0.0)[..., None]
  if back is None:
    return centre_rgba
  return _over(front, _over(centre_rgba, back))


def _level_members(level, weight, magnitude, behind) -> jax.Array:
  """Layer weights ``[B, H, W, 2 * nb]``: back bins far to near, then front bins near to far."""
  edges = jnp.asarray(level.edges, magnitude.dtype)
  in_bin = ((magnitude[..., None] >= edges[:-1]) & (magnitude[..., None] < edges[1:]))
  in_bin = in_bin.astype(magnitude.dtype) * weight[..., None]
  back = in_bin[..., ::-1] * behind[..., None]
  return jnp.concatenate([back, in_bin * (1.0 - behind)[..., None]], axis=-1)


def _blur_level(level, planes, member, magnitude, aperture) -> jax.Array:
  """Blurs a level's decimated layer planes ``[B, h, w, L, 4]`` with their aperture kernels."""
  count = jnp.sum(member, axis=(1, 2))
  radius = jnp.einsum("bhwl,bhw->bl", member, magnitude) / jnp.maximum(count, _TINY)
  size = aperture_lib.kernel_size(level.edges[-1] / level.factor)
  ap = Aperture(aperture.blades[:, None], aperture.rotation[:, None])
  # Decimating and re-upsampling widen the blur by ~RESAMPLING_VARIANCE * (f^2 - 1) px^2 per
  # axis; a disk of radius r has variance r^2 / 4, so shrink r to keep the second moment.
  spread = 4.0 * RESAMPLING_VARIANCE * (level.factor ** 2 - 1)
  reduced = jnp.sqrt(jnp.maximum(radius ** 2 - spread, 1e-12)) / level.factor  # finite grad
  kernel = aperture_lib.coverage_kernel(ap, reduced, size)
  return blur_lib.convolve(planes, kernel)


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
