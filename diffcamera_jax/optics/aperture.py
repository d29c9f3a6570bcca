"""Aperture shapes and their anti-aliased coverage kernels.

An aperture is a disk (``blades == 0``) or a regular ``n``-gon (``blades >= 3``) whose vertices lie
on the circle of confusion, rotated by ``rotation`` radians. Both fields may be Python numbers or
JAX arrays (scalars or ``[B]``), so per-example apertures work under ``jit`` and ``vmap``: the shape
is selected with ``jnp.where``, never with Python control flow.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Union

import jax
import jax.numpy as jnp

ArrayLike = Union[jax.Array, float, int]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Aperture:
  """Bokeh shape: ``blades`` 0 is a disk, ``n >= 3`` a regular polygon rotated by ``rotation``."""

  blades: ArrayLike = 0
  rotation: ArrayLike = 0.0


def signed_distance(aperture: Aperture, dx: jax.Array, dy: jax.Array, radius: jax.Array) -> jax.Array:
  """Distance (pixels) from ``(dx, dy)`` to the aperture edge; positive inside.

  For the polygon this is the distance to the edge whose angular sector holds the point, i.e. the
  apothem minus the projection on that edge's normal: exactly the polar formula
  ``rho <= r cos(pi/n) / cos(((theta - rot) mod 2pi/n) - pi/n)`` rewritten as a distance, which
  keeps the coverage smooth (and differentiable) in ``radius``.
  """
  blades = jnp.asarray(aperture.blades)
  rotation = jnp.asarray(aperture.rotation, dx.dtype)
  rho = jnp.sqrt(dx * dx + dy * dy)
  disk = radius - rho
  shape = jnp.broadcast_shapes(disk.shape, blades.shape, rotation.shape)

  def polygon():
    n = jnp.maximum(blades, 3).astype(dx.dtype)
    theta = jnp.arctan2(dy, dx)
    sector = 2.0 * jnp.pi / n
    psi = jnp.mod(theta - rotation, sector) - sector / 2.0
    return jnp.broadcast_to(radius * jnp.cos(jnp.pi / n) - rho * jnp.cos(psi), shape)

  # the polygon's angles cost ~10x the disk's distance: computed only when some aperture needs them
  polygon = jax.lax.cond(jnp.any(blades != 0), polygon, lambda: jnp.broadcast_to(disk, shape))
  return jnp.where(blades == 0, disk, polygon)


def kernel_size(max_radius: float) -> int:
  """Odd side length of a kernel grid holding every aperture of radius <= ``max_radius``."""
  return 2 * int(math.ceil(max_radius + 0.5)) + 1


def support_size(max_radius: float, supersample: int = 4) -> int:
  """Odd side length of the smallest grid outside which `coverage_kernel` is exactly zero.

  A sub-pixel has weight only where the signed distance exceeds ``-0.5 / supersample``. For an
  n-gon (n >= 3) outside the circle, the distance is at most ``(r - rho) cos(pi / n) <= (r - rho) / 2``,
  so only sub-pixels with ``rho < r + 1 / supersample`` count; the nearest sub-pixel centre of the
  pixel column ``h`` is at ``h - 0.5 + 0.5 / supersample``. Valid for radii below ``max_radius``.
  """
  half = int(math.ceil(max_radius + 0.5 + 0.5 / supersample)) - 1
  return 2 * max(half, 0) + 1


def coverage_kernel(
    aperture: Aperture, radius: jax.Array, size: int, *, supersample: int = 4
) -> jax.Array:
  """Normalised area-coverage kernel of the aperture with circumradius ``radius`` (pixels).

  Each pixel's weight is the fraction of its area inside the aperture, estimated on a
  ``supersample x supersample`` grid of sub-pixels whose edge crossing is a linear ramp one
  sub-pixel wide (so the weight is smooth in ``radius``). The centre pixel keeps a 1e-7 floor so
  that radius 0 is the identity. Returns ``[..., size, size]`` for ``radius`` of shape ``[...]``;
  ``aperture`` fields broadcast against ``radius``.
  """
  if size % 2 != 1:
    raise ValueError(f"size must be odd, got {size}")
  radius = jnp.asarray(radius, jnp.float32)
  half = size // 2
  sub = (jnp.arange(supersample, dtype=jnp.float32) + 0.5) / supersample - 0.5
  pix = jnp.arange(-half, half + 1, dtype=jnp.float32)
  coords = (pix[:, None] + sub[None, :]).reshape(-1)  # [size * supersample]
  dy, dx = coords[:, None], coords[None, :]
  expand = lambda v: jnp.asarray(v)[..., None, None]
  ap = Aperture(expand(aperture.blades), expand(aperture.rotation))
  sd = signed_distance(ap, dx, dy, expand(radius))
  cover = jnp.clip(0.5 + sd * supersample, 0.0, 1.0)
  cover = cover.reshape(*cover.shape[:-2], size, supersample, size, supersample).mean(axis=(-3, -1))
  centre = jnp.zeros((size, size), jnp.float32).at[half, half].set(1e-7)
  cover = cover + centre
  return cover / jnp.sum(cover, axis=(-2, -1), keepdims=True)
