"""Blind identification of a uniform defocus: the disk radius that best explains a photo's spectrum.

A photo defocused as a whole (one depth plane, no depth map needed) is, in linear light, the sharp
scene convolved with one disk. Natural images have a power spectrum close to a power law
`A |f|^-slope`; blurred by a disk of radius r it becomes `|H_r(f)|^2 A |f|^-slope`, with the
disk's rings of near-zero transfer at frequencies fixed by r. `blur_log_likelihood` scores each
candidate radius by the Gaussian likelihood of the photo's luminance spectrum under that model
plus a noise floor, maximised over the prior's scale and slope. A larger radius than the true one
puts zeros where the photo has energy (heavily penalised); a smaller one predicts fine detail the
photo lacks. Radius 0 (the identity) competes like any other, so a sharp photo scores best there.

Both the disk's transfer and the prior are isotropic, so the spectrum is summed in rings of
equal frequency first: the cost is one FFT of the photo and one per candidate kernel, whatever
the number of prior settings. The FFT runs over the mirror extension (`deconvolve.mirror_extend`),
the renderer's symmetric padding, so the borders add no spurious energy. Pure JAX (jit).
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from diffcamera_jax.optics.aperture import Aperture, coverage_kernel, kernel_size
from diffcamera_jax.optics.deconvolve import centred_kernels, mirror_extend
from diffcamera_jax.optics.render import to_linear

SLOPES = (1.5, 2.0, 2.5)  # power-law slopes of the image prior tried for each radius
LOG_SCALES = tuple(-14.0 + 0.5 * i for i in range(33))  # log10 A tried for each radius
LOG_NOISES = tuple(-11.0 + 0.5 * i for i in range(15))  # log10 noise power tried for each radius


def _ring_index(shape: tuple[int, int], bins: int) -> tuple[jax.Array, jax.Array]:
  """Ring number `[H, W//2+1]` of each rfft2 frequency (bins equal steps of |f| up to Nyquist;
  `bins` collects the corners beyond it) and |f| in cycles per pixel."""
  fy = jnp.fft.fftfreq(shape[0])[:, None]
  fx = jnp.fft.rfftfreq(shape[1])[None, :]
  rho = jnp.sqrt(jnp.square(fy) + jnp.square(fx))
  return jnp.minimum(jnp.floor(rho / 0.5 * bins).astype(jnp.int32), bins), rho


def _ring_sum(values: jax.Array, ring: jax.Array, bins: int) -> jax.Array:
  """Sums of `values` `[..., H, W']` over each ring -> `[..., bins + 1]`."""
  lead = values.shape[:-2]
  flat = values.reshape((-1, ring.size)).T  # [HW', lead]
  sums = jax.ops.segment_sum(flat, ring.reshape(-1), num_segments=bins + 1)
  return sums.T.reshape(lead + (bins + 1,))


def blur_log_likelihood(image: jax.Array, radii: Sequence[float], *, gamma: float = 2.2,
                        bins: int = 128) -> jax.Array:
  """Log-likelihood per frequency `[B, R]` of each disk radius (pixels, 0 allowed) for photos
  `[B, H, W, 3]` (sRGB, [0, 1]) blurred as a whole, maximised over the prior (`SLOPES`,
  `LOG_SCALES`) and a white noise floor (`LOG_NOISES`, power per frequency in linear light: the
  sensor's noise, quantisation and what the model does not describe).

  Rings below twice the lowest frequency (the scene's layout, not its texture) and beyond Nyquist
  are left out.
  """
  if image.ndim != 4 or image.shape[-1] != 3:
    raise ValueError(f"blur_log_likelihood: image must be [B, H, W, 3], got {image.shape}")
  if not radii or min(radii) < 0:
    raise ValueError(f"blur_log_likelihood: radii must be >= 0, got {tuple(radii)}")
  luma = to_linear(jnp.clip(image.astype(jnp.float32), 0.0, 1.0), gamma).mean(-1)
  planes = mirror_extend(luma)  # [B, 2H, 2W]
  shape = planes.shape[-2:]
  ring, rho = _ring_index(shape, bins)
  count = _ring_sum(jnp.ones_like(rho), ring, bins)  # [bins + 1]
  freq = _ring_sum(rho, ring, bins) / jnp.maximum(count, 1.0)
  power = _ring_sum(jnp.square(jnp.abs(jnp.fft.rfft2(planes))) / planes[0].size, ring, bins)
  size = min(kernel_size(max(radii)), 2 * min(image.shape[1:3]) - 1)
  size -= 1 - size % 2
  kernels = coverage_kernel(Aperture(), jnp.asarray(radii, jnp.float32), size)  # [R, k, k]
  transfer = jnp.square(jnp.abs(jnp.fft.rfft2(centred_kernels(kernels, shape))))
  transfer = _ring_sum(transfer, ring, bins) / jnp.maximum(count, 1.0)  # [R, bins + 1]
  lowest = 1.0 / max(shape)
  keep = (freq >= 2.0 * lowest) & (jnp.arange(bins + 1) < bins) & (count > 0)
  slopes = jnp.asarray(SLOPES)[:, None, None]
  scales = jnp.power(10.0, jnp.asarray(LOG_SCALES))[None, :, None]
  prior = scales * jnp.power(jnp.maximum(freq, lowest)[None, None], -slopes)  # [S, A, bins+1]
  noise = jnp.power(10.0, jnp.asarray(LOG_NOISES))[:, None]
  signal = transfer[:, None, None] * prior[None]  # [R, S, A, bins + 1]

  def best_over_prior(power):  # [bins + 1] -> [R]
    variance = signal[:, :, :, None] + noise  # [R, S, A, N, bins + 1]
    terms = -(power / variance + count * jnp.log(variance))
    return jnp.max(jnp.sum(jnp.where(keep, terms, 0.0), -1), axis=(1, 2, 3))

  ll = jax.lax.map(best_over_prior, power)  # [B, R], one photo at a time: bounded memory
  return ll / jnp.sum(jnp.where(keep, count, 0.0))


def identify_uniform_blur(image: jax.Array, radii: Sequence[float], *, gamma: float = 2.2,
                          bins: int = 128) -> tuple[jax.Array, jax.Array]:
  """The most likely disk radius `[B]` of photos `[B, H, W, 3]` blurred as a whole, among
  `radii` (include 0: sharp), and its log-likelihood gain per frequency over radius 0 `[B]`
  (0 when the photo looks sharp; small when the evidence is weak)."""
  radii = tuple(float(r) for r in radii)
  if 0.0 not in radii:
    raise ValueError(f"identify_uniform_blur: radii must include 0 (a sharp photo), got {radii}")
  ll = blur_log_likelihood(image, radii, gamma=gamma, bins=bins)
  best = jnp.argmax(ll, axis=1)
  gain = jnp.max(ll, axis=1) - ll[:, radii.index(0.0)]
  return jnp.asarray(radii, jnp.float32)[best], gain


__all__ = ["blur_log_likelihood", "identify_uniform_blur"]
