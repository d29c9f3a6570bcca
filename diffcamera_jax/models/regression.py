"""The learned baseline's network: plain supervised regression of the refocused image.

A residual U-Net maps the reference photo, its disparity (zeros and a 0 flag when absent) and the
requested camera as per-pixel maps (the signed target circle of confusion `K (D - d_f)` where
depth is given, the blur level K, a bump at the focus point, pixel coordinates) to
`reference + residual`. It is called like the DiT (`x_t, t, reference, disparity, camera, keep`)
and ignores `x_t` and `t`: trained by the same `Objective` with `prediction="x0"` and one sampling
step, its output is the image itself, so the trainer, exporter, `Refocuser` and benchmark run it
unchanged (`configs/default.py:regression`). Pixel latents only (`model.latent_mode="pixels"`).
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from diffcamera_jax import optics
from diffcamera_jax.models.pixel_path import focus_bump
from diffcamera_jax.models.restorer import UNet, pad_to_multiple, pixel_coordinates

WIDTHS = (24, 48, 96)
MULTIPLE = 4  # the U-Net's input sides are padded to a multiple of 2 ** (levels - 1)


def condition_maps(reference: jnp.ndarray, disparity: jnp.ndarray | None, depth_keep: jnp.ndarray,
                   focus: jnp.ndarray, blur: jnp.ndarray, blur_top: float) -> jnp.ndarray:
  """The network's input `[B, H, W, 10]`: photo, depth and flag, camera maps, coordinates
  (`reference` in [0, 1], `focus` `[B, 2]`, `blur` K `[B]` in pixels)."""
  b, h, w, _ = reference.shape
  if disparity is None:
    disparity, depth_keep = jnp.zeros((b, h, w)), jnp.zeros((b,), bool)
  keep = depth_keep.astype(jnp.float32)[:, None, None]
  coc = optics.signed_coc(disparity, optics.focus_disparity(disparity, focus), blur) * keep
  bump = focus_bump(focus, (h, w))
  scale = max(blur_top, 1e-6)
  maps = [2.0 * reference - 1.0, ((2.0 * disparity - 1.0) * keep)[..., None],
          jnp.broadcast_to(keep, (b, h, w))[..., None], (coc / scale)[..., None],
          jnp.broadcast_to((blur / scale)[:, None, None], (b, h, w))[..., None], bump[..., None],
          pixel_coordinates(b, h, w)]
  return jnp.concatenate(maps, axis=-1)


class RegressionNet(nn.Module):
  """`apply(x_t, t, reference, disparity | None, camera, depth_keep)` -> the target's pixel
  latents `[B, H, W, 3]` (the image in [-1, 1]); `x_t` and `t` are not read."""
  widths: tuple[int, ...] = WIDTHS
  blur_top: float = 5.0  # the largest blur (pixels) at the training size, for normalisation
  patch_size: int = MULTIPLE  # what inference pads working images to
  restorer = None  # no restoration stage

  def sequence_length(self, grid_tokens: int) -> int:
    """For memory plans: one "token" per padded pixel block."""
    return grid_tokens

  @property
  def attention_heads(self) -> int:
    return 1

  @nn.compact
  def __call__(self, x_t, t, reference, disparity, camera, depth_keep, train: bool = False,
               prior=None) -> jnp.ndarray:
    del x_t, t, train, prior
    h, w = reference.shape[1:3]
    image = (reference + 1.0) / 2.0
    focus, blur = camera[:, :2], camera[:, 2] * float(max(h, w))  # `models.camera_features`
    x = condition_maps(image, disparity, depth_keep, focus, blur, self.blur_top)
    feats = UNet(self.widths, global_context=True)(pad_to_multiple(x, MULTIPLE))[:, :h, :w]
    # The U-Net has no normalisation; trained, its features drifted to about -2e4, where SiLU
    # is 0 everywhere and the head returned the input plus its bias. Normalised, the head always
    # sees features of unit scale.
    feats = nn.LayerNorm(name="head_norm")(feats)
    residual = nn.Conv(3, (3, 3), padding="SAME", kernel_init=nn.initializers.zeros_init())(
        nn.silu(feats))
    return 2.0 * (image + residual) - 1.0


__all__ = ["RegressionNet", "condition_maps"]
