"""Latent codecs: exact pixel mapping; VAE shapes, params-file round trip and clear errors; the
VAE mode is the FLUX VAE architecture (loads diffusers weights)."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax.configs.default import get_config
from diffcamera_jax.models.autoencoder import AutoencoderConfig
from diffcamera_jax.models.latents import LatentCodec, make_codec, save_params
from diffcamera_jax.models.latents import vae_config_from_config
from diffcamera_jax.weights import SafetensorsCheckpoint

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "flux")


def _vae_config(**overrides):
  config = get_config("tiny")
  config.model.latent_mode = "vae"
  config.model.vae.channels = 8
  config.model.vae.channel_mult = (1, 2)
  config.model.vae.scaling_factor = 0.5
  config.model.vae.shift_factor = 0.1
  for key, value in overrides.items():
    setattr(config.model.vae, key, value)
  return config


ENCODE = jax.jit(LatentCodec.encode)
DECODE = jax.jit(LatentCodec.decode)


def test_pixel_codec_is_the_exact_affine_map():
  images = jax.random.uniform(jax.random.key(0), (2, 8, 12, 3))
  codec = make_codec(get_config("tiny"))
  latents = codec.encode(images)
  np.testing.assert_allclose(latents, 2 * images - 1, atol=1e-7)
  np.testing.assert_allclose(codec.decode(latents), images, atol=1e-6)
  assert codec.latent_shape((8, 12)) == (8, 12, 3) and codec.downsample == 1


def test_vae_codec_shapes_and_scaling(tmp_path):
  codec = make_codec(_vae_config())
  assert codec.downsample == 2 and codec.latent_channels == 4
  images = jax.random.uniform(jax.random.key(0), (2, 16, 8, 3))
  latents = ENCODE(codec, images)
  assert latents.shape == (2, 8, 4, 4)
  mean, _ = jax.jit(lambda p, x: codec.vae.apply({"params": p}, x, method=codec.vae.encode))(
      codec.params, 2 * images - 1)
  np.testing.assert_allclose(latents, (mean - 0.1) * 0.5, rtol=1e-5, atol=1e-6)
  decoded = DECODE(codec, latents)
  assert decoded.shape == images.shape
  assert float(decoded.min()) >= 0.0 and float(decoded.max()) <= 1.0


def test_vae_params_file_round_trip(tmp_path):
  path = str(tmp_path / "vae.safetensors")
  first = make_codec(_vae_config(), rng=jax.random.key(1))
  save_params(path, first.params)
  config = _vae_config()
  config.model.vae_params = path
  loaded = make_codec(config, rng=jax.random.key(2))
  images = jax.random.uniform(jax.random.key(0), (1, 8, 8, 3))
  np.testing.assert_array_equal(ENCODE(loaded, images), ENCODE(first, images))
  assert not np.allclose(ENCODE(make_codec(_vae_config(), rng=jax.random.key(2)), images),
                         ENCODE(first, images))


def test_vae_params_file_errors(tmp_path):
  path = str(tmp_path / "vae.safetensors")
  save_params(path, make_codec(_vae_config()).params)
  config = _vae_config(channels=16)
  config.model.vae_params = path
  with pytest.raises(ValueError, match="vae.safetensors"):
    make_codec(config)
  config.model.vae_params = str(tmp_path / "missing.safetensors")
  with pytest.raises(FileNotFoundError, match="vae_params"):
    make_codec(config)


def test_bad_mode_and_shapes():
  config = get_config("tiny")
  config.model.latent_mode = "wavelets"
  with pytest.raises(ValueError, match="latent_mode"):
    make_codec(config)
  vae = make_codec(_vae_config())
  with pytest.raises(ValueError, match="not divisible"):
    vae.encode(jnp.zeros((1, 7, 8, 3)))
  with pytest.raises(ValueError, match="images"):
    vae.encode(jnp.zeros((1, 8, 8, 4)))
  with pytest.raises(ValueError, match="latents"):
    vae.decode(jnp.zeros((1, 4, 4, 3)))


def test_vae_mode_is_the_flux_vae_architecture():
  from diffcamera_jax.configs import tpu_v4
  assert vae_config_from_config(tpu_v4.get_config().model.vae) == AutoencoderConfig()
  tiny = vae_config_from_config(_vae_config().model.vae)
  assert tiny.block_out_channels == (8, 16) and tiny.norm_num_groups == 8
  assert (tiny.scaling_factor, tiny.shift_factor) == (0.5, 0.1)


def test_diffusers_vae_weights_load_as_vae_params():
  """The committed diffusers fixture (reference outputs from diffusers) through `make_codec`."""
  config = _vae_config(channels=8, channel_mult=(1, 2, 2), latent_channels=16,
                       scaling_factor=0.3611, shift_factor=0.1159)
  config.model.vae.norm_num_groups = 4
  config.model.vae_params = os.path.join(FIXTURES, "vae")
  codec = make_codec(config)
  io = SafetensorsCheckpoint(os.path.join(FIXTURES, "vae_io.safetensors"))
  images, mean = (np.asarray(io.read(n)) for n in ("images", "mean"))
  latents = ENCODE(codec, jnp.asarray((images + 1.0) / 2.0))
  np.testing.assert_allclose(latents, (mean - 0.1159) * 0.3611, atol=1e-4)
