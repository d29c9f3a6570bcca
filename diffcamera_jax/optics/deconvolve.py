"""Wiener deconvolution of a photo by disk apertures of several radii: a deconvolution bank.

A defocused region of a photo is (in linear light) the sharp scene convolved with the aperture at
that region's circle of confusion. Deconvolving the whole photo by a disk of radius r restores the
regions whose CoC is r and rings elsewhere; a bank of such deconvolutions, one per radius, gives a
network the sharp candidates it could not compute from a few convolutions itself, and leaves it
the per-pixel choice (which radius applies where), which is what it can learn quickly.

Pure JAX (jit, vmap, grad). The FFT runs over the photo's mirror extension (`mirror_extend`), the
symmetric padding the renderer's blurs use, so the deconvolution does not ring from the borders.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from diffcamera_jax.optics.aperture import Aperture, coverage_kernel, kernel_size
from diffcamera_jax.optics.render import from_linear, to_linear


def wiener_bank(image: jax.Array, radii: Sequence[float], *, gamma: float = 2.2,
                regularization: float = 3e-3) -> jax.Array:
  """Deconvolutions of `image` `[B, H, W, 3]` (sRGB, [0, 1]) by disks of each radius (pixels).

  Returns `[B, H, W, len(radii), 3]` in [0, 1]: for radius r, the Wiener estimate
  `conj(K) X / (|K|^2 + regularization)` in linear light (K the disk's transfer function), clipped
  and re-encoded. `regularization` is the noise-to-signal ratio: larger rings less on noisy photos
  and restores less.
  """
  if image.ndim != 4 or image.shape[-1] != 3:
    raise ValueError(f"wiener_bank: image must be [B, H, W, 3], got {image.shape}")
  if not radii or min(radii) <= 0:
    raise ValueError(f"wiener_bank: radii must be positive, got {tuple(radii)}")
  _, height, width, _ = image.shape
  planes = jnp.moveaxis(to_linear(jnp.clip(image, 0.0, 1.0), gamma), -1, 1)  # [B, 3, H, W]
  planes = mirror_extend(planes)  # [B, 3, 2H, 2W]: periodic and continuous
  shape = planes.shape[-2:]
  spectrum = jnp.fft.rfft2(planes)  # [B, 3, 2H, W + 1]
  size = min(kernel_size(max(radii)), 2 * min(height, width) - 1)
  size -= 1 - size % 2  # odd, so the kernel has a centre pixel
  kernels = coverage_kernel(Aperture(), jnp.asarray(radii, jnp.float32), size)  # [R, k, k]
  transfer = jnp.fft.rfft2(centred_kernels(kernels, shape))  # [R, 2H, W + 1]
  wiener = jnp.conj(transfer) / (jnp.square(jnp.abs(transfer)) + regularization)
  restored = jnp.fft.irfft2(spectrum[:, None] * wiener[None, :, None], s=shape)
  restored = restored[..., :height, :width]  # [B, R, 3, H, W]
  out = from_linear(jnp.clip(restored, 0.0, 1.0), gamma)
  return jnp.transpose(out, (0, 3, 4, 1, 2))


def mirror_extend(planes: jax.Array) -> jax.Array:
  """`[..., H, W]` -> `[..., 2H, 2W]`: the image and its mirror images (half-sample symmetric).

  The periodic continuation of the result is the image's symmetric extension, continuous across
  every border, so a circular (FFT) deconvolution sees the same extension the renderer blurred
  (`optics.blur` pads half-sample symmetric) and no wrap-around edge. A short pad instead leaves
  an edge at the wrap that the inverse filter, whose support is the whole image, rings from
  everywhere.
  """
  planes = jnp.concatenate([planes, planes[..., ::-1, :]], axis=-2)
  return jnp.concatenate([planes, planes[..., ::-1]], axis=-1)


def centred_kernels(kernels: jax.Array, shape: tuple[int, int]) -> jax.Array:
  """Kernels `[R, k, k]` placed on a `shape` grid with their centre at the origin (wrapped)."""
  half = kernels.shape[-1] // 2
  grid = jnp.zeros(kernels.shape[:-2] + shape, kernels.dtype)
  grid = grid.at[..., :kernels.shape[-2], :kernels.shape[-1]].set(kernels)
  return jnp.roll(grid, (-half, -half), axis=(-2, -1))


__all__ = ["mirror_extend", "wiener_bank"]
