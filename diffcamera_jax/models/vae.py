"""An AutoencoderKL-style convolutional VAE (the Stable Diffusion / FLUX layout) in Flax Linen.

Used frozen as the latent codec in `latent_mode="vae"`: from random init (tests, smoke runs) or from
a params file written by `save_params`. Downsampling factor `2 ** (len(channel_mult) - 1)`.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffcamera_jax.models.layers import partitioned

_lecun = nn.initializers.lecun_normal()
_zeros = nn.initializers.zeros_init()


def conv(features: int, kernel: int = 3, stride: int = 1, padding: Any = "SAME",
         name: str | None = None) -> nn.Conv:
  """A conv whose kernel and bias carry logical names (VAE channels are replicated by default)."""
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=padding, name=name,
                 kernel_init=partitioned(_lecun, (None, None, "vae_in", "vae_out")),
                 bias_init=partitioned(_zeros, ("vae_out",)))


def group_norm(channels: int, name: str | None = None) -> nn.GroupNorm:
  groups = 32 if channels % 32 == 0 else next(g for g in (16, 8, 4, 2, 1) if channels % g == 0)
  return nn.GroupNorm(num_groups=groups, epsilon=1e-6, name=name,
                      scale_init=partitioned(nn.initializers.ones_init(), ("vae_out",)),
                      bias_init=partitioned(_zeros, ("vae_out",)))


class ResnetBlock(nn.Module):
  out_channels: int

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    h = conv(self.out_channels, name="conv1")(nn.swish(group_norm(x.shape[-1], "norm1")(x)))
    h = conv(self.out_channels, name="conv2")(nn.swish(group_norm(self.out_channels, "norm2")(h)))
    if x.shape[-1] != self.out_channels:
      x = conv(self.out_channels, kernel=1, name="shortcut")(x)
    return x + h


class AttnBlock(nn.Module):
  """Single-head self-attention over all spatial positions (the VAE's mid block)."""

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    b, h, w, c = x.shape
    y = group_norm(c, "norm")(x)
    q, k, v = (conv(c, kernel=1, name=n)(y).reshape(b, h * w, 1, c) for n in ("q", "k", "v"))
    out = jax.nn.dot_product_attention(q, k, v).reshape(b, h, w, c)
    return x + conv(c, kernel=1, name="proj_out")(out)


class Encoder(nn.Module):
  channels: int
  channel_mult: Sequence[int]
  num_res_blocks: int
  latent_channels: int

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    h = conv(self.channels, name="conv_in")(x)
    for level, mult in enumerate(self.channel_mult):
      for i in range(self.num_res_blocks):
        h = ResnetBlock(self.channels * mult, name=f"down_{level}_block_{i}")(h)
      if level < len(self.channel_mult) - 1:  # asymmetric pad (0, 1) then stride 2, as in SD
        h = conv(h.shape[-1], stride=2, padding=((0, 1), (0, 1)), name=f"down_{level}_sample")(h)
    h = ResnetBlock(h.shape[-1], name="mid_block_1")(h)
    h = AttnBlock(name="mid_attn")(h)
    h = ResnetBlock(h.shape[-1], name="mid_block_2")(h)
    h = nn.swish(group_norm(h.shape[-1], "norm_out")(h))
    return conv(2 * self.latent_channels, name="conv_out")(h)  # mean and log-variance


class Decoder(nn.Module):
  channels: int
  channel_mult: Sequence[int]
  num_res_blocks: int

  @nn.compact
  def __call__(self, z: jnp.ndarray) -> jnp.ndarray:
    h = conv(self.channels * self.channel_mult[-1], name="conv_in")(z)
    h = ResnetBlock(h.shape[-1], name="mid_block_1")(h)
    h = AttnBlock(name="mid_attn")(h)
    h = ResnetBlock(h.shape[-1], name="mid_block_2")(h)
    for level in reversed(range(len(self.channel_mult))):
      for i in range(self.num_res_blocks + 1):
        h = ResnetBlock(self.channels * self.channel_mult[level], name=f"up_{level}_block_{i}")(h)
      if level > 0:
        b, hh, ww, c = h.shape
        h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), method="nearest")
        h = conv(c, name=f"up_{level}_sample")(h)
    h = nn.swish(group_norm(h.shape[-1], "norm_out")(h))
    return conv(3, name="conv_out")(h)


class AutoencoderKL(nn.Module):
  """Images in [-1, 1] `[B, H, W, 3]` <-> unscaled latents `[B, H/f, W/f, latent_channels]`."""
  channels: int = 32
  channel_mult: Sequence[int] = (1, 2, 2, 4)
  num_res_blocks: int = 1
  latent_channels: int = 4

  def setup(self):
    self.encoder = Encoder(self.channels, self.channel_mult, self.num_res_blocks,
                           self.latent_channels)
    self.decoder = Decoder(self.channels, self.channel_mult, self.num_res_blocks)

  def encode(self, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Posterior mean and log-variance."""
    moments = self.encoder(x)
    return moments[..., :self.latent_channels], moments[..., self.latent_channels:]

  def decode(self, z: jnp.ndarray) -> jnp.ndarray:
    return self.decoder(z)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """Reconstruction through the posterior mean (used to create all params at init)."""
    return self.decode(self.encode(x)[0])

  @property
  def downsample(self) -> int:
    return 2 ** (len(self.channel_mult) - 1)
