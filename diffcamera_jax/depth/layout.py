"""Tensor names of Depth Anything V2 checkpoints, and the model sizes they imply.

Two layouts load into `depth.model.DepthAnything`:

- `hf`: `transformers`' `DepthAnythingForDepthEstimation` (`model.safetensors` of
  `depth-anything/Depth-Anything-V2-{Small,Base,Large}-hf`, usually with its `config.json`):
  `backbone.encoder.layer.N.attention.attention.{query,key,value}`, `neck.fusion_stage.layers.J...`.
- `original`: the authors' `depth_anything_v2_vit{s,b,l}.pth` state dict, converted to
  safetensors unchanged by `tools/convert_depth_anything.py`: `pretrained.blocks.N.attn.qkv`,
  `depth_head.scratch.refinenetI...` (fusion stage J is refinenet 4 - J).

Sizes come from `config.json` when one sits beside the weights (the Hugging Face download), else
from the tensor shapes; which blocks feed the decoder is not in the shapes, so it is taken from
the released variant of the same width and depth. Tensors the network never uses (DINOv2's
`mask_token`, the coarsest fusion stage's lateral unit) may be present.
"""
from __future__ import annotations

import dataclasses
import os
import re

from diffcamera_jax.depth.model import VARIANTS, DepthAnythingConfig
from diffcamera_jax.user_files import parse_json, read_json_object
from diffcamera_jax.weights.loader import Path, Recipe, Source
from diffcamera_jax.weights.safetensors_io import SafetensorsCheckpoint

LAYOUTS = ("hf", "original")

_HF_LAYER = "backbone.encoder.layer.{i}."
_ORIGINAL_LAYER = "pretrained.blocks.{i}."
_FIXED = {  # our path (joined by "/") -> (hf name, original name), without .weight/.bias
    "backbone/patch_embed": ("backbone.embeddings.patch_embeddings.projection",
                             "pretrained.patch_embed.proj"),
    "backbone/layernorm": ("backbone.layernorm", "pretrained.norm"),
    "head/conv1": ("head.conv1", "depth_head.scratch.output_conv1"),
    "head/conv2": ("head.conv2", "depth_head.scratch.output_conv2.0"),
    "head/conv3": ("head.conv3", "depth_head.scratch.output_conv2.2"),
}
_PARAMETERS = {  # whole-tensor parameters
    "backbone/cls_token": ("backbone.embeddings.cls_token", "pretrained.cls_token"),
    "backbone/position_embeddings": ("backbone.embeddings.position_embeddings",
                                     "pretrained.pos_embed"),
}
_BLOCK = {  # encoder block module -> (hf suffix, original suffix)
    "norm1": ("norm1", "norm1"), "norm2": ("norm2", "norm2"),
    "attention_out": ("attention.output.dense", "attn.proj"),
    "fc1": ("mlp.fc1", "mlp.fc1"), "fc2": ("mlp.fc2", "mlp.fc2"),
}


def unused_tensor(name: str) -> bool:
  """Tensors a checkpoint may hold that inference never reads."""
  return bool(re.fullmatch(
      r"(backbone\.embeddings|pretrained)\.mask_token"
      r"|neck\.fusion_stage\.layers\.0\.residual_layer1\..*"
      r"|depth_head\.scratch\.refinenet4\.resConfUnit1\..*", name))


def detect_layout(names: list[str]) -> str:
  if any(n.startswith("backbone.") for n in names):
    return "hf"
  if any(n.startswith("pretrained.") for n in names):
    return "original"
  raise ValueError(f"not a Depth Anything checkpoint: no 'backbone.*' (transformers) or "
                   f"'pretrained.*' (original) tensors; found {sorted(names)[:5]}...")


def _suffix(leaf: str) -> str:
  return "bias" if leaf == "bias" else "weight"


def _module_name(path: Path, layout: str, num_stages: int) -> str:
  """The checkpoint module name (no `.weight`/`.bias`) of a params leaf's module."""
  hf = layout == "hf"
  key = "/".join(path[:-1])
  if key in _FIXED:
    return _FIXED[key][0 if hf else 1]
  if m := re.fullmatch(r"backbone/layer_(\d+)/(\w+)", key):
    i, module = m.group(1), m.group(2)
    prefix = (_HF_LAYER if hf else _ORIGINAL_LAYER).format(i=i)
    if module.startswith("layer_scale"):
      n = module[-1]
      return prefix + (f"layer_scale{n}" if hf else f"ls{n}")
    return prefix + _BLOCK[module][0 if hf else 1]
  if m := re.fullmatch(r"neck/reassemble_(\d+)_(projection|resize)", key):
    i, part = m.groups()
    if hf:
      return f"neck.reassemble_stage.layers.{i}.{part}"
    return f"depth_head.{'projects' if part == 'projection' else 'resize_layers'}.{i}"
  if m := re.fullmatch(r"neck/conv_(\d+)", key):
    i = int(m.group(1))
    return f"neck.convs.{i}" if hf else f"depth_head.scratch.layer{i + 1}_rn"
  if m := re.fullmatch(r"neck/fusion_(\d+)/(\w+)(?:/(\w+))?", key):
    j, part, conv = int(m.group(1)), m.group(2), m.group(3)
    if hf:
      return f"neck.fusion_stage.layers.{j}.{part}" + (f".{conv}" if conv else "")
    prefix = f"depth_head.scratch.refinenet{num_stages - j}"
    if part == "projection":
      return f"{prefix}.out_conv"
    return f"{prefix}.resConfUnit{part[-1]}.conv{conv[-1]}"
  raise ValueError(f"no checkpoint name for params leaf {'/'.join(path)}")


def recipes(leaves: dict[Path, tuple[int, ...]], layout: str, num_stages: int) -> dict[Path, Recipe]:
  """Recipe for every leaf of a `DepthAnything` params tree, given `{path: shape}`."""
  if layout not in LAYOUTS:
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
  out = {}
  for path, shape in leaves.items():
    key, leaf = "/".join(path), path[-1]
    if key in _PARAMETERS:
      out[path] = Recipe((Source((_PARAMETERS[key][LAYOUTS.index(layout)],)),))
      continue
    if path[-2] == "qkv":
      if layout == "hf":
        prefix = _HF_LAYER.format(i=path[1].split("_")[1]) + "attention.attention."
        names = tuple(f"{prefix}{p}.{_suffix(leaf)}" for p in ("query", "key", "value"))
      else:
        names = (_ORIGINAL_LAYER.format(i=path[1].split("_")[1]) + f"attn.qkv.{_suffix(leaf)}",)
      out[path] = Recipe((Source(names, "linear" if leaf == "kernel" else "none"),))
      continue
    module = _module_name(path, layout, num_stages)
    if leaf == "lambda1":
      name = module + (".lambda1" if layout == "hf" else ".gamma")
    else:
      name = f"{module}.{_suffix(leaf)}"
    transform = "none"
    if leaf == "kernel":
      transform = "conv" if len(shape) == 4 else "linear"
    out[path] = Recipe((Source((name,), transform),))
  return out


# ---------------------------------------------------------------------------- model sizes


def _from_hf_config(config: dict) -> DepthAnythingConfig:
  backbone = config.get("backbone_config") or {}
  if backbone.get("model_type", "dinov2") != "dinov2":
    raise ValueError(f"backbone {backbone.get('model_type')!r} is not DINOv2")
  layers = int(backbone.get("num_hidden_layers", 12))
  if backbone.get("out_indices"):
    out_indices = tuple(int(i) for i in backbone["out_indices"])
  elif backbone.get("out_features"):
    out_indices = tuple(int(s.removeprefix("stage")) for s in backbone["out_features"])
  else:
    raise ValueError("config.json names no backbone out_indices/out_features")
  image_size, patch = int(backbone.get("image_size", 518)), int(backbone.get("patch_size", 14))
  if backbone.get("use_swiglu_ffn"):
    raise ValueError("DINOv2 with a SwiGLU MLP (giant) is not supported")
  return DepthAnythingConfig(
      hidden_size=int(backbone.get("hidden_size", 384)), num_layers=layers,
      num_heads=int(backbone.get("num_attention_heads", 6)), out_indices=out_indices,
      neck_hidden_sizes=tuple(int(v) for v in config.get("neck_hidden_sizes", (48, 96, 192, 384))),
      fusion_hidden_size=int(config.get("fusion_hidden_size", 64)),
      head_hidden_size=int(config.get("head_hidden_size", 32)),
      reassemble_factors=tuple(float(v) for v in config.get("reassemble_factors", (4, 2, 1, 0.5))),
      patch_size=patch, position_grid=image_size // patch,
      mlp_ratio=float(backbone.get("mlp_ratio", 4)),
      layer_norm_eps=float(backbone.get("layer_norm_eps", 1e-6)),
      depth_estimation_type=config.get("depth_estimation_type", "relative"),
      max_depth=float(config.get("max_depth") or 1.0))


def _from_shapes(ckpt: SafetensorsCheckpoint, layout: str) -> DepthAnythingConfig:
  """Sizes from the tensor shapes; the decoder taps from the released variant of that size."""
  hf = layout == "hf"
  names = ckpt.names()
  cls = ckpt.shape("backbone.embeddings.cls_token" if hf else "pretrained.cls_token")
  hidden = cls[-1]
  pattern = r"backbone\.encoder\.layer\.(\d+)\." if hf else r"pretrained\.blocks\.(\d+)\."
  layers = 1 + max(int(m.group(1)) for n in names if (m := re.match(pattern, n)))
  matches = [v for v in VARIANTS.values() if (v.hidden_size, v.num_layers) == (hidden, layers)]
  if not matches:
    raise ValueError(f"{ckpt.path}: a {layers}-block encoder of width {hidden} is not a released "
                     f"Depth Anything V2 variant; put its config.json beside the weights")
  base = matches[0]
  positions = ckpt.shape("backbone.embeddings.position_embeddings" if hf else "pretrained.pos_embed")
  grid = int(round((positions[1] - 1) ** 0.5))
  neck = tuple(ckpt.shape(f"neck.reassemble_stage.layers.{i}.projection.weight" if hf else
                          f"depth_head.projects.{i}.weight")[0] for i in range(4))
  fusion = ckpt.shape("neck.convs.0.weight" if hf else "depth_head.scratch.layer1_rn.weight")[0]
  head = ckpt.shape("head.conv2.weight" if hf else "depth_head.scratch.output_conv2.0.weight")[0]
  patch = ckpt.shape("backbone.embeddings.patch_embeddings.projection.weight" if hf else
                     "pretrained.patch_embed.proj.weight")[-1]
  return dataclasses.replace(base, neck_hidden_sizes=neck, fusion_hidden_size=fusion,
                             head_hidden_size=head, position_grid=grid, patch_size=patch)


def infer_config(ckpt: SafetensorsCheckpoint, layout: str, variant: str = "auto"
                 ) -> DepthAnythingConfig:
  """The model sizes for `ckpt`: a named variant, `config.json` beside it, or its shapes."""
  if variant != "auto":
    if variant not in VARIANTS:
      raise ValueError(f"unknown Depth Anything variant {variant!r}; expected one of "
                       f"{['auto', *VARIANTS]}")
    return VARIANTS[variant]
  folder = os.path.dirname(os.path.abspath(ckpt.path))
  config_path = os.path.join(folder, "config.json")
  if layout == "hf" and os.path.lexists(config_path):
    fields = read_json_object(config_path, "Depth Anything config")
    try:
      return _from_hf_config(fields)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
      raise ValueError(f"{config_path}: not a usable Depth Anything config ({e})") from None
  metadata = ckpt.metadata()
  if "config" in metadata:  # written by tools/convert_depth_anything.py --config
    try:
      fields = parse_json(metadata["config"], f"{ckpt.path}: 'config' metadata")
      return DepthAnythingConfig(**{k: tuple(v) if isinstance(v, list) else v
                                    for k, v in fields.items()})
    except (ValueError, TypeError, AttributeError) as e:
      raise ValueError(f"{ckpt.path}: unusable 'config' metadata ({e})") from None
  if metadata.get("variant") in VARIANTS:
    return VARIANTS[metadata["variant"]]
  return _from_shapes(ckpt, layout)
