"""Config validation names the offending field; every shipped config passes it."""
import pathlib

import pytest
from ml_collections import config_flags  # noqa: F401  (ensures the flags module imports)

from diffcamera_jax.configs import default, gpu, tpu_v4
from diffcamera_jax.configs.validation import ConfigError, resolve_mesh_shape, validate_config


def test_default_configs_are_valid():
  validate_config(default.get_config(), num_devices=1)
  validate_config(default.get_config("tiny"), num_devices=1)
  validate_config(default.get_config("paper"), num_devices=1)
  validate_config(default.get_config("refine_depth"), num_devices=1)
  validate_config(gpu.get_config(), num_devices=1)
  validate_config(gpu.get_config("paper"), num_devices=1)
  validate_config(tpu_v4.get_config("procedural"), num_devices=16)
  from diffcamera_jax.configs import flux_lora
  for variant in ("", "1024"):
    validate_config(flux_lora.get_config(variant), num_devices=32, check_paths=False)
  validate_config(flux_lora.get_config("tiny"), num_devices=1, check_paths=False)


def test_unknown_field_is_named():
  config = default.get_config()
  config.data.batchsize = 3
  with pytest.raises(ConfigError, match=r"config\.data\.batchsize"):
    validate_config(config)


@pytest.mark.parametrize("field, value, message", [
    ("data.image_size", (30, 32), r"config\.data\.image_size"),
    ("data.blur_range", (5.0, 1.0), r"config\.data\.blur_range"),
    ("data.aperture_blades", (0, 2), r"config\.data\.aperture_blades"),
    ("objective.p_depth_drop", 1.5, r"config\.objective\.p_depth_drop"),
    ("objective.p_depth_corrupt", -0.1, r"config\.objective\.p_depth_corrupt"),
    ("objective.depth_error", "huber", r"config\.objective\.depth_error"),
    ("model.latent_mode", "latent", r"config\.model\.latent_mode"),
    ("data.source", "web", r"config\.data\.source"),
    ("train.num_steps", 0, r"config\.train\.num_steps"),
    ("model.restorer.widths", (16, 32), r"config\.model\.restorer\.widths"),
    ("model.restorer.depth_widths", (8, 0, 32), r"config\.model\.restorer\.depth_widths"),
    ("model.restorer.refine_widths", (16, 32), r"config\.model\.restorer\.refine_widths"),
    ("objective.refine_weight", -1.0, r"config\.objective\.refine_weight"),
    ("objective.uniform_search_min_gain", 0.0, r"config\.objective\.uniform_search_min_gain"),
    ("model.pixel_widths", (16, 32), r"config\.model\.pixel_widths.*expected 3"),
])
def test_bad_values_are_named(field, value, message):
  config = default.get_config()
  *sections, key = field.split(".")
  node = config
  for section in sections:
    node = node[section]
  node[key] = value
  with pytest.raises(ConfigError, match=message):
    validate_config(config)


def test_batch_must_divide_batch_shards():
  config = default.get_config()
  config.data.batch_size = 12
  config.mesh.shape = (8, 1, 1)
  with pytest.raises(ConfigError, match=r"config\.data\.batch_size=12 is not divisible"):
    validate_config(config, num_devices=8)


def test_mesh_shape_resolution():
  assert resolve_mesh_shape((-1, 1, 1), 8) == (8, 1, 1)
  assert resolve_mesh_shape((2, -1, 2), 8) == (2, 2, 2)
  with pytest.raises(ConfigError, match="needs 4 devices, found 8"):
    resolve_mesh_shape((2, 2, 1), 8)
  with pytest.raises(ConfigError, match="8 devices are not divisible by 3"):
    resolve_mesh_shape((3, -1, 1), 8)


def test_missing_paths_are_named(tmp_path: pathlib.Path):
  config = tpu_v4.get_config()
  with pytest.raises(ConfigError, match=r"config\.data\.tfds_data_dir"):
    validate_config(config)
  config.data.tfds_data_dir = str(tmp_path / "absent")
  with pytest.raises(ConfigError, match="does not exist"):
    validate_config(config)
  config.data.tfds_data_dir = str(tmp_path)
  config.model.vae_params = str(tmp_path / "no_vae")
  with pytest.raises(ConfigError, match=r"config\.model\.vae_params"):
    validate_config(config)
  config.model.vae_params = ""
  validate_config(config)


def test_flux_weights_must_exist(tmp_path: pathlib.Path):
  from diffcamera_jax.configs import flux_lora
  config = flux_lora.get_config()
  config.data.tfds_data_dir = str(tmp_path)
  with pytest.raises(ConfigError, match=r"config\.flux\.transformer_weights"):
    validate_config(config)
  config.flux.transformer_weights = str(tmp_path)
  config.flux.vae_weights = ""
  with pytest.raises(ConfigError, match=r"config\.flux\.vae_weights must name"):
    validate_config(config)


def test_refining_depth_needs_the_restoration_stage():
  config = default.get_config("paper")
  config.model.restorer.refine_depth = True
  with pytest.raises(ConfigError, match=r"refine_depth needs objective\.prior='restore'"):
    validate_config(config, num_devices=1)


def test_unknown_variant_is_an_error():
  with pytest.raises(ValueError, match="unknown variant"):
    default.get_config("huge")
