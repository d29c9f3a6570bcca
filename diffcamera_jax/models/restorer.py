"""The restoration stage: a sharp (all-in-focus) estimate and a disparity estimate of a photo.

A small full-resolution convolutional U-Net, run once per photo ahead of the DiT. It sees the photo
and its Wiener deconvolution bank (`optics.deconvolve.wiener_bank`: the photo deconvolved by disks
of several radii), so deblurring is a per-pixel choice among physically exact candidates plus a
correction, which a few convolutions learn quickly, rather than detail synthesised through the
DiT's patch projection; the sharp-image head also sees the given depth where there is one. A second
U-Net predicts disparity from the photo alone (the monocular path, used when no depth map is
given).

Both outputs are supervised directly (all-in-focus image, true disparity) and feed the physics
prior (`diffcamera_jax.objective.prior`): the classical render of the sharp estimate with the given or the
estimated depth at the requested camera.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffcamera_jax.models.layers import Conv, ResBlock
from diffcamera_jax.optics.deconvolve import wiener_bank

_LEVELS = 2  # two stride-2 downsamplings: inputs are padded to a multiple of 4


class _Conv(Conv):
  """`layers.Conv` under the name exported restoration stages store their parameters by."""


class _ResBlock(ResBlock):
  """`layers.ResBlock` under the name exported restoration stages store their parameters by."""

  def conv_class(self) -> type:
    return _Conv


def fit_defocus(blur: jnp.ndarray, disparity: jnp.ndarray, weights: jnp.ndarray | None = None,
                levels: int = 65) -> tuple[jnp.ndarray, jnp.ndarray]:
  """The camera `(d, K)` `[B]`, `[B]` whose CoC map `K |D - d|` best fits a per-pixel blur
  estimate `blur` `[B, H, W]` (pixels) in weighted least squares.

  A photo focused at disparity d with blur K has CoC radius K |D - d| at every pixel; given the
  disparity D, `levels` focus disparities in [0, 1] are tried, K in closed form for each.
  `weights` `[B, H, W]` (default uniform) say how far each pixel's estimate is trusted.
  """
  d = jnp.linspace(0.0, 1.0, levels)
  w = jnp.ones_like(blur) if weights is None else weights
  distance = jnp.abs(disparity[:, None] - d[None, :, None, None])  # [B, levels, H, W]
  axes = (2, 3)
  wd = w[:, None] * distance
  k = jnp.sum(wd * blur[:, None], axes) / jnp.maximum(jnp.sum(wd * distance, axes), 1e-6)
  k = jnp.maximum(k, 0.0)  # [B, levels]
  error = jnp.sum(w[:, None] * jnp.square(k[..., None, None] * distance - blur[:, None]), axes)
  best = jnp.argmin(error, axis=1)
  return d[best], jnp.take_along_axis(k, best[:, None], 1)[:, 0]


def fit_blur_map(blur: jnp.ndarray, disparity: jnp.ndarray, levels: int = 33) -> jnp.ndarray:
  """The CoC map `K |D - d|` `[B, H, W]` of the camera that best fits a per-pixel blur estimate
  (`fit_defocus` with uniform weights), which turns a noisy local estimate into the layered map
  the optics imply."""
  d, k = fit_defocus(blur, disparity, levels=levels)
  return k[:, None, None] * jnp.abs(disparity - d[:, None, None])


def pixel_coordinates(batch: int, height: int, width: int) -> jnp.ndarray:
  """Row and column of each pixel in [-1, 1] `[B, H, W, 2]`: lets the trunk use where a pixel sits
  in the frame (lower in the frame is nearer on a ground plane)."""
  rows = jnp.broadcast_to(jnp.linspace(-1.0, 1.0, height)[:, None], (height, width))
  cols = jnp.broadcast_to(jnp.linspace(-1.0, 1.0, width)[None, :], (height, width))
  return jnp.broadcast_to(jnp.stack([rows, cols], -1), (batch, height, width, 2))


def corrected_map(given: jnp.ndarray, correction: jnp.ndarray) -> jnp.ndarray:
  """`clip(given + correction, 0, 1)` with the gradient passed straight through the clip (a
  correction through a sigmoid would vanish where the map reads 0 or 1, e.g. in a hole)."""
  refined = given + correction
  return refined + jax.lax.stop_gradient(jnp.clip(refined, 0.0, 1.0) - refined)


def pad_to_multiple(x: jnp.ndarray, multiple: int) -> jnp.ndarray:
  h, w = x.shape[1:3]
  pad = ((0, 0), (0, -h % multiple), (0, -w % multiple)) + ((0, 0),) * (x.ndim - 3)
  return jnp.pad(x, pad, mode="edge")


class UNet(nn.Module):
  """A U-Net over `[B, H, W, C]` inputs (H, W multiples of 4): features `[B, H, W, widths[0]]`.

  With `global_context`, the coarsest level also receives a projection of its mean over the
  image (scene-level cues such as where the horizon is)."""
  widths: tuple[int, ...]
  global_context: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    skips = []
    h = _Conv(self.widths[0], **kw)(x)
    for level, features in enumerate(self.widths):
      if level:
        h = _Conv(features, stride=2, **kw)(nn.silu(h))
      h = _ResBlock(features, **kw)(h)
      if self.global_context and level == _LEVELS:
        h = h + _Conv(features, kernel=1, **kw)(nn.silu(jnp.mean(h, axis=(1, 2), keepdims=True)))
      skips.append(h)
    for level in range(_LEVELS - 1, -1, -1):
      h = jax.image.resize(h, skips[level].shape[:3] + h.shape[3:], "nearest")
      h = _Conv(self.widths[level], **kw)(nn.silu(h)) + skips[level]
      h = _ResBlock(self.widths[level], **kw)(h)
    return h


class Restorer(nn.Module):
  """`apply(image, disparity | None, depth_keep) -> (sharp, disparity_hat, blur_hat)`.

  `radii`: deconvolution radii in pixels of the image it is applied to: the network reads blur
  from pixel-scale appearance, so the bank means the same at every resolution. `depth_size`: the
  longer side at which disparity is estimated (the training size): a larger photo is estimated
  from a copy resized to it, so the network sees the whole scene's layout as it did in training,
  and the estimate is resized back. `sharp` is `[B, H, W, 3]` on the [0, 1] scale (the
  photo plus per-pixel weighted corrections towards each deconvolution and a residual; it starts
  as the photo itself), `disparity_hat` `[B, H, W]` in [0, 1], `blur_hat` `[B, H, W]` the estimated
  CoC radius of each pixel of the photo (pixels).

  `refine_depth`: a second U-Net (`refine_widths`) corrects a given map: it reads the photo, the
  map and the photo-only estimate, and where depth is kept `disparity_hat = clip(D + correction,
  0, 1)`, the correction from a zero-initialised head estimated at `depth_size` and enlarged, so
  it starts as the given map at its full resolution; without depth it is the photo-only estimate.
  Trained with inaccurate maps (`objective.p_depth_corrupt`), the prior then renders with it. The
  photo-only estimate is also sown as `("intermediates", "monocular_disparity")`, so training
  supervises it on every example, not only those whose map was dropped.
  """
  widths: tuple[int, ...] = (16, 32, 64)
  depth_widths: tuple[int, ...] = (16, 32, 64)  # the disparity U-Net's
  refine_widths: tuple[int, ...] = (16, 32, 64)  # the map-correcting U-Net's (`refine_depth`)
  radii: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
  depth_size: int = 64
  gamma: float = 2.2
  regularization: float = 1e-2
  refine_depth: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def _estimate_depth(self, image: jnp.ndarray, disparity: jnp.ndarray | None,
                      depth_keep: jnp.ndarray) -> jnp.ndarray:
    """Disparity `[B, H, W]` from the photo (its own U-Net with global context, at `depth_size`:
    a larger photo is estimated from a resized copy and the estimate resized back); with
    `refine_depth`, a correction of the given map where it is kept (see the class docstring)."""
    b, height, width, _ = image.shape
    scale = min(1.0, self.depth_size / max(height, width))
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    resize = lambda x, shape: x if scale == 1.0 else jax.image.resize(x, shape, "linear",
                                                                     antialias=True)
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = jnp.concatenate([2.0 * resize(image, (b, h, w, 3)) - 1.0, pixel_coordinates(b, h, w)], -1)
    feats = UNet(self.depth_widths, global_context=True, name="depth_trunk", **kw)(
        pad_to_multiple(x, 2 ** _LEVELS))[:, :h, :w]
    small = nn.sigmoid(_Conv(1, name="depth_head", **kw)(nn.silu(feats))[..., 0]
                       .astype(jnp.float32))
    alone = small if scale == 1.0 else jax.image.resize(small, (b, height, width), "linear")
    if not self.refine_depth:
      return alone
    self.sow("intermediates", "monocular_disparity", alone)
    kept = jnp.zeros((b,)) if disparity is None else depth_keep.astype(jnp.float32)
    keep = jnp.broadcast_to(kept[:, None, None], (b, height, width))
    given = jnp.zeros((b, height, width)) if disparity is None else disparity * keep
    maps = jnp.stack([2.0 * resize(given, (b, h, w)) - 1.0,
                      2.0 * jax.lax.stop_gradient(small) - 1.0], -1)
    feats = UNet(self.refine_widths, global_context=True, name="refine_trunk", **kw)(
        pad_to_multiple(jnp.concatenate([x, maps], -1), 2 ** _LEVELS))[:, :h, :w]
    correction = _Conv(1, zero_init=True, name="refine_head", **kw)(
        nn.silu(feats))[..., 0].astype(jnp.float32)
    if scale != 1.0:
      correction = jax.image.resize(correction, (b, height, width), "linear")
    return jnp.where(keep > 0, corrected_map(given, correction), alone)

  @nn.compact
  def __call__(self, image: jnp.ndarray, disparity: jnp.ndarray | None,
               depth_keep: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    if image.ndim != 4 or image.shape[-1] != 3:
      raise ValueError(f"Restorer: image must be [B, H, W, 3], got {image.shape}")
    for name in ("widths", "depth_widths", "refine_widths"):
      if len(getattr(self, name)) != _LEVELS + 1:
        raise ValueError(f"Restorer: {name} must have {_LEVELS + 1} entries, "
                         f"got {getattr(self, name)}")
    b, height, width, _ = image.shape
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    image = jnp.clip(image.astype(jnp.float32), 0.0, 1.0)
    disparity_hat = self._estimate_depth(image, disparity, depth_keep)

    bank = wiener_bank(image, self.radii, gamma=self.gamma, regularization=self.regularization)
    candidates = jnp.concatenate([image[:, :, :, None], bank], axis=3)  # [B, H, W, R + 1, 3]
    x = jnp.concatenate([2.0 * candidates.reshape(b, height, width, -1) - 1.0,
                         pixel_coordinates(b, height, width)], -1)
    feats = UNet(self.widths, name="trunk", **kw)(pad_to_multiple(x, 2 ** _LEVELS))
    feats = feats[:, :height, :width]

    # Sharp-image head: the trunk's features, the given depth (zeros and a 0 flag where absent)
    # and the estimated depth.
    if disparity is None:
      disparity, depth_keep = jnp.zeros((b, height, width)), jnp.zeros((b,), bool)
    keep = depth_keep.astype(jnp.float32)[:, None, None]
    depth_in = jnp.stack([(2.0 * disparity - 1.0) * keep, jnp.broadcast_to(keep, disparity.shape),
                          2.0 * jax.lax.stop_gradient(disparity_hat) - 1.0], axis=-1)
    g = _Conv(self.widths[0], **kw)(jnp.concatenate([nn.silu(feats), depth_in.astype(feats.dtype)],
                                                    -1))
    # The blur map: the CoC radius (pixels) at each pixel of the photo, supervised directly, so
    # the features learn where and how much the photo is defocused. With depth, the map is also
    # refitted as K |D - d| (`fit_blur_map`): two numbers per photo, read from every pixel, that
    # make the depth's layering explicit. The final convolution reads both beside the features:
    # sharp = photo + sum_k a_k (deconvolution_k - photo) + residual, a_k and the residual from a
    # zero-initialised convolution, so it starts as the photo and each coefficient's gradient is
    # its candidate's own correction.
    blur_hat = nn.softplus(_Conv(1, name="blur_head", **kw)(nn.silu(g))[..., 0]
                           .astype(jnp.float32))
    fitted = jnp.where(keep > 0, fit_blur_map(jax.lax.stop_gradient(blur_hat), disparity),
                       jax.lax.stop_gradient(blur_hat))
    maps = jnp.stack([jax.lax.stop_gradient(blur_hat), fitted], -1).astype(g.dtype)
    num = candidates.shape[3] - 1
    out = _Conv(num + 3, zero_init=True, **kw)(jnp.concatenate([nn.silu(g), maps], -1))
    out = out.astype(jnp.float32)
    corrections = candidates[:, :, :, 1:] - image[:, :, :, None]
    sharp = image + jnp.einsum("bhwr,bhwrc->bhwc", out[..., :num], corrections) + out[..., num:]
    return sharp, disparity_hat, blur_hat


__all__ = ["Restorer", "UNet", "corrected_map", "fit_blur_map", "fit_defocus", "pad_to_multiple",
           "pixel_coordinates"]
