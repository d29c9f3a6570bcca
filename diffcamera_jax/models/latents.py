"""The latent codec: images in [0, 1] <-> the space the DiT denoises.

`pixels`: latents are the image scaled to [-1, 1] (the DiT patchifies them itself).
`vae`: latents are `(mean - shift) * scale` of a frozen AutoencoderKL-style encoder.
A `LatentCodec` is a pytree (its VAE params are leaves), so it can be passed into `jax.jit`
functions as an argument instead of being baked into the program as constants.
"""
import functools
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import struct, traverse_util

from diffcamera_jax.models.vae import AutoencoderKL

LATENT_MODES = ("pixels", "vae")


@struct.dataclass
class LatentCodec:
  """`encode(images [..., H, W, 3] in [0, 1]) -> latents`, `decode(latents) -> images`."""
  params: Any  # VAE params (None in pixel mode)
  mode: str = struct.field(pytree_node=False, default="pixels")
  vae_config: tuple = struct.field(pytree_node=False, default=())  # AutoencoderKL fields
  scaling_factor: float = struct.field(pytree_node=False, default=1.0)
  shift_factor: float = struct.field(pytree_node=False, default=0.0)

  @property
  def vae(self) -> AutoencoderKL:
    return AutoencoderKL(*self.vae_config)

  @property
  def downsample(self) -> int:
    """Image pixels per latent pixel along each axis."""
    return 1 if self.mode == "pixels" else self.vae.downsample

  @property
  def latent_channels(self) -> int:
    return 3 if self.mode == "pixels" else self.vae.latent_channels

  def latent_shape(self, image_hw: tuple[int, int]) -> tuple[int, int, int]:
    """`(h, w, C)` of the latents of an `image_hw` image; raises if `image_hw` does not divide."""
    f = self.downsample
    if image_hw[0] % f or image_hw[1] % f:
      raise ValueError(f"image size {tuple(image_hw)} is not divisible by the codec's "
                       f"downsampling factor {f}")
    return image_hw[0] // f, image_hw[1] // f, self.latent_channels

  def encode(self, images: jnp.ndarray) -> jnp.ndarray:
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"LatentCodec.encode: images must be [B, H, W, 3], got {images.shape}")
    self.latent_shape(images.shape[1:3])
    x = 2.0 * images.astype(jnp.float32) - 1.0
    if self.mode == "pixels":
      return x
    mean, _ = self.vae.apply({"params": self.params}, x, method=AutoencoderKL.encode)
    return (mean - self.shift_factor) * self.scaling_factor

  def decode(self, latents: jnp.ndarray) -> jnp.ndarray:
    if latents.ndim != 4 or latents.shape[-1] != self.latent_channels:
      raise ValueError(f"LatentCodec.decode: latents must be [B, h, w, {self.latent_channels}], "
                       f"got {latents.shape}")
    x = latents.astype(jnp.float32)
    if self.mode == "vae":
      z = x / self.scaling_factor + self.shift_factor
      x = self.vae.apply({"params": self.params}, z, method=AutoencoderKL.decode)
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)


def save_params(path: str, params: Any) -> None:
  """Writes a params pytree as safetensors with '/'-joined keys."""
  from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel
  flat = traverse_util.flatten_dict(jax.device_get(params), sep="/")
  save_file({k: np.asarray(v) for k, v in flat.items()}, path)


def load_params(path: str, like: Any) -> Any:
  """Reads a params file written by `save_params`, checked against the abstract tree `like`."""
  from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
  if not os.path.exists(path):
    raise FileNotFoundError(f"VAE params file {path!r} (config.model.vae_params) does not exist")
  flat = load_file(path)
  want = traverse_util.flatten_dict(like, sep="/")
  if set(flat) != set(want):
    missing, extra = sorted(set(want) - set(flat)), sorted(set(flat) - set(want))
    raise ValueError(f"VAE params file {path!r} does not match config.model.vae: "
                     f"missing {missing[:5]}, unexpected {extra[:5]}")
  for key, value in flat.items():
    if value.shape != want[key].shape:
      raise ValueError(f"VAE params file {path!r}: {key} has shape {value.shape}, the config "
                       f"expects {want[key].shape}")
  return traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()}, sep="/")


def vae_from_config(vae_config: ml_collections.ConfigDict) -> AutoencoderKL:
  return AutoencoderKL(channels=vae_config.channels, channel_mult=tuple(vae_config.channel_mult),
                       num_res_blocks=vae_config.num_res_blocks,
                       latent_channels=vae_config.latent_channels)


@functools.partial(jax.jit, static_argnums=0)
def init_vae_params(vae: AutoencoderKL, rng: jax.Array) -> Any:
  """Random VAE params (conv params do not depend on the image size); compiled once per VAE."""
  side = 2 * vae.downsample
  variables = vae.init(rng, jnp.zeros((1, side, side, 3), jnp.float32))
  return nn.unbox(variables["params"])


def make_codec(config: ml_collections.ConfigDict, rng: jax.Array | None = None) -> LatentCodec:
  """The codec for `config.model.latent_mode`; VAE params from `config.model.vae_params` if set,
  else random (seeded by `rng`, default `config.seed`)."""
  mode = config.model.latent_mode
  if mode not in LATENT_MODES:
    raise ValueError(f"config.model.latent_mode must be one of {LATENT_MODES}, got {mode!r}")
  if mode == "pixels":
    return LatentCodec(params=None)
  vae = vae_from_config(config.model.vae)
  rng = jax.random.key(config.seed) if rng is None else rng
  if config.model.vae_params:
    abstract = jax.eval_shape(lambda: init_vae_params(vae, rng))
    params = load_params(config.model.vae_params, abstract)
  else:
    params = init_vae_params(vae, rng)
  fields = (vae.channels, tuple(vae.channel_mult), vae.num_res_blocks, vae.latent_channels)
  return LatentCodec(params=params, mode="vae", vae_config=fields,
                     scaling_factor=float(config.model.vae.scaling_factor),
                     shift_factor=float(config.model.vae.shift_factor))
