"""High-level loaders: a checkpoint path + the model's abstract params -> placed params."""
import os
from typing import Any

import jax
import numpy as np

from diffcamera_jax.weights import flux_layout, genfocus_layout, loader, vae_layout
from diffcamera_jax.weights.safetensors_io import SafetensorsCheckpoint


def load_flux_transformer(path: str | os.PathLike, abstract_params: Any, *,
                          shardings: Any | None = None, layout: str = "auto",
                          stream: bool | None = None) -> dict:
  """Params of a `FluxTransformer` from a local checkpoint, placed leaf by leaf.

  Args:
    path: a `.safetensors` file, a `*.safetensors.index.json`, or a directory holding one.
    abstract_params: the model's params as `jax.ShapeDtypeStruct`s (`jax.eval_shape` of
      `init`, boxed or not; with `scan_layers` the blocks are stacked). Dtypes are the target
      dtypes (e.g. bf16 for a frozen base). LoRA leaves (`lora_a`, `lora_b`) are not loaded.
    shardings: optional matching tree of shardings (else each abstract leaf's `.sharding`,
      else the default device).
    layout: "original", "diffusers" or "auto" (detected from the tensor names).
    stream: read tensors by byte range instead of memory-mapping (default: only for paths with
      a scheme, e.g. `gs://`, which stream leaf by leaf without a local copy).

  Returns:
    A nested dict with every non-LoRA leaf; merge the adapters in with
    `diffcamera_jax.models.lora.merge_params`.

  Raises:
    ValueError naming every missing, unexpected or wrong-shaped tensor.
  """
  ckpt = SafetensorsCheckpoint(path, stream)
  detected, prefix = flux_layout.detect_layout(ckpt.names())
  if layout not in ("auto", detected):
    raise ValueError(f"load_flux_transformer: layout={layout!r} but {path} is in the "
                     f"{detected!r} layout")
  flat = loader.flatten(abstract_params)
  num_layers = {p[0]: flat[p].shape[0] for p in flat if p[0] in ("double_blocks", "single_blocks")}
  recipes = flux_layout.flux_recipes(list(flat), detected, prefix, num_layers)
  return loader.load_params(ckpt, recipes, abstract_params, shardings)


def load_autoencoder(path: str | os.PathLike, abstract_params: Any, *,
                     shardings: Any | None = None, stream: bool | None = None) -> dict:
  """Params of an `AutoencoderKL` from a checkpoint (file, index or directory) in the diffusers
  layout (`vae/`) or the original single-file layout (`ae.safetensors`), detected from the names.

  Tensors of modules our VAE does not have (the unused `quant_conv`/`post_quant_conv` of other
  AutoencoderKL configs) are reported as unexpected. `stream` as in `load_flux_transformer`.
  """
  ckpt = SafetensorsCheckpoint(path, stream)
  flat = loader.flatten(abstract_params)
  recipes = vae_layout.vae_recipes({p: tuple(v.shape) for p, v in flat.items()},
                                   vae_layout.detect_layout(ckpt.names()))
  return loader.load_params(ckpt, recipes, abstract_params, shardings)


def load_genfocus_lora(path: str | os.PathLike, abstract_params: Any, *, dtype: Any = np.float32,
                       shardings: Any | None = None, stream: bool | None = None) -> dict:
  """The adapters of a Genfocus LoRA file (`deblurNet.safetensors`, `bokehNet.safetensors`) as
  `lora_a` / `lora_b` leaves of our FLUX params tree (`weights/genfocus_layout.py`).

  Args:
    path: the LoRA `.safetensors` file, tensors named as diffusers saves them
      (`transformer.<module>.lora_A.weight`; bare or peft-prefixed names and names with one adapter
      infix, `lora_A.<adapter>.weight`, load too).
    abstract_params: the base `FluxTransformer` params (shapes only, e.g. `jax.eval_shape` of
      `init`; scanned or not); the adapters take its layers' in/out sizes and layer stacking.
    dtype: dtype of the returned leaves.
    shardings: optional tree of shardings for the returned leaves.
    stream: as in `load_flux_transformer`.

  Returns:
    A nested dict holding only the adapter leaves; `models.lora.merge_params` joins it to the base.

  Raises:
    ValueError naming the file and every missing, unexpected or wrong-shaped tensor (a truncated
    file: the tensors whose bytes lie past its end; a file that is not a FLUX LoRA: some of its
    tensor names).
  """
  ckpt = SafetensorsCheckpoint(path, stream)
  prefix, adapter = genfocus_layout.detect_layout(ckpt.path, ckpt.names())
  flat = loader.flatten(abstract_params)
  num_layers = {}
  for stack in ("double_blocks", "single_blocks"):
    stacked = [p for p in flat if p[0] == stack]
    num_layers[stack] = (flat[stacked[0]].shape[0] if stacked else
                         len({p[0] for p in flat if p[0].startswith(stack + "_")}))
  scanned = any(p[0] in ("double_blocks", "single_blocks") for p in flat)
  layers = genfocus_layout.adapted_layers(num_layers, scanned)
  shape_of = lambda name: ckpt.shape(name) if name in ckpt else None
  abstract = {}
  for layer, per_layer in layers.items():
    kernel = flat[(*layer, "kernel")].shape
    rank = genfocus_layout.rank(shape_of, prefix, adapter, per_layer[0])
    stack = kernel[:-2]
    abstract[(*layer, "lora_a")] = jax.ShapeDtypeStruct((*stack, kernel[-2], rank), dtype)
    abstract[(*layer, "lora_b")] = jax.ShapeDtypeStruct((*stack, rank, kernel[-1]), dtype)
  recipes = genfocus_layout.genfocus_recipes(layers, prefix, adapter)
  return loader.load_params(ckpt, recipes, loader.unflatten(abstract), shardings)
