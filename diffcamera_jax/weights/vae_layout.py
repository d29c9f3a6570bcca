"""Name map between our `AutoencoderKL` params tree and diffusers' `AutoencoderKL` checkpoints.

Our module names mirror diffusers with `_N` for list indices, so a leaf
`encoder/down_blocks_0/resnets_1/conv1/kernel` is `encoder.down_blocks.0.resnets.1.conv1.weight`
(conv weights `[O, I, kh, kw]` -> `[kh, kw, I, O]`, linear `[out, in]` -> `[in, out]`; GroupNorm
`weight` is our `scale`).
"""
import re

from diffcamera_jax.weights.loader import Path, Recipe, Source


def diffusers_name(path: Path) -> str:
  """The diffusers tensor name of one params leaf."""
  *modules, leaf = path
  parts = [re.sub(r"_(\d+)$", r".\1", m) for m in modules]
  return ".".join(parts + ["bias" if leaf == "bias" else "weight"])


def vae_recipes(leaves: dict[Path, tuple[int, ...]]) -> dict[Path, Recipe]:
  """Recipe for every leaf of an `AutoencoderKL` params tree, given `{path: shape}`."""
  recipes = {}
  for path, shape in leaves.items():
    if path[-1] == "kernel":
      transform = "conv" if len(shape) == 4 else "linear"
    else:
      transform = "none"
    recipes[path] = Recipe((Source((diffusers_name(path),), transform),))
  return recipes
