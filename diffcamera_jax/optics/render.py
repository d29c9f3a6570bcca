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
    # the coarse levels' first decimation reads one pixel beyond the inner region
    margin = max(max(sizes) // 2, 1 if len(levels) > 1 else 0)
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


def _layers(level) -> list[tuple[int, bool]]:
  """The ``(bin, back)`` layers of ``level``: back bins first, then front bins."""
  return [(b, back) for back in (True, False) for b in range(level.num_bins)]


def _masks(level, layers, weight, magnitude, behind) -> jax.Array:
  """Weights ``[B, len(layers), H, W]`` of the pixels of full-resolution ``layers`` ``[(bin, back)]``.

  Written as one broadcast comparison against per-layer constants (no concatenation), so that it
  fuses into whatever reads it.
  """
  const = lambda v: jnp.asarray(v, magnitude.dtype)[None, :, None, None]
  lo = const([level.edges[b] for b, _ in layers])
  hi = const([level.edges[b + 1] for b, _ in layers])
  back = const([float(back) for _, back in layers])
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
  level = levels[0]
  inner = [grid.crop(x) for x in (weight, magnitude, behind)]
  ap = Aperture(aperture.blades[:, None], aperture.rotation[:, None])
  # One pass over the image gathers every full-resolution layer's pixel weight and mean |s|.
  masks = _masks(level, _layers(level), *inner)
  count = jnp.sum(masks, axis=(2, 3))
  radius = jnp.sum(masks * inner[1][:, None], axis=(2, 3)) / jnp.maximum(count, _TINY)
  back = front = None
  if len(levels) > 1:
    needed = jnp.any((inner[0] > 0) & (inner[1] >= levels[1].edges[0]))
    coarse = lambda: tuple(pyramid.upsample2(x) for x in _render_coarse(
        rgba, weight, magnitude, behind, levels[1:], ap, grid))
    back, front = _unless_empty(needed, coarse)
  backs, fronts = _blur_full(level, rgba, weight, magnitude, behind, count, radius, ap, grid)
  back, front = _composite_level(level, backs, fronts, back, front)
  return _over(front, _over(centre, back))


def _composite_level(level, backs, fronts, back, front):
  """Composites a level's layers over ``back`` / under ``front`` (None: nothing yet)."""
  for b in reversed(range(level.num_bins)):  # |s| descending: back far to near, front near to far
    back = backs[b] if back is None else _over(backs[b], back)
    front = fronts[b] if front is None else _over(front, fronts[b])
  return back, front


def _render_coarse(rgba, weight, magnitude, behind, levels, ap, grid):
  """The back and front stacks of the coarse ``levels``, composited coarse to fine, on the grid of
  the first of them. ``rgba``, ``weight``, ``magnitude`` and ``behind`` lie on the full ``grid``.

  The pyramid carries, per side (back, front), the premultiplied colour and coverage of the pixels
  not yet assigned to a layer, and their coverage-weighted ``|s|``: 2 x 5 planes, whatever the
  number of layers. A level splits its stack into its bins by the mean ``|s|`` of each of its
  pixels, and decimates the rest for the next level. A coarse pixel that mixes source pixels of
  two bins goes to the bin of their mean (see docs/optics.md).
  """
  stack = _first_decimation(rgba, weight, magnitude, behind, levels[0].edges[0], grid)
  blurred = []
  for i, level in enumerate(levels):
    alpha, weighted = stack[:, :, 3], stack[:, :, 4]
    mean = weighted / jnp.maximum(alpha, _TINY)
    last = i + 1 == len(levels)
    backs, fronts = [], []
    for b, back in _layers(level):
      side = 0 if back else 1
      # the first bin also takes means just below its edge (round-off), the last all above
      lo = -jnp.inf if b == 0 else level.edges[b]
      hi = jnp.inf if (b == level.num_bins - 1 and last) else level.edges[b + 1]
      mask = ((mean[:, side] >= lo) & (mean[:, side] < hi)).astype(stack.dtype)
      count = jnp.sum(alpha[:, side] * mask, axis=(1, 2))
      radius = jnp.sum(weighted[:, side] * mask, axis=(1, 2)) / jnp.maximum(count, _TINY)
      blur = lambda side=side, mask=mask, radius=radius, b=b: blur_lib.fft_convolve(
          (stack[:, side, :4] * mask[:, None])[:, None],
          _kernel(level, radius, ap, _level_kernel_size(level)))
      out = _drop_round_off(_unless_empty(jnp.any(count > 0), blur))[:, 0]
      (backs if back else fronts).append(out)
    blurred.append((backs, fronts))
    if not last:
      rest = stack * (mean >= level.edges[-1])[:, :, None]
      needed = jnp.any(rest[:, :, 3] > 0)
      stack = _unless_empty(needed, lambda rest=rest: pyramid.decimate(rest, 2))
  back = front = None
  for level, (backs, fronts) in zip(reversed(levels), reversed(blurred)):
    if back is not None:
      back, front = pyramid.upsample2(back), pyramid.upsample2(front)
    back, front = _composite_level(level, backs, fronts, back, front)
  return back, front


def _first_decimation(rgba, weight, magnitude, behind, lo, grid) -> jax.Array:
  """The coarse pyramid's first stack ``[B, 2, 5, h/2, w/2]``: per side (back, front), the
  premultiplied RGBA and coverage-weighted ``|s|`` of the pixels with ``|s| >= lo``, decimated
  once from the full ``grid``.

  Rows are filtered first, reading four row-strided windows of the inputs: the planes are formed
  inside the filter, never at full resolution. The filter reads one pixel of the grid's
  symmetric margin at the borders, which equals the edge clamping of `pyramid.decimate`.
  """
  m, (h, w) = grid.margin, grid.inner
  inputs = jnp.concatenate([rgba, jnp.stack([weight, magnitude, behind], axis=1)], axis=1)

  def planes(x):  # [B, 7, ...] -> [B, 2, 5, ...]
    colour, weight, magnitude, behind = x[:, :4], x[:, 4], x[:, 5], x[:, 6]
    member = weight * (magnitude >= lo).astype(x.dtype)
    sides = jnp.stack([member * behind, member * (1.0 - behind)], axis=1)  # [B, 2, ...]
    values = jnp.concatenate([colour, magnitude[:, None]], axis=1)  # [B, 5, ...]
    return sides[:, :, None] * values[:, None]

  # output row i reads rows m + 2i - 1 + k, k = 0..3, of the grid
  row = lambda k: planes(jax.lax.slice_in_dim(inputs, m - 1 + k, m - 1 + k + h - 1, 2, axis=2))
  rows = (row(0) + 3.0 * row(1) + 3.0 * row(2) + row(3)) * 0.125
  col = lambda k: jax.lax.slice_in_dim(rows, m - 1 + k, m - 1 + k + w - 1, 2, axis=rows.ndim - 1)
  return (col(0) + 3.0 * col(1) + 3.0 * col(2) + col(3)) * 0.125


def _level_kernel_size(level) -> int:
  """One kernel side length for all bins of a coarse level (on its grid)."""
  return max(_kernel_size(level, b) for b in range(level.num_bins))


def _kernel(level, radius, ap, size) -> jax.Array:
  """Coverage kernels ``[B, 1, size, size]`` for layers of mean ``|s|`` ``radius`` ``[B]``, shrunk
  for the resampling at coarse levels."""
  # Decimating and re-upsampling widen the blur by ~RESAMPLING_VARIANCE * (f^2 - 1) px^2 per
  # axis; a disk of radius r has variance r^2 / 4, so shrink r to keep the second moment.
  spread = 4.0 * RESAMPLING_VARIANCE * (level.factor ** 2 - 1)
  reduced = jnp.sqrt(jnp.maximum(radius ** 2 - spread, 1e-12)) / level.factor  # finite grad
  return aperture_lib.coverage_kernel(ap, reduced[:, None], size)


def _unless_empty(occupied: jax.Array, blur) -> jax.Array:
  """``blur()``, or zeros of its shape when no pixel is ``occupied``.

  Besides skipping empty layers, the conditional materialises the blurred layers, so that the
  compositing that reads each of them at several channels does not recompute their blur.
  """
  shape = jax.eval_shape(blur)
  zeros = lambda: jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shape)
  return jax.lax.cond(occupied, blur, zeros)


def _blur_full(level, rgba, weight, magnitude, behind, count, radius, ap, grid):
  """Blurs the full-resolution layers, read straight from the padded ``grid``.

  ``count`` and ``radius`` ``[B, L]`` are the pixel weight and mean ``|s|`` of the layers
  (`_layers` order). Layers whose kernels fit in ``MAX_DIRECT_SIZE`` pixels are blurred as sums
  of shifted planes, the others by FFT convolution over the whole grid; a layer no pixel of the
  batch falls in is skipped. Returns ``(backs, fronts)``, lists over bins of ``[B, 4, h, w]`` on
  ``grid.inner``.
  """
  nb = level.num_bins
  backs, fronts = [None] * nb, [None] * nb
  for index, (b, back) in enumerate(_layers(level)):  # one at a time: empty layers are skipped
    size = _kernel_size(level, b)

    def blur(b=b, back=back, size=size, index=index):
      planes = rgba[:, None] * _masks(level, [(b, back)], weight, magnitude, behind)[:, :, None]
      kernel = _kernel(level, radius[:, index], ap, size)
      if size <= MAX_DIRECT_SIZE:
        return _direct(planes, kernel, grid)
      return _fft_on_grid(planes, kernel)  # cropped by the reader, saving a copy

    out = _unless_empty(jnp.any(count[:, index] > 0), blur)
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
  return blur_lib.circular_convolve(planes, kernel)


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
