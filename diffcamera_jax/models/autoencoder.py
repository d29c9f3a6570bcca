"""The FLUX.1 VAE (AutoencoderKL, 16 latent channels) in Flax Linen, NHWC.

Numerically diffusers' `AutoencoderKL` with FLUX's configuration: no quant/post-quant convs,
GroupNorm(32, eps 1e-6) + SiLU ResNet blocks, one single-head self-attention in each mid block,
asymmetric-padding stride-2 downsampling and nearest-neighbour upsampling. Module names mirror
diffusers (`encoder/down_blocks_0/resnets_1/conv1` <-> `encoder.down_blocks.0.resnets.1.conv1`),
so loading diffusers weights is a rename and a transpose. The VAE is frozen and small (84M
parameters): its parameters carry no logical axis names and are replicated.

Latents for the transformer are `(mean - shift_factor) · scaling_factor` (FLUX's convention);
images at the interface are in [0, 1] (docs/design.md) and mapped to [-1, 1] inside.
"""
import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

Dtype = Any


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
  """Architecture and latent normalisation (defaults: the FLUX.1 VAE)."""
  in_channels: int = 3
  out_channels: int = 3
  latent_channels: int = 16
  block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
  layers_per_block: int = 2
  norm_num_groups: int = 32
  mid_block_add_attention: bool = True
  scaling_factor: float = 0.3611
  shift_factor: float = 0.1159

  def __post_init__(self):
    bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
    if bad:
      raise ValueError(f"AutoencoderConfig.block_out_channels {bad} are not multiples of "
                       f"norm_num_groups={self.norm_num_groups}")

  @property
  def downsample_factor(self) -> int:
    return 2 ** (len(self.block_out_channels) - 1)

  @classmethod
  def from_diffusers(cls, cfg: Mapping[str, Any]) -> "AutoencoderConfig":
    """From a diffusers `AutoencoderKL` `config.json` dict (FLUX structure only)."""
    if cfg.get("use_quant_conv", True) or cfg.get("use_post_quant_conv", True):
      raise ValueError("from_diffusers: quant/post-quant convs are not part of the FLUX VAE")
    return cls(in_channels=cfg["in_channels"], out_channels=cfg["out_channels"],
               latent_channels=cfg["latent_channels"],
               block_out_channels=tuple(cfg["block_out_channels"]),
               layers_per_block=cfg["layers_per_block"], norm_num_groups=cfg["norm_num_groups"],
               mid_block_add_attention=cfg.get("mid_block_add_attention", True),
               scaling_factor=cfg["scaling_factor"], shift_factor=cfg.get("shift_factor") or 0.0)


VAE_PRESETS = {
    "flux": AutoencoderConfig(),
    # Same structure and 8x downsampling at a laptop size (tests, smoke runs).
    "tiny": AutoencoderConfig(block_out_channels=(8, 8, 16, 16), layers_per_block=1,
                              norm_num_groups=4),
}


class _Module(nn.Module):
  groups: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def conv(self, features: int, name: str, kernel: int = 3, stride: int = 1,
           padding: Any = None) -> nn.Conv:
    pad = padding if padding is not None else [(kernel // 2, kernel // 2)] * 2
    return nn.Conv(features, (kernel, kernel), (stride, stride), padding=pad, dtype=self.dtype,
                   param_dtype=self.param_dtype, name=name)

  def norm(self, name: str) -> nn.GroupNorm:
    return nn.GroupNorm(self.groups, epsilon=1e-6, use_fast_variance=False, dtype=self.dtype,
                        param_dtype=self.param_dtype, name=name)


class ResnetBlock(_Module):
  out_channels: int = 0

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    h = self.conv(self.out_channels, "conv1")(nn.silu(self.norm("norm1")(x)))
    h = self.conv(self.out_channels, "conv2")(nn.silu(self.norm("norm2")(h)))
    if x.shape[-1] != self.out_channels:
      x = self.conv(self.out_channels, "conv_shortcut", kernel=1)(x)
    return x + h


class AttnBlock(_Module):
  """Single-head self-attention over all positions, with a residual connection."""

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    b, h, w, c = x.shape
    t = self.norm("group_norm")(x).reshape(b, h * w, c)
    dense = lambda name: nn.Dense(c, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    q, k, v = dense("to_q")(t), dense("to_k")(t), dense("to_v")(t)
    out = jax.nn.dot_product_attention(q[:, :, None], k[:, :, None], v[:, :, None])[:, :, 0]
    return x + dense("to_out_0")(out).reshape(b, h, w, c)


class MidBlock(_Module):
  add_attention: bool = True

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    kw = dict(groups=self.groups, dtype=self.dtype, param_dtype=self.param_dtype)
    c = x.shape[-1]
    x = ResnetBlock(out_channels=c, name="resnets_0", **kw)(x)
    if self.add_attention:
      x = AttnBlock(name="attentions_0", **kw)(x)
    return ResnetBlock(out_channels=c, name="resnets_1", **kw)(x)


class Downsample(_Module):
  """Pad (0, 1) at the bottom/right, then a valid stride-2 3x3 convolution (as diffusers)."""

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return self.conv(x.shape[-1], "conv", stride=2, padding=((0, 1), (0, 1)))(x)


class Upsample(_Module):
  """Nearest-neighbour x2, then a 3x3 convolution."""

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    return self.conv(x.shape[-1], "conv")(x)


class ResnetStack(_Module):
  """`num_layers` ResNet blocks, then an optional down- or upsampler (diffusers' Down/Up blocks)."""
  out_channels: int = 0
  num_layers: int = 1
  resample: str = "none"  # "none" | "down" | "up"

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    kw = dict(groups=self.groups, dtype=self.dtype, param_dtype=self.param_dtype)
    for j in range(self.num_layers):
      x = ResnetBlock(out_channels=self.out_channels, name=f"resnets_{j}", **kw)(x)
    if self.resample == "down":
      x = Downsample(name="downsamplers_0", **kw)(x)
    elif self.resample == "up":
      x = Upsample(name="upsamplers_0", **kw)(x)
    return x


class Encoder(_Module):
  """Image `[B, H, W, 3]` in [-1, 1] -> moments `[B, H/f, W/f, 2·latent_channels]`."""
  config: AutoencoderConfig = AutoencoderConfig()

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    c = self.config
    kw = dict(groups=self.groups, dtype=self.dtype, param_dtype=self.param_dtype)
    x = self.conv(c.block_out_channels[0], "conv_in")(x)
    last = len(c.block_out_channels) - 1
    for i, ch in enumerate(c.block_out_channels):
      x = ResnetStack(out_channels=ch, num_layers=c.layers_per_block,
                      resample="down" if i < last else "none", name=f"down_blocks_{i}", **kw)(x)
    x = MidBlock(add_attention=c.mid_block_add_attention, name="mid_block", **kw)(x)
    x = nn.silu(self.norm("conv_norm_out")(x))
    return self.conv(2 * c.latent_channels, "conv_out")(x)


class Decoder(_Module):
  """Latents `[B, h, w, latent_channels]` -> image `[B, h·f, w·f, 3]` in [-1, 1] (unclipped)."""
  config: AutoencoderConfig = AutoencoderConfig()

  @nn.compact
  def __call__(self, z: jnp.ndarray) -> jnp.ndarray:
    c = self.config
    kw = dict(groups=self.groups, dtype=self.dtype, param_dtype=self.param_dtype)
    channels = tuple(reversed(c.block_out_channels))
    x = self.conv(channels[0], "conv_in")(z)
    x = MidBlock(add_attention=c.mid_block_add_attention, name="mid_block", **kw)(x)
    for i, ch in enumerate(channels):
      x = ResnetStack(out_channels=ch, num_layers=c.layers_per_block + 1,
                      resample="up" if i < len(channels) - 1 else "none", name=f"up_blocks_{i}",
                      **kw)(x)
    x = nn.silu(self.norm("conv_norm_out")(x))
    return self.conv(c.out_channels, "conv_out")(x)


class AutoencoderKL(nn.Module):
  """The VAE. `encode` -> (mean, logvar) of the posterior; `decode` -> image in [-1, 1]."""
  config: AutoencoderConfig = AutoencoderConfig()
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def setup(self):
    kw = dict(config=self.config, groups=self.config.norm_num_groups, dtype=self.dtype,
              param_dtype=self.param_dtype)
    self.encoder = Encoder(**kw)
    self.decoder = Decoder(**kw)

  def encode(self, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Posterior (mean, logvar) `[B, h, w, latent_channels]` of images in [-1, 1]."""
    f = self.config.downsample_factor
    if x.ndim != 4 or x.shape[-1] != self.config.in_channels or x.shape[1] % f or x.shape[2] % f:
      raise ValueError(f"AutoencoderKL.encode: images must be [B, H, W, "
                       f"{self.config.in_channels}] with H, W multiples of {f}; got {x.shape}")
    mean, logvar = jnp.split(self.encoder(x), 2, axis=-1)
    return mean, jnp.clip(logvar, -30.0, 20.0)

  def decode(self, z: jnp.ndarray) -> jnp.ndarray:
    if z.ndim != 4 or z.shape[-1] != self.config.latent_channels:
      raise ValueError(f"AutoencoderKL.decode: latents must be [B, h, w, "
                       f"{self.config.latent_channels}]; got {z.shape}")
    return self.decoder(z)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """Reconstruction from the posterior mean (used to initialise all parameters)."""
    return self.decode(self.encode(x)[0])


# ----------------------------------------------------------------------------- pixel <-> latent


def images_to_latents(vae: AutoencoderKL, params: Any, images: jnp.ndarray,
                      rng: jax.Array | None = None) -> jnp.ndarray:
  """Images `[B, H, W, 3]` in [0, 1] -> normalised latents for the transformer.

  The posterior mean when `rng` is None, a posterior sample otherwise; then FLUX's
  `(z - shift_factor) · scaling_factor`.
  """
  mean, logvar = vae.apply({"params": params}, 2.0 * images - 1.0, method=AutoencoderKL.encode)
  z = mean
  if rng is not None:
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape, mean.dtype)
  c = vae.config
  return (z - c.shift_factor) * c.scaling_factor


def latents_to_images(vae: AutoencoderKL, params: Any, latents: jnp.ndarray) -> jnp.ndarray:
  """Normalised latents -> images `[B, H, W, 3]` in [0, 1] (clipped)."""
  c = vae.config
  x = vae.apply({"params": params}, latents / c.scaling_factor + c.shift_factor,
                method=AutoencoderKL.decode)
  return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)


def latent_grid(image_hw: tuple[int, int], downsample: int, channels: int) -> tuple[int, int, int]:
  """`(h, w, C)` of the latents of an `image_hw` image; raises if `downsample` does not divide it."""
  if image_hw[0] % downsample or image_hw[1] % downsample:
    raise ValueError(f"image size {tuple(image_hw)} is not divisible by the codec's "
                     f"downsampling factor {downsample}")
  return image_hw[0] // downsample, image_hw[1] // downsample, channels


@struct.dataclass
class FluxCodec:
  """The latent codec (same interface as `models.latents.LatentCodec`) with the FLUX VAE.

  A pytree whose leaves are the VAE params, so it passes into jitted steps as an argument.
  """
  params: Any
  config: AutoencoderConfig = struct.field(pytree_node=False, default=AutoencoderConfig())
  mode: str = struct.field(pytree_node=False, default="vae")

  @property
  def vae(self) -> AutoencoderKL:
    return AutoencoderKL(self.config)

  @property
  def downsample(self) -> int:
    return self.config.downsample_factor

  @property
  def latent_channels(self) -> int:
    return self.config.latent_channels

  def latent_shape(self, image_hw: tuple[int, int]) -> tuple[int, int, int]:
    return latent_grid(image_hw, self.downsample, self.latent_channels)

  def encode(self, images: jnp.ndarray) -> jnp.ndarray:
    return images_to_latents(self.vae, self.params, images.astype(jnp.float32))

  def decode(self, latents: jnp.ndarray) -> jnp.ndarray:
    return latents_to_images(self.vae, self.params, latents.astype(jnp.float32))
