"""Up-front config checks: every problem is reported naming the config field, before any work.

The schema is `configs/default.py`: a config may only carry the fields it defines (a typo in a
config file or an override is an error, not a silently ignored key).
"""
from __future__ import annotations

import os
from typing import Iterable

import ml_collections

from diffcamera_jax.configs import schema
from diffcamera_jax import sharding
from diffcamera_jax.cli import UserError

_MESH_AXES = ("data", "fsdp", "tensor")


class ConfigError(UserError):
  """A config field has an impossible or missing value."""


def unknown_fields(config: ml_collections.ConfigDict) -> list[str]:
  """Fields of `config` that the schema (configs/default.py) does not define."""
  return sorted(set(schema.flatten(config)) - set(schema.schema_fields()))


def resolve_mesh_shape(shape: Iterable[int], num_devices: int) -> tuple[int, ...]:
  """`sharding.resolve_mesh_shape` (one -1 fills the devices), failing as a `ConfigError`."""
  shape = tuple(int(s) for s in shape)
  if len(shape) != len(_MESH_AXES):
    raise ConfigError(f"config.mesh.shape must have {len(_MESH_AXES)} entries {_MESH_AXES}, got {shape}")
  try:
    return sharding.resolve_mesh_shape(shape, num_devices)
  except ValueError as error:
    raise ConfigError(str(error)) from None


def validate_config(config: ml_collections.ConfigDict, *, num_devices: int | None = None,
                    check_paths: bool = True) -> None:
  """Raises `ConfigError` naming the first offending field; returns None when the config is sound."""
  extra = unknown_fields(config)
  if extra:
    raise ConfigError(f"unknown config field(s): {', '.join('config.' + e for e in extra)}")
  data, model = config.data, config.model

  height, width = (int(v) for v in data.image_size)
  if height <= 0 or width <= 0:
    raise ConfigError(f"config.data.image_size={tuple(data.image_size)} must be positive")
  stride = model.patch_size * (8 if model.latent_mode == "vae" else 1)
  if height % stride or width % stride:
    raise ConfigError(
        f"config.data.image_size={(height, width)} must be divisible by {stride} "
        f"(config.model.patch_size={model.patch_size} in latent_mode={model.latent_mode!r})")
  if model.latent_mode not in ("pixels", "vae"):
    raise ConfigError(f"config.model.latent_mode={model.latent_mode!r}: expected 'pixels' or 'vae'")
  if model.name not in ("dit", "flux", "regression"):
    raise ConfigError(f"config.model.name={model.name!r}: expected 'dit', 'flux' or 'regression'")
  if model.name == "regression":
    o = config.objective
    if model.latent_mode != "pixels" or o.prior != "none" or o.residual or o.prediction != "x0":
      raise ConfigError("config.model.name='regression' (the learned baseline) regresses the image "
                        "itself: it needs model.latent_mode='pixels', objective.prior='none', "
                        "objective.residual=False and objective.prediction='x0'")
  if model.remat not in ("none", "full", "dots"):
    raise ConfigError(f"config.model.remat={model.remat!r}: expected 'none', 'full' or 'dots'")
  pixel_widths = tuple(model.pixel_widths)
  if model.defocus_map and not pixel_widths:
    raise ConfigError("config.model.defocus_map=True feeds the pixel stem: it needs "
                      "config.model.pixel_widths")
  if pixel_widths:
    levels = int(model.patch_size).bit_length() - 1
    if model.name != "dit" or model.patch_size < 2 or 2 ** levels != model.patch_size:
      raise ConfigError(f"config.model.pixel_widths={pixel_widths} needs the DiT with a patch "
                        f"size that is a power of two >= 2, got {model.name!r} with patch "
                        f"{model.patch_size}")
    if len(pixel_widths) != levels or min(int(w) for w in pixel_widths) <= 0:
      raise ConfigError(f"config.model.pixel_widths={pixel_widths}: expected {levels} positive "
                        f"channel counts (strides 1 to {model.patch_size // 2})")
  for field in ("dtype", "param_dtype"):
    if model[field] not in schema.DTYPE_NAMES:
      raise ConfigError(f"config.model.{field}={model[field]!r}: expected one of "
                        f"{sorted(schema.DTYPE_NAMES)}")

  low, high = data.blur_range
  if not 0 <= low <= high:
    raise ConfigError(f"config.data.blur_range={tuple(data.blur_range)} must satisfy 0 <= low <= high")
  for field in ("p_source_all_in_focus", "p_target_all_in_focus"):
    if not 0.0 <= data[field] <= 1.0:
      raise ConfigError(f"config.data.{field}={data[field]} must be a probability in [0, 1]")
  if not 0.0 <= config.objective.p_depth_drop <= 1.0:
    raise ConfigError(f"config.objective.p_depth_drop={config.objective.p_depth_drop} must be in [0, 1]")
  if not 0.0 <= config.objective.p_depth_corrupt <= 1.0:
    raise ConfigError(f"config.objective.p_depth_corrupt={config.objective.p_depth_corrupt} "
                      "must be in [0, 1]")
  if config.objective.depth_error not in ("abs", "squared"):
    raise ConfigError(f"config.objective.depth_error={config.objective.depth_error!r}: expected "
                      "'abs' or 'squared'")
  if config.model.restorer.refine_depth and config.objective.prior != "restore":
    raise ConfigError("config.model.restorer.refine_depth needs objective.prior='restore' "
                      f"(the restoration stage), got {config.objective.prior!r}")
  prior = config.objective.prior
  if prior not in ("none", "render", "restore"):
    raise ConfigError(f"config.objective.prior={prior!r}: expected 'none', 'render' or 'restore'")
  if prior != "none" and model.name != "dit":
    raise ConfigError(f"config.objective.prior={prior!r} needs config.model.name='dit', got "
                      f"{model.name!r}")
  if prior != "none" and not config.objective.residual:
    raise ConfigError(f"config.objective.prior={prior!r} needs config.objective.residual=True "
                      "(the flow generates the change from the prior)")
  if prior == "restore":
    restorer = model.restorer
    for name in ("widths", "depth_widths", "refine_widths"):
      widths = tuple(restorer[name])
      if len(widths) != 3 or min(widths) <= 0:
        raise ConfigError(f"config.model.restorer.{name}={widths}: expected three positive "
                          "channel counts (full, 1/2 and 1/4 resolution)")
    if not restorer.radii or min(restorer.radii) <= 0:
      raise ConfigError(f"config.model.restorer.radii={tuple(restorer.radii)} must be positive")
    if restorer.regularization <= 0:
      raise ConfigError(f"config.model.restorer.regularization={restorer.regularization} must "
                        "be > 0")
    for field in ("restore_weight", "depth_weight", "blur_map_weight", "restore_mse_floor",
                  "refine_weight"):
      if config.objective[field] < 0:
        raise ConfigError(f"config.objective.{field}={config.objective[field]} must be >= 0")
  if config.objective.stack_weight < 0:
    raise ConfigError(f"config.objective.stack_weight={config.objective.stack_weight} must be >= 0")
  flow_floor = config.objective.flow_mse_floor
  if flow_floor < 0:
    raise ConfigError(f"config.objective.flow_mse_floor={flow_floor} must be >= 0")
  if flow_floor > 0 and config.objective.prediction != "x0":
    raise ConfigError(f"config.objective.flow_mse_floor={flow_floor} applies to "
                      "objective.prediction='x0' only; set it to 0 for "
                      f"{config.objective.prediction!r}")
  for blades in data.aperture_blades:
    if blades < 0 or blades in (1, 2):
      raise ConfigError(f"config.data.aperture_blades contains {blades}: use 0 (disk) or >= 3")
  if data.source not in ("procedural", "tfds"):
    raise ConfigError(f"config.data.source={data.source!r}: expected 'procedural' or 'tfds'")
  if data.batch_size <= 0:
    raise ConfigError(f"config.data.batch_size={data.batch_size} must be positive")
  if data.num_workers < 0:
    raise ConfigError(f"config.data.num_workers={data.num_workers} must be >= 0")
  for field in ("num_steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
    if config.train[field] <= 0:
      raise ConfigError(f"config.train.{field}={config.train[field]} must be positive")

  if num_devices is not None:
    mesh_shape = resolve_mesh_shape(config.mesh.shape, num_devices)
    batch_shards = mesh_shape[0] * mesh_shape[1]
    if data.batch_size % batch_shards:
      raise ConfigError(
          f"config.data.batch_size={data.batch_size} is not divisible by the {batch_shards} batch "
          f"shards of config.mesh.shape={mesh_shape} (data x fsdp)")

  if check_paths:
    _check_paths(config)


def _path_exists(path: str) -> bool:
  if "://" in path:  # Bucket paths are checked where they are read, with the runtime's credentials.
    return True
  return os.path.exists(path)


def _check_paths(config: ml_collections.ConfigDict) -> None:
  data, model = config.data, config.model
  if data.source == "tfds":
    if not data.tfds_data_dir or "YOUR_BUCKET" in data.tfds_data_dir:
      raise ConfigError("config.data.tfds_data_dir must name the prepared dataset directory "
                        f"(got {data.tfds_data_dir!r})")
    if not _path_exists(data.tfds_data_dir):
      raise ConfigError(f"config.data.tfds_data_dir={data.tfds_data_dir!r} does not exist")
  if model.vae_params and not _path_exists(model.vae_params):
    raise ConfigError(f"config.model.vae_params={model.vae_params!r} does not exist")
  if model.name == "flux":
    for field in ("transformer_weights", "vae_weights"):
      path = config.flux[field]
      if not path and config.flux.variant == "tiny":
        continue  # the tiny variant starts from a random transformer and VAE
      if not path:
        raise ConfigError(f"config.flux.{field} must name the local FLUX weights (model.name='flux')")
      if not os.path.exists(path):
        raise ConfigError(f"config.flux.{field}={path!r} does not exist (weights are read from "
                          "local disk: copy them from the bucket to each host first)")
    if config.flux.text_embeddings and not os.path.exists(config.flux.text_embeddings):
      raise ConfigError(f"config.flux.text_embeddings={config.flux.text_embeddings!r} does not exist")
