"""Model families behind one interface: what inference needs of a DiT, a FLUX + LoRA or a
regression-baseline export.

`load_model(config, params, ...)` returns a `LoadedModel`: the network, its codec, the complete
params (a FLUX export's frozen base streamed in and merged), the token count at a working size,
and the restoration stage's disparity estimate where the model has one. No other stage asks
which family a model belongs to.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from diffcamera_jax.cli import one_line
from diffcamera_jax.models import build_model, lora
from diffcamera_jax.sharding import make_mesh


@dataclasses.dataclass
class LoadedModel:
  """A network ready to sample: `model`, `codec`, complete `params`."""

  model: Any
  codec: Any
  params: Any
  _estimate: Callable | None = None

  @property
  def multiple(self) -> int:
    """Image pixels per token side: working images are padded to a multiple of it."""
    return int(self.codec.downsample * self.model.patch_size)

  def sequence(self, padded_hw: tuple[int, int]) -> tuple[int, int]:
    """(tokens per example, attention heads) at a padded working size."""
    grid = (padded_hw[0] // self.multiple) * (padded_hw[1] // self.multiple)
    return self.model.sequence_length(grid), self.model.attention_heads

  def estimate_disparity(self, images: np.ndarray) -> np.ndarray | None:
    """The restoration stage's disparity estimates `[N, h, w]` of working images `[N, h, w, 3]`,
    or None for a model without the stage."""
    if getattr(self.model, "restorer", None) is None:
      return None
    if self._estimate is None:
      self._estimate = jax.jit(lambda params, image: self.model.apply(
          {"params": params}, image, None, jnp.zeros((image.shape[0],), bool),
          method="restore")[1])
    return np.asarray(self._estimate(self.params, jnp.asarray(images)))


def _build(config: ml_collections.ConfigDict):
  """`build_model`, with a missing FLUX VAE or text-embeddings file named as the export's."""
  try:
    return build_model(config)
  except FileNotFoundError as e:
    if config.model.name != "flux":
      raise
    raise ValueError(f"{e} (recorded in the export's config.json; override the VAE with "
                     "vae_weights / --vae-weights)") from None


def _load_dit(config, params, *, fold_lora: bool) -> LoadedModel:
  """A DiT or regression export: the network its config builds, with the exported params."""
  del fold_lora  # no adapters
  model, codec = _build(config)
  return LoadedModel(model, codec, params)


def _load_flux(config, params, *, fold_lora: bool) -> LoadedModel:
  """An exported FLUX run: its LoRA and condition params merged with the frozen base streamed
  from `config.flux.transformer_weights` into the mesh of this host's devices (the "tiny"
  variant without weights: its seeded random base, as in training). With `fold_lora`, the
  adapters are folded into the base kernels and the model runs without them."""
  from diffcamera_jax.models.flux_diffcamera import load_frozen_base
  model, codec = _build(config)
  path = config.flux.transformer_weights
  try:
    frozen, _ = load_frozen_base(config, model, codec, make_mesh(config))
  except (FileNotFoundError, ValueError) as e:
    raise ValueError(f"FLUX base transformer {path or '(none recorded)'} (the export's "
                     f"config.flux.transformer_weights; override with base_weights / "
                     f"--base-weights): {one_line(str(e))}") from None
  try:
    params = lora.merge_params(params, frozen)
  except ValueError as e:
    raise ValueError(f"the exported params do not fit the FLUX model of its config: {e}") from None
  if fold_lora and model.lora is not None:
    params = lora.fold_lora(params, model.lora)
    model = model.clone(lora=None)
  return LoadedModel(model, codec, params)


_LOADERS = {"dit": _load_dit, "flux": _load_flux, "regression": _load_dit}


def load_model(config: ml_collections.ConfigDict, params: Any, *,
               base_weights: str | None = None, vae_weights: str | None = None,
               fold_lora: bool = False) -> tuple[ml_collections.ConfigDict, LoadedModel]:
  """`(config, LoadedModel)` of an export's config and params. `base_weights` / `vae_weights`
  replace the FLUX files the config records (the returned config says which were used)."""
  name = config.model.name
  if name not in _LOADERS:
    raise ValueError(f"model config: model.name {name!r} is not one of {sorted(_LOADERS)}")
  if base_weights or vae_weights:
    if name != "flux":
      raise ValueError("base_weights / vae_weights (--base-weights / --vae-weights) apply to "
                       f"FLUX exports only; this is a {name!r} model")
    config = ml_collections.ConfigDict(config.to_dict())
    config.flux.transformer_weights = base_weights or config.flux.transformer_weights
    config.flux.vae_weights = vae_weights or config.flux.vae_weights
  return config, _LOADERS[name](config, params, fold_lora=fold_lora)


__all__ = ["LoadedModel", "load_model"]
