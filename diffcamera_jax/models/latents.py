"""The latent codec: images in [0, 1] <-> the space the DiT denoises.

`pixels`: latents are the image scaled to [-1, 1] (the DiT patchifies them itself).
`vae`: latents are `(mean - shift) * scale` of a frozen AutoencoderKL encoder — the FLUX VAE
architecture of `models/autoencoder.py`, sized by `config.model.vae` (`vae_config`); at
`channels=128, channel_mult=(1, 2, 4, 4), num_res_blocks=2, latent_channels=16` it is the FLUX.1 VAE
and `config.model.vae_params` may name its diffusers weights (a `vae/` directory or file).
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

from diffcamera_jax.models.autoencoder import (AutoencoderConfig, AutoencoderKL, latent_grid,
                                               images_to_latents, latents_to_images)
from diffcamera_jax.weights import SafetensorsCheckpoint, load_autoencoder

LATENT_MODES = ("pixels", "vae")


@struct.dataclass
class LatentCodec:
  """`encode(images [..., H, W, 3] in [0, 1]) -> latents`, `decode(latents) -> images`."""
  params: Any  # VAE params (None in pixel mode)
  mode: str = struct.field(pytree_node=False, default="pixels")
  # The VAE's architecture and latent normalisation (None in pixel mode).
  vae_config: AutoencoderConfig | None = struct.field(pytree_node=False, default=None)

  @property
  def vae(self) -> AutoencoderKL:
    return AutoencoderKL(self.vae_config)

  @property
  def downsample(self) -> int:
    """Image pixels per latent pixel along each axis."""
    return 1 if self.mode == "pixels" else self.vae_config.downsample_factor

  @property
  def latent_channels(self) -> int:
    return 3 if self.mode == "pixels" else self.vae_config.latent_channels

  def latent_shape(self, image_hw: tuple[int, int]) -> tuple[int, int, int]:
    """`(h, w, C)` of the latents of an `image_hw` image; raises if `image_hw` does not divide."""
    return latent_grid(image_hw, self.downsample, self.latent_channels)

  def encode(self, images: jnp.ndarray) -> jnp.ndarray:
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"LatentCodec.encode: images must be [B, H, W, 3], got {images.shape}")
    self.latent_shape(images.shape[1:3])
    images = images.astype(jnp.float32)
    if self.mode == "pixels":
      return 2.0 * images - 1.0
    return images_to_latents(self.vae, self.params, images)

  def decode(self, latents: jnp.ndarray) -> jnp.ndarray:
    if latents.ndim != 4 or latents.shape[-1] != self.latent_channels:
      raise ValueError(f"LatentCodec.decode: latents must be [B, h, w, {self.latent_channels}], "
                       f"got {latents.shape}")
    x = latents.astype(jnp.float32)
    if self.mode == "vae":
      return latents_to_images(self.vae, self.params, x)
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


def _norm_groups(channels: tuple[int, ...]) -> int:
  """GroupNorm groups: 32 (the FLUX VAE) if every width allows it, else the largest that does."""
  return next(g for g in (32, 16, 8, 4, 2, 1) if all(c % g == 0 for c in channels))


def vae_config_from_config(vae: ml_collections.ConfigDict) -> AutoencoderConfig:
  """`config.model.vae` -> `AutoencoderConfig`: widths `channels * channel_mult`, `num_res_blocks`
  ResNet blocks per level, `latent_channels`, the latent scaling/shift, and GroupNorm groups
  (`norm_num_groups` if the config has that field, else 32 or the largest that divides)."""
  widths = tuple(int(vae.channels) * int(m) for m in vae.channel_mult)
  groups = int(vae.get("norm_num_groups", 0)) or _norm_groups(widths)
  return AutoencoderConfig(latent_channels=int(vae.latent_channels), block_out_channels=widths,
                           layers_per_block=int(vae.num_res_blocks), norm_num_groups=groups,
                           scaling_factor=float(vae.scaling_factor),
                           shift_factor=float(vae.shift_factor))


def vae_from_config(vae_config: ml_collections.ConfigDict) -> AutoencoderKL:
  return AutoencoderKL(vae_config_from_config(vae_config))


@functools.partial(jax.jit, static_argnums=0)
def init_vae_params(vae: AutoencoderKL, rng: jax.Array) -> Any:
  """Random VAE params (conv params do not depend on the image size); compiled once per VAE."""
  side = 2 * vae.config.downsample_factor
  variables = vae.init(rng, jnp.zeros((1, side, side, 3), jnp.float32))
  return nn.unbox(variables["params"])


def _is_diffusers_vae(path: str) -> bool:
  """A diffusers-layout VAE (directory, index or file with dotted tensor names)."""
  if os.path.isdir(path) or path.endswith(".json"):
    return True
  return not any("/" in name for name in SafetensorsCheckpoint(path).names())


def make_codec(config: ml_collections.ConfigDict, rng: jax.Array | None = None) -> LatentCodec:
  """The codec for `config.model.latent_mode`; VAE params from `config.model.vae_params` if set
  (a file written by `save_params`, or diffusers weights of the same architecture), else random
  (seeded by `rng`, default `config.seed`)."""
  mode = config.model.latent_mode
  if mode not in LATENT_MODES:
    raise ValueError(f"config.model.latent_mode must be one of {LATENT_MODES}, got {mode!r}")
  if mode == "pixels":
    return LatentCodec(params=None)
  vae = vae_from_config(config.model.vae)
  rng = jax.random.key(config.seed) if rng is None else rng
  path = config.model.vae_params
  if path:
    abstract = jax.eval_shape(lambda: init_vae_params(vae, rng))
    if not os.path.exists(path):
      raise FileNotFoundError(f"VAE params file {path!r} (config.model.vae_params) does not exist")
    if _is_diffusers_vae(path):
      params = load_autoencoder(path, abstract)
    else:
      params = load_params(path, abstract)
  else:
    params = init_vae_params(vae, rng)
  return LatentCodec(params=params, mode="vae", vae_config=vae.config)
