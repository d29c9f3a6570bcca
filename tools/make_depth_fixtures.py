"""Writes the Depth Anything parity fixtures under tests/fixtures/depth/ (dev-only: torch +
transformers).

Two tiny random `DepthAnythingForDepthEstimation` models of different encoder sizes (one
relative, one metric), every parameter random (norm scales and LayerScale too, so every path
matters), saved with `save_pretrained` (config.json + model.safetensors):

  tiny_a/, tiny_b/           the transformers layout
  tiny_a_original.safetensors   tiny_a renamed to the original layout (`pretrained.*`,
                             `depth_head.*`), written through tools/convert_depth_anything.py
  io.safetensors             per model: NCHW pixel inputs (a square one at the trained grid and
                             a non-square one, whose positions are interpolated) and the outputs
  sizes.json                 the transformers processor's network size for assorted photo sizes

Run: `python tools/make_depth_fixtures.py [--out tests/fixtures/depth]`. The suite reads the files
with numpy only.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
from transformers import DPTImageProcessor

MODELS = {
    "tiny_a": dict(backbone=dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                                 image_size=56, out_indices=[1, 2, 3, 4]),
                   neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, head_hidden_size=8,
                   depth_estimation_type="relative", max_depth=1,
                   inputs={"square": (56, 56), "wide": (42, 84)}),
    "tiny_b": dict(backbone=dict(hidden_size=48, num_hidden_layers=6, num_attention_heads=3,
                                 image_size=70, out_indices=[2, 3, 5, 6]),
                   neck_hidden_sizes=[12, 24, 48, 48], fusion_hidden_size=24, head_hidden_size=8,
                   depth_estimation_type="metric", max_depth=20,
                   inputs={"square": (70, 70), "tall": (98, 56)}),
}
PHOTO_SIZES = [(480, 640), (1500, 2223), (64, 43), (518, 518), (300, 1000), (1000, 300),
               (37, 50), (2000, 1333)]


def build(spec: dict, seed: int) -> DepthAnythingForDepthEstimation:
  backbone = Dinov2Config(patch_size=14, apply_layernorm=True, reshape_hidden_states=False,
                          layerscale_value=1.0, **spec["backbone"])
  config = DepthAnythingConfig(backbone_config=backbone,
                               reassemble_hidden_size=spec["backbone"]["hidden_size"],
                               neck_hidden_sizes=spec["neck_hidden_sizes"],
                               fusion_hidden_size=spec["fusion_hidden_size"],
                               head_hidden_size=spec["head_hidden_size"], patch_size=14,
                               depth_estimation_type=spec["depth_estimation_type"],
                               max_depth=spec["max_depth"])
  model = DepthAnythingForDepthEstimation(config).eval()
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=g)
      if re.search(r"norm\d?\.weight|layernorm\.weight|lambda1", name):
        p.copy_(1.0 + 0.2 * noise)
      elif name.endswith("bias"):
        p.copy_(0.1 * noise)
      else:
        fan_in = max(1, p[0].numel()) if p.ndim > 1 else p.numel()
        p.copy_(noise / fan_in ** 0.5)
    # keep the relative head's final ReLU from zeroing everything
    model.head.conv3.bias.add_(1.0)
  return model


def to_original(state: dict, num_layers: int, hidden: int) -> dict:
  """The transformers state dict renamed to the original Depth Anything V2 layout."""
  out = {}
  for name, value in state.items():
    new = name
    if m := re.fullmatch(r"backbone\.encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(\w+)", name):
      continue  # fused below
    new = re.sub(r"^backbone\.embeddings\.patch_embeddings\.projection", "pretrained.patch_embed.proj", new)
    new = re.sub(r"^backbone\.embeddings\.position_embeddings", "pretrained.pos_embed", new)
    new = re.sub(r"^backbone\.embeddings\.", "pretrained.", new)
    new = re.sub(r"^backbone\.layernorm", "pretrained.norm", new)
    new = re.sub(r"^backbone\.encoder\.layer\.(\d+)\.", r"pretrained.blocks.\1.", new)
    new = re.sub(r"layer_scale(\d)\.lambda1$", r"ls\1.gamma", new)
    new = re.sub(r"attention\.output\.dense", "attn.proj", new)
    new = re.sub(r"^neck\.reassemble_stage\.layers\.(\d+)\.projection", r"depth_head.projects.\1", new)
    new = re.sub(r"^neck\.reassemble_stage\.layers\.(\d+)\.resize", r"depth_head.resize_layers.\1", new)
    new = re.sub(r"^neck\.convs\.(\d+)", lambda m: f"depth_head.scratch.layer{int(m.group(1)) + 1}_rn", new)
    if m := re.fullmatch(r"neck\.fusion_stage\.layers\.(\d+)\.(.*)", new):
      rest = m.group(2).replace("projection", "out_conv")
      rest = re.sub(r"residual_layer(\d)\.convolution(\d)", r"resConfUnit\1.conv\2", rest)
      new = f"depth_head.scratch.refinenet{4 - int(m.group(1))}.{rest}"
    new = new.replace("head.conv1", "depth_head.scratch.output_conv1") if new.startswith("head.") else new
    new = new.replace("head.conv2", "depth_head.scratch.output_conv2.0") if new.startswith("head.") else new
    new = new.replace("head.conv3", "depth_head.scratch.output_conv2.2") if new.startswith("head.") else new
    out[new] = value
  for i in range(num_layers):
    for kind in ("weight", "bias"):
      parts = [state[f"backbone.encoder.layer.{i}.attention.attention.{p}.{kind}"]
               for p in ("query", "key", "value")]
      out[f"pretrained.blocks.{i}.attn.qkv.{kind}"] = torch.cat(parts, 0)
  return out


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                               "fixtures", "depth"))
  args = p.parse_args()
  os.makedirs(args.out, exist_ok=True)
  io = {}
  g = torch.Generator().manual_seed(7)
  for seed, (name, spec) in enumerate(MODELS.items()):
    model = build(spec, seed)
    model.save_pretrained(os.path.join(args.out, name))
    for label, (h, w) in spec["inputs"].items():
      pixels = torch.randn((2, 3, h, w), generator=g)
      with torch.no_grad():
        depth = model(pixel_values=pixels).predicted_depth
      io[f"{name}/{label}/pixels"] = pixels.contiguous()
      io[f"{name}/{label}/depth"] = depth.contiguous()
  from safetensors.torch import load_file  # the saved (released) names, not the in-memory ones
  state = load_file(os.path.join(args.out, "tiny_a", "model.safetensors"))
  backbone = MODELS["tiny_a"]["backbone"]
  original = to_original(state, backbone["num_hidden_layers"], backbone["hidden_size"])
  config = dict(hidden_size=32, num_layers=4, num_heads=2, out_indices=[1, 2, 3, 4],
                neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, head_hidden_size=8,
                position_grid=4)
  with tempfile.TemporaryDirectory() as tmp:
    pth = os.path.join(tmp, "tiny_a.pth")
    torch.save(original, pth)
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__),
                                                 "convert_depth_anything.py"), pth,
                    os.path.join(args.out, "tiny_a_original.safetensors"),
                    "--config", json.dumps(config)], check=True)
  save_file(io, os.path.join(args.out, "io.safetensors"))
  processor = DPTImageProcessor(do_resize=True, size={"height": 518, "width": 518},
                                keep_aspect_ratio=True, ensure_multiple_of=14)
  sizes = []
  for h, w in PHOTO_SIZES:
    image = np.zeros((h, w, 3), np.uint8)
    out = processor(image, return_tensors="pt").pixel_values
    sizes.append({"photo": [h, w], "network": list(out.shape[-2:])})
  with open(os.path.join(args.out, "sizes.json"), "w") as f:
    json.dump(sizes, f, indent=1)
  print(f"wrote fixtures to {args.out}")


if __name__ == "__main__":
  main()
