"""Name maps between our FLUX params tree and the two published checkpoint layouts.

*Original* (black-forest-labs single file, `flux1-dev.safetensors`): our tree mirrors it, so a
leaf `double_blocks_3/img_attn/qkv/kernel` is the transpose of `double_blocks.3.img_attn.qkv.weight`
(MLP layers `fc1`/`fc2` are `img_mlp.0`/`img_mlp.2`). Files saved from ComfyUI-style wrappers
carry a `model.diffusion_model.` prefix, which is recognised.

*Diffusers* (`transformer/diffusion_pytorch_model*.safetensors`): q, k, v are separate tensors
(concatenated here into our fused qkv, and with `proj_mlp` into single blocks' `linear1`), names
differ, and the final adaLN stores (scale, shift) where the original stores (shift, scale).
"""
import re

from diffcamera_jax.weights.loader import Path, Recipe, Source

ORIGINAL, DIFFUSERS = "original", "diffusers"
_ORIGINAL_PREFIX = "model.diffusion_model."

# Original module stem -> (diffusers module stems concatenated on the output axis, swap halves).
_TOP = {
    "img_in": ("x_embedder",), "txt_in": ("context_embedder",),
    "time_in.in_layer": ("time_text_embed.timestep_embedder.linear_1",),
    "time_in.out_layer": ("time_text_embed.timestep_embedder.linear_2",),
    "guidance_in.in_layer": ("time_text_embed.guidance_embedder.linear_1",),
    "guidance_in.out_layer": ("time_text_embed.guidance_embedder.linear_2",),
    "vector_in.in_layer": ("time_text_embed.text_embedder.linear_1",),
    "vector_in.out_layer": ("time_text_embed.text_embedder.linear_2",),
    "final_layer.linear": ("proj_out",),
    "final_layer.adaLN_modulation.1": ("norm_out.linear",),
}
_SWAPPED = {"final_layer.adaLN_modulation.1"}
_DOUBLE = {
    "img_mod.lin": ("norm1.linear",), "txt_mod.lin": ("norm1_context.linear",),
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "img_attn.norm.query_norm": ("attn.norm_q",), "img_attn.norm.key_norm": ("attn.norm_k",),
    "txt_attn.norm.query_norm": ("attn.norm_added_q",),
    "txt_attn.norm.key_norm": ("attn.norm_added_k",),
    "img_attn.proj": ("attn.to_out.0",), "txt_attn.proj": ("attn.to_add_out",),
    "img_mlp.0": ("ff.net.0.proj",), "img_mlp.2": ("ff.net.2",),
    "txt_mlp.0": ("ff_context.net.0.proj",), "txt_mlp.2": ("ff_context.net.2",),
}
_SINGLE = {
    "linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), "linear2": ("proj_out",),
    "norm.query_norm": ("attn.norm_q",), "norm.key_norm": ("attn.norm_k",),
    "modulation.lin": ("norm.linear",),
}
_BLOCKS = {"double_blocks": ("transformer_blocks", _DOUBLE),
           "single_blocks": ("single_transformer_blocks", _SINGLE)}
_RENAME = {"fc1": "0", "fc2": "2", "adaLN_modulation": "adaLN_modulation.1"}


def detect_layout(names: list[str]) -> tuple[str, str]:
  """(layout, prefix) of a FLUX transformer checkpoint from its tensor names."""
  names = set(names)
  for prefix in ("", _ORIGINAL_PREFIX):
    if f"{prefix}img_in.weight" in names:
      return ORIGINAL, prefix
  if "x_embedder.weight" in names:
    return DIFFUSERS, ""
  raise ValueError("not a FLUX transformer checkpoint: neither 'img_in.weight' (original layout) "
                   "nor 'x_embedder.weight' (diffusers layout) is present")


def _original_name(path: Path, layer: int | None) -> tuple[str, str]:
  """(module stem, param kind) of a leaf in the original layout, e.g. ('double_blocks.3.img_mlp.0', 'weight')."""
  *modules, leaf = path
  parts = []
  for m in modules:
    block = re.fullmatch(r"(double_blocks|single_blocks)(?:_(\d+))?", m)
    if block:
      index = block.group(2) if block.group(2) is not None else str(layer)
      parts += [block.group(1), index]
    else:
      parts.append(_RENAME.get(m, m))
  kind = {"kernel": "weight", "bias": "bias", "scale": "scale"}[leaf]
  return ".".join(parts), kind


def _diffusers_source(stem: str, kind: str, transform: str) -> Source:
  block = re.fullmatch(r"(double_blocks|single_blocks)\.(\d+)\.(.+)", stem)
  if block:
    new_block, table = _BLOCKS[block.group(1)]
    stems = tuple(f"{new_block}.{block.group(2)}.{s}" for s in table[block.group(3)])
  else:
    stems = _TOP[stem]
  suffix = "weight" if kind in ("weight", "scale") else "bias"
  return Source(tuple(f"{s}.{suffix}" for s in stems), transform, swap_halves=stem in _SWAPPED)


def flux_recipes(params_paths: list[Path], layout: str, prefix: str = "",
                 num_layers: dict[str, int] | None = None) -> dict[Path, Recipe]:
  """Recipe for every leaf path of a `FluxTransformer` params tree (LoRA leaves excluded).

  Scanned stacks (`double_blocks`, `single_blocks` without an index) need their layer count in
  `num_layers`.
  """
  if layout not in (ORIGINAL, DIFFUSERS):
    raise ValueError(f"layout={layout!r}; expected {ORIGINAL!r} or {DIFFUSERS!r}")
  recipes = {}
  for path in params_paths:
    if path[-1] in ("lora_a", "lora_b"):
      continue
    stacked = path[0] in _BLOCKS
    layers = range((num_layers or {})[path[0]]) if stacked else [None]
    transform = "linear" if path[-1] == "kernel" else "none"
    sources = []
    for layer in layers:
      stem, kind = _original_name(path, layer)
      if layout == ORIGINAL:
        sources.append(Source((f"{prefix}{stem}.{kind}",), transform))
      else:
        sources.append(_diffusers_source(stem, kind, transform))
    recipes[path] = Recipe(tuple(sources), stacked)
  return recipes
