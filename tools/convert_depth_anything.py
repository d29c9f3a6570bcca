"""Converts an original Depth Anything V2 checkpoint (`depth_anything_v2_vit{s,b,l}.pth`) to
`.safetensors`, tensor names unchanged, for `diffcamera_jax.depth` (which reads no `.pth`).

    python tools/convert_depth_anything.py depth_anything_v2_vits.pth vits.safetensors

The variant ("small", "base", "large") is read from the encoder width and recorded in the file's
metadata; `--config JSON` records explicit sizes instead (a `DepthAnythingConfig`'s fields), for
models that are not a released variant. Needs torch (this tool only).
"""
import argparse
import json
import sys

import torch
from safetensors.torch import save_file

WIDTHS = {384: "small", 768: "base", 1024: "large"}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("checkpoint", help="the original .pth state dict")
  p.add_argument("out", help="output .safetensors")
  p.add_argument("--variant", choices=sorted(WIDTHS.values()), default=None)
  p.add_argument("--config", default=None, help="JSON of DepthAnythingConfig fields")
  args = p.parse_args(argv)
  state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
  for key in ("model", "state_dict"):
    if isinstance(state, dict) and key in state and isinstance(state[key], dict):
      state = state[key]
  if not isinstance(state, dict) or "pretrained.cls_token" not in state:
    print(f"convert_depth_anything: {args.checkpoint}: not an original Depth Anything V2 state "
          "dict (no 'pretrained.cls_token')", file=sys.stderr)
    return 2
  metadata = {"format": "pt", "layout": "original"}
  if args.config:
    metadata["config"] = json.dumps(json.loads(args.config))
  else:
    width = state["pretrained.cls_token"].shape[-1]
    variant = args.variant or WIDTHS.get(width)
    if variant is None:
      print(f"convert_depth_anything: encoder width {width} is not a released variant; pass "
            "--config", file=sys.stderr)
      return 2
    metadata["variant"] = variant
  save_file({k: v.contiguous() for k, v in state.items()}, args.out, metadata=metadata)
  print(args.out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
