"""`build_model(config)`: the model and latent codec a config asks for (DiT, FLUX + LoRA, or the
regression baseline's U-Net)."""
import jax
import ml_collections

from data_pipeline.cameras import blur_pixels

from diffcamera_jax.models.dit import DiT
from diffcamera_jax.models.flux_diffcamera import build_flux_model
from diffcamera_jax.models.inputs import config_dtype
from diffcamera_jax.models.latents import LatentCodec, make_codec
from diffcamera_jax.models.regression import RegressionNet
from diffcamera_jax.models.restorer import Restorer
from diffcamera_jax.models.sizes import get_size


def build_model(config: ml_collections.ConfigDict,
                codec_rng: jax.Array | None = None) -> tuple[DiT, LatentCodec]:
  """(model, codec) for `config.model`; the codec's VAE params are loaded or randomly initialised.

  `model.name="dit"`: (DiT, LatentCodec). `model.name="regression"`: (RegressionNet, pixel
  LatentCodec), the learned baseline. `model.name="flux"`: (FluxDiffCamera, FluxCodec) from
  `flux_diffcamera.build_flux_model` (its frozen base comes from `training.state.frozen_base`).
  """
  m = config.model
  if m.name == "flux":
    return build_flux_model(config, codec_rng)
  if m.name == "regression":
    d = config.data
    top = max(blur_pixels(d.blur_range[1], d.image_size, d.blur_reference_size), 1.0)
    return (RegressionNet(widths=tuple(m.regression_widths), blur_top=top),
            make_codec(config, codec_rng))
  if m.name != "dit":
    raise ValueError(f"config.model.name must be 'dit', 'flux' or 'regression', got {m.name!r}")
  if m.patch_size <= 0:
    raise ValueError(f"config.model.patch_size must be positive, got {m.patch_size}")
  codec = make_codec(config, codec_rng)
  model = DiT(
      size=get_size(m.size), patch_size=m.patch_size, latent_channels=codec.latent_channels,
      depth_mode=m.depth_mode, camera_frequencies=m.camera_frequencies, rope_theta=m.rope_theta,
      mlp_activation=m.mlp_activation, dropout_rate=m.dropout, remat=m.remat,
      scan_layers=m.scan_layers, attention_chunk=m.attention_chunk,
      use_prior=config.objective.prior != "none", pixel_widths=tuple(m.pixel_widths),
      camera_adaln=bool(m.camera_adaln), defocus_map=bool(m.defocus_map),
      restorer=build_restorer(config),
      dtype=config_dtype(m.dtype, "dtype"), param_dtype=config_dtype(m.param_dtype, "param_dtype"))
  return model, codec


def build_restorer(config: ml_collections.ConfigDict) -> Restorer | None:
  """The restoration stage for `objective.prior="restore"` (`config.model.restorer`), else None."""
  if config.objective.prior != "restore":
    return None
  r = config.model.restorer
  return Restorer(widths=tuple(r.widths), depth_widths=tuple(r.depth_widths),
                  radii=tuple(r.radii),
                  depth_size=int(max(config.data.image_size)),
                  gamma=float(config.data.gamma), regularization=float(r.regularization),
                  refine_depth=bool(r.refine_depth), refine_widths=tuple(r.refine_widths),
                  dtype=config_dtype(config.model.dtype, "dtype"),
                  param_dtype=config_dtype(config.model.param_dtype, "param_dtype"))
