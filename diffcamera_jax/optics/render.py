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

import dataclasses
import functools
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
# Kernels up to this side length are applied as sums of shifted planes, larger ones by FFT.
MAX_DIRECT_SIZE = 5
# Coverage below which an FFT-blurred layer is treated as empty (its values are round-off).
ALPHA_FLOOR = 1e-6
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
  grid = _Grid.make(levels, height, width)
  # Channel-first from here on: [B, 4, H, W], so blurs and resampling run over the minor axes.
  rgb = jnp.moveaxis(rgb, -1, 1)
  rgba = grid.pad(jnp.concatenate([rgb, jnp.ones_like(rgb[:, :1])], axis=1))
  total = None
  for weight, coc in groups:
    coc = jnp.clip(grid.pad(coc), -max_radius, max_radius)
    group = _render_group(rgba, grid.pad(weight), coc, aperture, levels, grid)
    total = group if total is None else _over(group, total)
  total = total[..., :height, :width]
  out = total[:, :3] / jnp.maximum(total[:, 3:], 1e-6)
  return jnp.moveaxis(out, 1, -1)


@dataclasses.dataclass(frozen=True)
class _Grid:
  """The full-resolution working grid: the image padded (half-sample symmetric) by ``margin`` on
  the top and left, and on the bottom and right to ``shape``. ``inner`` ``(h, w)`` is the image
  rounded up to a multiple of the coarsest level's factor (the grid of the coarse levels); the
  margin lets full-resolution kernels read across the borders without wrap-around, and ``shape``
  is FFT-friendly when a full-resolution bin is blurred by FFT (circular convolution on the grid
  then never wraps into the cropped ``inner`` region)."""

  margin: int
  inner: tuple[int, int]
  shape: tuple[int, int]

  @classmethod
  def make(cls, levels, height: int, width: int) -> "_Grid":
    inner = (layers_lib.padded_size(height, levels), layers_lib.padded_size(width, levels))
    if not levels:
      return cls(0, inner, inner)
    sizes = [_kernel_size(levels[0], b) for b in range(levels[0].num_bins)]
    margin = max(sizes) // 2
    shape = tuple(n + 2 * margin for n in inner)
    if max(sizes) > MAX_DIRECT_SIZE:
      shape = tuple(blur_lib.fast_length(n) for n in shape)
    return cls(margin, inner, shape)

  def pad(self, x: jax.Array) -> jax.Array:
    """Pads ``x`` ``[..., H, W]`` (the image's size) onto the grid."""
    after = [s - self.margin - n for s, n in zip(self.shape, x.shape[-2:])]
    widths = ((self.margin, after[0]), (self.margin, after[1]))
    return jnp.pad(x, ((0, 0),) * (x.ndim - 2) + widths, mode="symmetric")

  def crop(self, x: jax.Array) -> jax.Array:
    """The ``inner`` region of ``x`` ``[..., *shape]``."""
    m, (h, w) = self.margin, self.inner
    return x[..., m:m + h, m:m + w]


def _kernel_size(level, b: int) -> int:
  """Side length of the kernels of bin ``b`` of ``level`` (on the level's grid)."""
  return aperture_lib.support_size(level.edges[b + 1] / level.factor)


def _over(top: jax.Array, bottom: jax.Array) -> jax.Array:
  """Premultiplied RGBA ``top`` over ``bottom`` (channel axis -3, alpha last)."""
  return top + (1.0 - jnp.clip(top[..., 3:, :, :], 0.0, 1.0)) * bottom


def _mask(level, b: int, back: bool, weight, magnitude, behind) -> jax.Array:
  """Weight of the pixels in bin ``b`` of ``level`` on the ``back`` (s < 0) or front side."""
  return _masks([(level, b, back)], weight, magnitude, behind)[:, 0]


def _masks(layers, weight, magnitude, behind) -> jax.Array:
  """Stacked `_mask` of ``layers`` ``[(level, bin, back), ...]``: ``[B, len(layers), H, W]``.

  Written as one broadcast comparison against per-layer constants (no concatenation), so that it
  fuses into whatever reads it.
  """
  const = lambda v: jnp.asarray(v, magnitude.dtype)[None, :, None, None]
  lo = const([level.edges[b] for level, b, _ in layers])
  hi = const([level.edges[b + 1] for level, b, _ in layers])
  back = const([float(back) for _, _, back in layers])
  mag, behind = magnitude[:, None], behind[:, None]
  side = back * behind + (1.0 - back) * (1.0 - behind)
  return weight[:, None] * side * ((mag >= lo) & (mag < hi)).astype(magnitude.dtype)


def _render_group(rgba, weight, coc, aperture, levels, grid) -> jax.Array:
  """Premultiplied RGBA ``[B, 4, h, w]`` (``grid.inner``) of one depth-ordered group of layers.

  ``rgba``, ``weight`` and ``coc`` lie on the full ``grid``.
  """
  magnitude = jnp.abs(coc)
  behind = (coc < 0).astype(rgba.dtype)
  if not levels:
    return grid.crop(rgba * weight[:, None])
  centre = grid.crop(rgba * (weight * (magnitude < levels[0].edges[0]))[:, None])
  inner = [grid.crop(x) for x in (weight, magnitude, behind)]
  ap = Aperture(aperture.blades[:, None], aperture.rotation[:, None])
  back = front = None
  if len(levels) > 1:
    coarse = lambda: _render_coarse(rgba, weight, magnitude, behind, levels[1:], inner, ap, grid)
    back, front = _unless_empty(_occupied(levels[1], [0], inner, above=True), coarse)
    back, front = pyramid.upsample2(back), pyramid.upsample2(front)
  backs, fronts = _blur_full(levels[0], rgba, weight, magnitude, behind, inner, ap, grid)
  back, front = _composite_level(levels[0], backs, fronts, back, front)
  return _over(front, _over(centre, back))


def _composite_level(level, backs, fronts, back, front):
  """Composites a level's layers over ``back`` / under ``front`` (None: nothing yet)."""
  for b in reversed(range(level.num_bins)):  # |s| descending: back far to near, front near to far
    back = backs[b] if back is None else _over(backs[b], back)
    front = fronts[b] if front is None else _over(front, fronts[b])
  return back, front


def _render_coarse(rgba, weight, magnitude, behind, levels, inner, ap, grid):
  """The back and front stacks of the coarse ``levels``, composited coarse to fine, on the grid of
  the first of them. ``rgba``, ``weight``, ``magnitude`` and ``behind`` lie on the full ``grid``;
  ``inner`` are the last three on ``grid.inner``.

  The layers are decimated in a cascade from full resolution, so each pixel is read once: a level
  takes its own layers from the stack of the levels from it on, one step finer, and passes the
  rest on, decimated once more. The first step reads the grid's symmetric margin, which equals
  the edge clamping of `pyramid.decimate`. Each step runs only when a pixel needs it, and
  `_unless_empty` materialises it (fused into its several readers, it would be recomputed).
  """
  def layers(levels):
    return [(level, b, back) for level in levels for back in (True, False)
            for b in range(level.num_bins)]

  def first(levels):  # the planes are formed inside the filter: never materialised
    planes = rgba[:, None] * _masks(layers(levels), weight, magnitude, behind)[:, :, None]
    return pyramid.decimate_window(planes, (grid.margin,) * 2, grid.inner)

  blurred, rest = [], None
  for i, level in enumerate(levels):
    count = 2 * level.num_bins
    own_step = (lambda: first(levels[:1])) if i == 0 else (
        lambda rest=rest: pyramid.decimate(rest[:, :count], 2))
    own = _unless_empty(_occupied(level, list(range(level.num_bins)), inner), own_step)
    blurred.append(_blur_coarse(level, own, inner, ap))
    if i + 1 < len(levels):
      rest_step = (lambda: first(levels[1:])) if i == 0 else (
          lambda rest=rest: pyramid.decimate(rest[:, count:], 2))
      rest = _unless_empty(_occupied(levels[i + 1], [0], inner, above=True), rest_step)
  back = front = None
  for level, (backs, fronts) in zip(reversed(levels), reversed(blurred)):
    if back is not None:
      back, front = pyramid.upsample2(back), pyramid.upsample2(front)
    back, front = _composite_level(level, backs, fronts, back, front)
  return back, front


def _radius(level, b, back, inner) -> jax.Array:
  """Mean ``|s|`` ``[B]`` of the pixels in a layer, shrunk for the resampling at coarse levels."""
  weight, magnitude, behind = inner
  mask = _mask(level, b, back, weight, magnitude, behind)
  radius = jnp.sum(mask * magnitude, axis=(1, 2)) / jnp.maximum(jnp.sum(mask, axis=(1, 2)), _TINY)
  # Decimating and re-upsampling widen the blur by ~RESAMPLING_VARIANCE * (f^2 - 1) px^2 per
  # axis; a disk of radius r has variance r^2 / 4, so shrink r to keep the second moment.
  spread = 4.0 * RESAMPLING_VARIANCE * (level.factor ** 2 - 1)
  return jnp.sqrt(jnp.maximum(radius ** 2 - spread, 1e-12)) / level.factor  # finite grad


def _kernels(level, bins, inner, ap, size, sides=(True, False)) -> jax.Array:
  """Coverage kernels ``[B, len(sides) len(bins), size, size]`` of the layers of ``bins`` on the
  ``sides`` (True: back), side-major."""
  radii = [_radius(level, b, back, inner) for back in sides for b in bins]
  return aperture_lib.coverage_kernel(ap, jnp.stack(radii, axis=1), size)


def _occupied(level, bins, inner, back=None, above: bool = False) -> jax.Array:
  """Whether any pixel of the batch falls in ``bins`` of ``level`` on the ``back`` side (True),
  the front (False) or either (None); with ``above``, in those bins or any larger ``|s|``."""
  weight, magnitude, behind = inner
  lo, hi = level.edges[min(bins)], level.edges[max(bins) + 1]
  inside = (weight > 0) & (magnitude >= lo)
  if not above:
    inside &= magnitude < hi
  if back is not None:
    inside &= (behind > 0.5) if back else (behind < 0.5)
  return jnp.any(inside)


def _unless_empty(occupied: jax.Array, blur) -> jax.Array:
  """``blur()``, or zeros of its shape when no pixel is ``occupied``.

  Besides skipping empty layers, the conditional materialises the blurred layers, so that the
  compositing that reads each of them at several channels does not recompute their blur.
  """
  shape = jax.eval_shape(blur)
  zeros = lambda: jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shape)
  return jax.lax.cond(occupied, blur, zeros)


def _blur_full(level, rgba, weight, magnitude, behind, inner, ap, grid):
  """Blurs the full-resolution layers, read straight from the padded ``grid``.

  Layers whose kernels fit in ``MAX_DIRECT_SIZE`` pixels are blurred as sums of shifted planes,
  the others by FFT convolution over the whole grid; a layer no pixel of the batch falls in is
  skipped. Returns ``(backs, fronts)``, lists over bins of ``[B, 4, h, w]`` on ``grid.inner``.
  """
  nb = level.num_bins
  backs, fronts = [None] * nb, [None] * nb
  for back in (True, False):
    for b in range(nb):  # one layer at a time, so that empty layers are skipped
      size = _kernel_size(level, b)

      def blur(b=b, back=back, size=size):
        planes = rgba[:, None] * _masks([(level, b, back)], weight, magnitude, behind)[:, :, None]
        kernel = _kernels(level, [b], inner, ap, size, sides=(back,))
        if size <= MAX_DIRECT_SIZE:
          return _direct(planes, kernel, grid)
        return _fft_on_grid(planes, kernel)  # cropped by the reader, saving a copy

      out = _unless_empty(_occupied(level, [b], inner, back), blur)
      if size > MAX_DIRECT_SIZE:
        out = _drop_round_off(grid.crop(out))
      (backs if back else fronts)[b] = out[:, 0]
  return backs, fronts


def _drop_round_off(layers: jax.Array) -> jax.Array:
  """Zeroes FFT-blurred layers ``[B, L, 4, h, w]`` where their coverage is below ``ALPHA_FLOOR``.

  Far from its pixels a layer's FFT blur holds only float32 round-off (~1e-8). Composited over
  dark in-focus pixels, that noise would be magnified by the gamma encoding; the light dropped
  here is below ``ALPHA_FLOOR`` of the layer's.
  """
  return jnp.where(layers[:, :, 3:] > ALPHA_FLOOR, layers, 0.0)


def _direct(planes, kernel, grid) -> jax.Array:
  """Sum of ``k^2`` shifted planes (padded ``grid``) weighted by ``kernel`` ``[B, L, k, k]``."""
  half = kernel.shape[-1] // 2
  m, (h, w) = grid.margin, grid.inner
  out = None
  for i in range(2 * half + 1):
    for j in range(2 * half + 1):
      # the source at p lands on p + (i - half, j - half)
      y, x = m + half - i, m + half - j
      term = kernel[:, :, i, j, None, None, None] * planes[..., y:y + h, x:x + w]
      out = term if out is None else out + term
  return out


def _fft_on_grid(planes, kernel) -> jax.Array:
  """Circular convolution of ``planes`` ``[B, L, C, *shape]`` with centred kernels ``[B, L, k, k]``."""
  shape = planes.shape[-2:]
  size = kernel.shape[-1]
  placed = jnp.pad(kernel, ((0, 0), (0, 0), (0, shape[0] - size), (0, shape[1] - size)))
  placed = jnp.roll(placed, (-(size // 2), -(size // 2)), axis=(2, 3))
  spectrum = jnp.fft.rfft2(planes) * jnp.fft.rfft2(placed)[:, :, None]
  return jnp.fft.irfft2(spectrum, s=shape)


def _blur_coarse(level, planes, inner, ap):
  """Blurs a coarse level's decimated layers ``[B, 2 nb, 4, h, w]`` (back bins, then front)."""
  nb = level.num_bins
  size = max(_kernel_size(level, b) for b in range(nb))
  out = []
  for back in (True, False):  # one layer at a time, so that empty layers are skipped
    for b in range(nb):
      index = (0 if back else nb) + b
      blur = lambda b=b, back=back, index=index: blur_lib.fft_convolve(
          planes[:, index:index + 1], _kernels(level, [b], inner, ap, size, sides=(back,)))
      out.append(_drop_round_off(_unless_empty(_occupied(level, [b], inner, back), blur))[:, 0])
  return out[:nb], out[nb:]


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
