"""A convolutional stem and head at the latent grid's full resolution around the DiT's tokens.

A patch-p token holds p*p*C values and is read and written by one linear map of the token width,
so refocusing through tokens alone must squeeze each patch's pixels, and the blur that spreads
them across patch borders, through that bottleneck. The stem reads the noisy target, the
reference and the (dropped-out) disparity channel-wise at every pixel, downsamples them by
stride-2 convolutions to the token grid and adds the result to the target tokens; the head
upsamples the transformer's target tokens back, level by level, joined by the stem's features
at each level (a U-Net around the transformer, as in U-ViT and hourglass DiTs), and ends in a
zero-initialised convolution. Every residual block of both is scaled and shifted by the DiT's
conditioning vector (timestep and camera). Blur, which is local and spatially varying, is then
computed at pixel scale, while attention carries what is global (the disparity at the focus
point, the requested camera).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffcamera_jax.models.layers import Conv, ResBlock, dense


def num_levels(patch_size: int) -> int:
  """Stride-2 steps from the latent grid to the token grid: `log2(patch_size)`."""
  levels = patch_size.bit_length() - 1
  if patch_size < 2 or 2 ** levels != patch_size:
    raise ValueError(f"pixel path: patch_size must be a power of two >= 2, got {patch_size}")
  return levels


class PixelStem(nn.Module):
  """`[B, h, w, C_in]` and the conditioning vector `[B, D]` -> (token features `[B, N, width]`,
  per-level features for the head).

  `widths[i]` is the channel count at stride `2**i`; there are `log2(patch_size)` of them.
  """
  widths: tuple[int, ...]
  width: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, cond: jnp.ndarray) -> tuple[jnp.ndarray, list[jnp.ndarray]]:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    skips = []
    h = Conv(self.widths[0], name="in", **kw)(x)
    for level, features in enumerate(self.widths):
      if level:
        h = Conv(features, stride=2, name=f"down_{level}", **kw)(nn.silu(h))
      h = ResBlock(features, name=f"block_{level}", **kw)(h, cond)
      skips.append(h)
    h = Conv(self.width, stride=2, name="to_tokens", **kw)(nn.silu(h))
    b, gh, gw, _ = h.shape
    return h.reshape(b, gh * gw, self.width), skips


class PixelHead(nn.Module):
  """Target token features `[B, N, width]` on a `grid_hw` grid, and the stem's per-level
  features -> `[B, h, w, out_features]`, zero at initialisation."""
  widths: tuple[int, ...]
  out_features: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens: jnp.ndarray, grid_hw: tuple[int, int], skips: list[jnp.ndarray],
               cond: jnp.ndarray) -> jnp.ndarray:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    b = tokens.shape[0]
    h = nn.LayerNorm(name="norm", **kw)(tokens)
    h = dense(self.widths[-1], ("embed", "channels"), ("channels",), name="from_tokens",
              **kw)(h).reshape(b, *grid_hw, self.widths[-1])
    for level in range(len(self.widths) - 1, -1, -1):
      skip = skips[level]
      h = jax.image.resize(h, skip.shape[:3] + h.shape[3:], "nearest")
      h = Conv(self.widths[level], name=f"up_{level}", **kw)(nn.silu(h)) + skip
      h = ResBlock(self.widths[level], name=f"block_{level}", **kw)(h, cond)
    return Conv(self.out_features, zero_init=True, name="out", **kw)(nn.silu(h))


def disparity_at(disparity: jnp.ndarray, latent_hw: tuple[int, int]) -> jnp.ndarray:
  """Disparity `[B, H, W]` averaged down to the latent grid `[B, h, w]` (H/h = W/w integer)."""
  b, height, width = disparity.shape
  fy, fx = height // latent_hw[0], width // latent_hw[1]
  if fy == 1 and fx == 1:
    return disparity
  return disparity.reshape(b, latent_hw[0], fy, latent_hw[1], fx).mean(axis=(2, 4))


FOCUS_BUMP_WIDTH = 0.05  # the focus-point bump's standard deviation, a fraction of the frame


def focus_bump(focus: jnp.ndarray, hw: tuple[int, int],
               width: float = FOCUS_BUMP_WIDTH) -> jnp.ndarray:
  """A Gaussian bump `[B, h, w]` of standard deviation `width` (a fraction of the frame) at each
  focus point `[B, 2]` (x, y in [0, 1]), on pixel centres."""
  h, w = hw
  ys = (jnp.arange(h, dtype=jnp.float32) + 0.5) / h
  xs = (jnp.arange(w, dtype=jnp.float32) + 0.5) / w
  return jnp.exp(-((xs[None, None, :] - focus[:, 0, None, None]) ** 2
                   + (ys[None, :, None] - focus[:, 1, None, None]) ** 2) / (2 * width ** 2))


def camera_maps(camera: jnp.ndarray, hw: tuple[int, int]) -> jnp.ndarray:
  """The camera features `[B, F]` as per-pixel maps `[B, h, w, F + 1]`: each feature broadcast,
  and a Gaussian bump at the focus point (features 0, 1: x, y in [0, 1]), so convolutions see
  where the focus point lies relative to each pixel."""
  b, f = camera.shape
  h, w = hw
  bump = focus_bump(camera[:, :2], hw)
  flat = jnp.broadcast_to(camera[:, None, None, :], (b, h, w, f))
  return jnp.concatenate([flat, bump[..., None]], axis=-1)

