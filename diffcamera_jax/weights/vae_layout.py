"""Name maps between our `AutoencoderKL` params tree and the two FLUX VAE checkpoint layouts.

*Diffusers* (`vae/diffusion_pytorch_model.safetensors`): our module names mirror it with `_N` for
list indices, so a leaf `encoder/down_blocks_0/resnets_1/conv1/kernel` is
`encoder.down_blocks.0.resnets.1.conv1.weight` (conv weights `[O, I, kh, kw]` -> `[kh, kw, I, O]`,
linear `[out, in]` -> `[in, out]`; GroupNorm `weight` is our `scale`).

*Original* (black-forest-labs' single file `ae.safetensors`): `down.{i}.block.{j}`,
`down.{i}.downsample`, `mid.block_1` / `mid.attn_1` / `mid.block_2`, `up.{i}.block.{j}`,
`up.{i}.upsample`, `norm_out`, `nin_shortcut`; the decoder's `up.{i}` counts from the finest
level while diffusers' `up_blocks.{j}` counts from the coarsest (`i = levels - 1 - j`), and the
mid-block attention projections are 1 x 1 convolutions (`q`, `k`, `v`, `proj_out`).
"""
import re

from diffcamera_jax.weights.loader import Path, Recipe, Source

DIFFUSERS, ORIGINAL = "diffusers", "original"
_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def detect_layout(names: list[str]) -> str:
  """The layout of a FLUX VAE checkpoint from its tensor names."""
  if any(n.startswith(("encoder.down_blocks.", "decoder.up_blocks.")) for n in names):
    return DIFFUSERS
  if any(n.startswith(("encoder.down.", "decoder.up.")) for n in names):
    return ORIGINAL
  raise ValueError("not a FLUX VAE checkpoint: neither 'encoder.down_blocks.*' (diffusers) nor "
                   "'encoder.down.*' (original ae.safetensors) tensors are present")


def original_name(name: str, levels: int) -> str:
  """The `ae.safetensors` name of a diffusers VAE tensor name."""
  name = re.sub(r"^(encoder|decoder)\.conv_norm_out\.", r"\1.norm_out.", name)
  name = re.sub(r"\.conv_shortcut\.", ".nin_shortcut.", name)
  name = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2.",
                name)
  name = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.",
                name)
  name = re.sub(r"^decoder\.up_blocks\.(\d+)\.",
                lambda m: f"decoder.up.{levels - 1 - int(m.group(1))}.", name)
  name = re.sub(r"^(decoder\.up\.\d+)\.resnets\.(\d+)\.", r"\1.block.\2.", name)
  name = re.sub(r"^(decoder\.up\.\d+)\.upsamplers\.0\.", r"\1.upsample.", name)
  name = re.sub(r"\.mid_block\.resnets\.(\d+)\.",
                lambda m: f".mid.block_{int(m.group(1)) + 1}.", name)
  if m := re.match(r"^(\w+)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(\w+)$",
                   name):
    name = f"{m.group(1)}.mid.attn_1.{_ATTENTION[m.group(2)]}.{m.group(3)}"
  return name


def diffusers_name(path: Path) -> str:
  """The diffusers tensor name of one params leaf."""
  *modules, leaf = path
  parts = [re.sub(r"_(\d+)$", r".\1", m) for m in modules]
  return ".".join(parts + ["bias" if leaf == "bias" else "weight"])


def vae_recipes(leaves: dict[Path, tuple[int, ...]], layout: str = DIFFUSERS) -> dict[Path, Recipe]:
  """Recipe for every leaf of an `AutoencoderKL` params tree, given `{path: shape}`."""
  if layout not in (DIFFUSERS, ORIGINAL):
    raise ValueError(f"VAE layout must be {DIFFUSERS!r} or {ORIGINAL!r}, got {layout!r}")
  levels = len({p[1] for p in leaves if p[0] == "decoder" and p[1].startswith("up_blocks_")})
  recipes = {}
  for path, shape in leaves.items():
    name = diffusers_name(path)
    transform = "none"
    if path[-1] == "kernel":
      transform = "conv" if len(shape) == 4 else "linear"
    if layout == ORIGINAL:
      name = original_name(name, levels)
      if transform == "linear":  # the mid-block attention: 1 x 1 convolutions in this layout
        transform = "pointwise"
    recipes[path] = Recipe((Source((name,), transform),))
  return recipes
