"""FLUX VAE: encode/decode parity with diffusers on committed fixtures, latent normalisation."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax import weights
from diffcamera_jax.models import autoencoder as ae


@pytest.fixture(scope="module")
def vae_and_params(fixtures_dir, vae_config, vae_io):
  vae = ae.AutoencoderKL(ae.AutoencoderConfig.from_diffusers(vae_config))
  abstract = jax.eval_shape(vae.init, jax.random.key(0), vae_io["images"])["params"]
  return vae, weights.load_autoencoder(os.path.join(fixtures_dir, "vae"), abstract)


def test_encode_matches_diffusers(vae_and_params, vae_io):
  vae, params = vae_and_params
  mean, logvar = jax.jit(lambda p, x: vae.apply({"params": p}, x, method=ae.AutoencoderKL.encode))(
      params, vae_io["images"])
  assert np.abs(np.asarray(mean) - vae_io["mean"]).max() <= 1e-4
  assert np.abs(np.asarray(logvar) - vae_io["logvar"]).max() <= 1e-4


def test_decode_matches_diffusers(vae_and_params, vae_io):
  vae, params = vae_and_params
  decoded = jax.jit(lambda p, z: vae.apply({"params": p}, z, method=ae.AutoencoderKL.decode))(
      params, vae_io["latents"])
  assert np.abs(np.asarray(decoded) - vae_io["decoded"]).max() <= 1e-4


def test_codec_applies_flux_shift_and_scale(vae_and_params, vae_io):
  vae, params = vae_and_params
  codec = ae.FluxCodec(params=params, config=vae.config)
  images01 = (vae_io["images"] + 1.0) / 2.0
  latents = codec.encode(jnp.asarray(images01))
  expected = (vae_io["mean"] - 0.1159) * 0.3611
  np.testing.assert_allclose(np.asarray(latents), expected, atol=1e-4)
  z = jnp.asarray(vae_io["latents"])
  images = codec.decode((z - 0.1159) * 0.3611)
  np.testing.assert_allclose(np.asarray(images), np.clip((vae_io["decoded"] + 1) / 2, 0, 1),
                             atol=1e-4)
  assert codec.latent_shape((32, 48)) == (8, 12, 16)


def test_posterior_sample_uses_the_variance(vae_and_params, vae_io):
  vae, params = vae_and_params
  images01 = jnp.asarray((vae_io["images"] + 1.0) / 2.0)
  a = ae.images_to_latents(vae, params, images01, rng=jax.random.key(0))
  b = ae.images_to_latents(vae, params, images01, rng=jax.random.key(1))
  mode = ae.images_to_latents(vae, params, images01)
  noise = (np.asarray(a) - np.asarray(mode)) / 0.3611 / np.exp(0.5 * vae_io["logvar"])
  assert abs(noise.std() - 1.0) < 0.1 and not np.allclose(a, b)


def test_bad_shapes_are_reported(vae_and_params):
  vae, params = vae_and_params
  with pytest.raises(ValueError, match="multiples of 4"):
    vae.apply({"params": params}, jnp.zeros((1, 30, 32, 3)), method=ae.AutoencoderKL.encode)
  with pytest.raises(ValueError, match="latents must be"):
    vae.apply({"params": params}, jnp.zeros((1, 4, 4, 3)), method=ae.AutoencoderKL.decode)
  with pytest.raises(ValueError, match="not divisible"):
    ae.FluxCodec(params=params, config=vae.config).latent_shape((30, 32))
  with pytest.raises(ValueError, match="norm_num_groups"):
    ae.AutoencoderConfig(block_out_channels=(8, 12), norm_num_groups=8)


def test_original_single_file_layout_loads_identical_params(fixtures_dir, vae_config, vae_io,
                                                            vae_and_params):
  """`ae.safetensors` (black-forest-labs' names, 1 x 1 conv attention, decoder levels counted
  from the finest) loads to exactly the params of the diffusers layout."""
  _, params = vae_and_params
  vae = ae.AutoencoderKL(ae.AutoencoderConfig.from_diffusers(vae_config))
  abstract = jax.eval_shape(vae.init, jax.random.key(0), vae_io["images"])["params"]
  original = weights.load_autoencoder(os.path.join(fixtures_dir, "ae_original.safetensors"),
                                      abstract)
  jax.tree_util.tree_map(np.testing.assert_array_equal, original, params)


def test_vae_of_another_kind_is_rejected(tmp_path, vae_config, vae_io):
  vae = ae.AutoencoderKL(ae.AutoencoderConfig.from_diffusers(vae_config))
  abstract = jax.eval_shape(vae.init, jax.random.key(0), vae_io["images"])["params"]
  weights.save_file(str(tmp_path / "x.safetensors"), {"encoder.layers.0.w": np.zeros(2, np.float32)})
  with pytest.raises(ValueError, match="not a FLUX VAE checkpoint"):
    weights.load_autoencoder(str(tmp_path / "x.safetensors"), abstract)
