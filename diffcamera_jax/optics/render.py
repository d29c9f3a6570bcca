"""Layered defocus renderer: scatter semantics with partial occlusion, in linear light.

The signed circle of confusion ``s`` is split into depth layers (hard bins in ``s``, see
`layers`). Each layer's premultiplied colour and coverage (alpha) are blurred at full resolution
by the aperture kernel whose radius is the layer's mean ``|s|``, so a scene at one depth is
rendered exactly and a bokeh disc keeps a crisp rim at any radius. Layers are composited back to
front (far = most negative ``s`` first) with the blurred alpha, and the result is divided by the
accumulated alpha. Premultiplied "over" is associative, so the far layers and the near layers are
each accumulated from the largest bin down and meet around the in-focus layer. See
``docs/optics.md`` for the formulation and what is approximated.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp

from diffcamera_jax.optics import aperture as aperture_lib
from diffcamera_jax.optics import blur as blur_lib
from diffcamera_jax.optics import layers as layers_lib
from diffcamera_jax.optics.aperture import Aperture
from diffcamera_jax.optics.focus import per_example, signed_coc

DEFAULT_MAX_RADIUS = 150.0
# Kernels up to this side length are applied as sums of shifted planes, larger ones by FFT.
MAX_DIRECT_SIZE = 5
# The margin the tap-summed layers read across (their kernels' largest half-width).
TAP_MARGIN = MAX_DIRECT_SIZE // 2
# Coverage below which an FFT-blurred layer is treated as empty (its values are round-off).
ALPHA_FLOOR = 1e-6
_TINY = 1e-12


def to_linear(image: jax.Array, gamma: float) -> jax.Array:
  """Power-law decode ``image ** gamma`` (0 for ``image <= 0``); identity for ``gamma == 1``."""
  if gamma == 1.0:
    return image
  return _power(image, gamma)


def from_linear(image: jax.Array, gamma: float) -> jax.Array:
  """Inverse of `to_linear`, with a finite gradient at 0."""
  if gamma == 1.0:
    return image
  return _power(image, 1.0 / gamma)


def _power(x: jax.Array, exponent: float) -> jax.Array:
  """``x ** exponent`` for ``x > 1e-12``, else 0, as ``exp(exponent log x)``.

  XLA:CPU lowers ``pow`` to a scalar library call; ``exp`` and ``log`` are vectorised, ~5x faster
  here and within 1e-7 of it. The inner ``where`` keeps the gradient finite at and below 0.
  """
  positive = x > _TINY
  safe = jnp.where(positive, x, 1.0)
  return jnp.where(positive, jnp.exp(exponent * jnp.log(safe)), 0.0)


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
  edges = layers_lib.edges(max_radius)
  # Channel-first from here on: [B, 4, H, W], so blurs run over the minor axes.
  rgb = jnp.moveaxis(rgb, -1, 1)
  rgba = jnp.concatenate([rgb, jnp.ones_like(rgb[:, :1])], axis=1)
  total = None
  for weight, coc in groups:
    coc = jnp.clip(coc, -max_radius, max_radius)
    group = _render_group(rgba, weight, coc, aperture, edges)
    total = group if total is None else _over(group, total)
  out = total[:, :3] / jnp.maximum(total[:, 3:], 1e-6)
  return jnp.moveaxis(out, 1, -1)


def _kernel_size(edges: tuple[float, ...], b: int) -> int:
  """Side length of the kernels of bin ``b`` (every radius below its upper edge fits)."""
  return aperture_lib.support_size(edges[b + 1])


def _over(top: jax.Array, bottom: jax.Array) -> jax.Array:
  """Premultiplied RGBA ``top`` over ``bottom`` (channel axis -3, alpha last)."""
  return top + (1.0 - jnp.clip(top[..., 3:, :, :], 0.0, 1.0)) * bottom


def _layer_statistics(edges, weight, magnitude, behind) -> tuple[jax.Array, jax.Array]:
  """Pixel weight and mean ``|s|`` ``[B, 2, n]`` of every layer (side: back, front; bin), from
  one pass over the image: each pixel's layer index, then one segment sum per statistic."""
  batch = magnitude.shape[0]
  nb = len(edges) - 1
  b = sum((magnitude >= e).astype(jnp.int32) for e in edges[1:-1])
  side = (behind < 0.5).astype(jnp.int32)  # 0: behind the focal plane, 1: in front
  segments = 2 * nb + 1  # the last one collects the in-focus pixels
  ids = jnp.where(magnitude < edges[0], 2 * nb, side * nb + b)
  ids = (ids + segments * jnp.arange(batch)[:, None, None]).reshape(-1)
  total = lambda x: jax.ops.segment_sum(x.reshape(-1), ids, num_segments=batch * segments)
  count = total(weight).reshape(batch, segments)[:, :2 * nb]
  weighted = total(weight * magnitude).reshape(batch, segments)[:, :2 * nb]
  radius = weighted / jnp.maximum(count, _TINY)
  return count.reshape(batch, 2, nb), radius.reshape(batch, 2, nb)


def _render_group(rgba, weight, coc, aperture, edges) -> jax.Array:
  """Premultiplied RGBA ``[B, 4, H, W]`` of one depth-ordered group of layers.

  The back layers are composited far to near and the front layers near to far (each under the
  ones before); the two stacks meet around the in-focus layer. Layers no pixel of the batch falls
  in are skipped, and so are all bins beyond the largest ``|s|`` present.
  """
  if not edges:
    return rgba * weight[:, None]
  magnitude = jnp.abs(coc)
  behind = (coc < 0).astype(rgba.dtype)
  centre = rgba * (weight * (magnitude < edges[0]))[:, None]
  ap = Aperture(aperture.blades[:, None], aperture.rotation[:, None])
  count, radius = _layer_statistics(edges, weight, magnitude, behind)
  _, _, height, width = rgba.shape
  margin = lambda x: _pad(x, TAP_MARGIN, (height + 2 * TAP_MARGIN, width + 2 * TAP_MARGIN))
  rgba, weight, magnitude, behind = map(margin, (rgba, weight, magnitude, behind))
  occupied = jnp.any(count > 0, axis=0)  # [2, n]
  nb = len(edges) - 1
  zeros = lambda: (jnp.zeros_like(centre), jnp.zeros_like(centre))

  def stacks(lo: int):
    """The back and front stacks of bins ``lo`` and beyond."""
    if lo == nb:
      return zeros()

    def occupied_stacks():
      back, front = stacks(lo + 1)
      blur = lambda side: _blur_layer(edges, lo, side == 0, rgba, weight, magnitude, behind,
                                      radius[:, side, lo], ap)
      # the conditionals also materialise each blurred layer, so that the compositing, which
      # reads it at several channels, does not recompute its blur
      back = jax.lax.cond(occupied[0, lo], lambda: _over(blur(0), back), lambda: back)
      front = jax.lax.cond(occupied[1, lo], lambda: _over(front, blur(1)), lambda: front)
      return back, front

    return jax.lax.cond(jnp.any(occupied[:, lo:]), occupied_stacks, zeros)

  back, front = stacks(0)
  return _over(front, _over(centre, back))


def _blur_layer(edges, b, back, rgba, weight, magnitude, behind, radius, ap) -> jax.Array:
  """Premultiplied RGBA ``[B, 4, H, W]`` of layer ``(b, back)`` blurred by the coverage kernel of
  its mean ``|s|`` ``radius`` ``[B]``.

  ``rgba`` ``[B, 4, H + 2m, W + 2m]``, ``weight``, ``magnitude`` and ``behind`` carry a margin of
  ``m = TAP_MARGIN`` pixels (half-sample symmetric). Kernels that fit in ``MAX_DIRECT_SIZE``
  pixels are applied as sums of shifted planes read across that margin. Larger ones are applied by
  FFT: the layer's planes are padded by the kernel's half-width (symmetric, so no light wraps in
  from the opposite edge) and on the bottom and right to an FFT-friendly size, where circular
  convolution never wraps into the image.
  """
  m = TAP_MARGIN
  height, width = rgba.shape[-2] - 2 * m, rgba.shape[-1] - 2 * m
  size = _kernel_size(edges, b)
  half = size // 2
  kernel = aperture_lib.coverage_kernel(ap, radius[:, None], size)

  def planes(start: int, stop_y: int, stop_x: int) -> jax.Array:  # [B, 1, 4, ...]
    window = lambda x: x[..., start:stop_y, start:stop_x]
    mag = window(magnitude)
    in_bin = (mag >= edges[b]) & (mag < edges[b + 1]) & ((window(behind) > 0.5) == back)
    return (window(rgba) * (window(weight) * in_bin)[:, None])[:, None]

  if size <= MAX_DIRECT_SIZE:
    return _direct(planes(m - half, m + height + half, m + width + half), kernel,
                   height, width)[:, 0]
  shape = (blur_lib.fast_length(height + 2 * half), blur_lib.fast_length(width + 2 * half))
  padded = _pad(planes(m, m + height, m + width), half, shape)
  out = blur_lib.circular_convolve(padded, kernel)
  return _drop_round_off(out[..., half:half + height, half:half + width])[:, 0]


def _pad(x: jax.Array, before: int, shape: tuple[int, int]) -> jax.Array:
  """``x`` ``[..., H, W]`` padded by half-sample symmetric reflection: ``before`` pixels on the
  top and left, and on the bottom and right to ``shape``."""
  widths = tuple((before, s - before - n) for s, n in zip(shape, x.shape[-2:]))
  return jnp.pad(x, ((0, 0),) * (x.ndim - 2) + widths, mode="symmetric")


def _drop_round_off(layers: jax.Array) -> jax.Array:
  """Zeroes FFT-blurred layers ``[B, L, 4, H, W]`` where their coverage is below ``ALPHA_FLOOR``.

  Far from its pixels a layer's FFT blur holds only float32 round-off (~1e-8). Composited over
  dark in-focus pixels, that noise would be magnified by the gamma encoding; the light dropped
  here is below ``ALPHA_FLOOR`` of the layer's.
  """
  return jnp.where(layers[:, :, 3:] > ALPHA_FLOOR, layers, 0.0)


def _direct(planes, kernel, height: int, width: int) -> jax.Array:
  """Sum of ``k^2`` shifted planes (padded by ``k // 2``) weighted by ``kernel`` ``[B, L, k, k]``."""
  half = kernel.shape[-1] // 2
  out = None
  for i in range(2 * half + 1):
    for j in range(2 * half + 1):
      # the source at p lands on p + (i - half, j - half)
      y, x = 2 * half - i, 2 * half - j
      term = kernel[:, :, i, j, None, None, None] * planes[..., y:y + height, x:x + width]
      out = term if out is None else out + term
  return out


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
  ``max_radius`` (static) bounds the CoC radius: the layers are planned up to it, and larger
  radii are clipped (`validate` with ``max_radius`` rejects inputs that would be). Returns an
  image of the input's shape.
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
