"""Name map from Genfocus's LoRA files (`deblurNet.safetensors`, `bokehNet.safetensors`) to our
FLUX params tree.

Genfocus trains with OminiControl's recipe: peft adapters on the diffusers
`FluxTransformer2DModel`, saved by `FluxPipeline.save_lora_weights`, so a tensor is named
`transformer.<diffusers module>.lora_A.weight` (`[rank, in]`) or `...lora_B.weight` (`[out, rank]`),
and the adapted modules are exactly the ones Genfocus switches per token group
(`Genfocus/pipeline/flux.py`, `specify_lora`):

  x_embedder                                  -> img_in
  transformer_blocks.N.norm1.linear           -> double_blocks_N/img_mod/lin
  transformer_blocks.N.attn.to_q, to_k, to_v  -> double_blocks_N/img_attn/qkv     (fused)
  transformer_blocks.N.attn.to_out.0          -> double_blocks_N/img_attn/proj
  transformer_blocks.N.ff.net.2               -> double_blocks_N/img_mlp/fc2
  single_transformer_blocks.N.norm.linear     -> single_blocks_N/modulation/lin
  single_transformer_blocks.N.attn.to_q, to_k, to_v, proj_mlp
                                              -> single_blocks_N/linear1           (fused)
  single_transformer_blocks.N.proj_out        -> single_blocks_N/linear2

Each becomes two leaves next to the layer's kernel, in our LoRA convention `y += (x a) b`:
`lora_a` `[in, R]` and `lora_b` `[R, out]`. For a plain module `a = A^T`, `b = B^T`. For a fused
one, `a` is the parts' `A^T` side by side (`[in, r_q + r_k + r_v]`) and `b` holds the parts' `B^T`
block-diagonally (`[r_q + r_k + r_v, 3 D]`), so `x a b = [x A_q^T B_q^T | x A_k^T B_k^T | ...]`
exactly — the separate projections' updates, concatenated as our fused kernel concatenates them.
Ranks are read from the file (each module may have its own). peft's alpha is not stored and not
needed: Genfocus sets every adapter's scale to exactly 1 on the tokens it applies to.
"""
import re
from collections.abc import Callable

import jax

from diffcamera_jax.weights.loader import Path, Recipe, Source

_PREFIXES = ("transformer.", "base_model.model.", "")  # diffusers file, peft model, bare names

_TOP = {("img_in",): ("x_embedder",)}
_DOUBLE = {
    ("img_mod", "lin"): ("norm1.linear",),
    ("img_attn", "qkv"): ("attn.to_q", "attn.to_k", "attn.to_v"),
    ("img_attn", "proj"): ("attn.to_out.0",),
    ("img_mlp", "fc2"): ("ff.net.2",),
}
_SINGLE = {
    ("modulation", "lin"): ("norm.linear",),
    ("linear1",): ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"),
    ("linear2",): ("proj_out",),
}
_BLOCKS = {"double_blocks": ("transformer_blocks", _DOUBLE),
           "single_blocks": ("single_transformer_blocks", _SINGLE)}
_LORA_NAME = re.compile(r"(?P<module>.+)\.lora_(?P<which>[AB])(?:\.(?P<adapter>[^.]+))?\.weight")


def detect_layout(path: str, names: list[str]) -> tuple[str, str | None]:
  """(prefix, adapter name or None) of a diffusers/peft FLUX LoRA file from its tensor names.

  Raises one ValueError naming the file (and a few of its tensors) for anything else: a base
  checkpoint, a kohya/ComfyUI LoRA (`lora_down`/`lora_up`), or a file mixing several adapters.
  """
  matches = [m for m in map(_LORA_NAME.fullmatch, names) if m]
  sample = sorted(names)[:6]
  if not matches:
    raise ValueError(f"{path}: not a FLUX LoRA in the diffusers/peft layout (no tensor named "
                     f"'<module>.lora_A.weight'; kohya-style 'lora_down'/'lora_up' files are not "
                     f"supported); its tensors include {sample}")
  adapters = sorted({m.group("adapter") for m in matches if m.group("adapter")})
  if len(adapters) > 1:
    raise ValueError(f"{path}: holds several adapters {adapters}; save one adapter per file")
  roots = ("x_embedder", "transformer_blocks.", "single_transformer_blocks.")
  for prefix in _PREFIXES:
    if any(m.group("module").startswith(tuple(prefix + r for r in roots)) for m in matches):
      return prefix, (adapters[0] if adapters else None)
  raise ValueError(f"{path}: a LoRA file, but not for a diffusers FLUX transformer (no "
                   f"x_embedder / transformer_blocks / single_transformer_blocks modules); its "
                   f"tensors include {sample}")


def adapted_layers(num_layers: dict[str, int], scanned: bool) -> dict[Path, list[tuple[str, ...]]]:
  """`{our layer path: [diffusers modules of layer 0, of layer 1, ...]}` for every adapted layer.

  Unscanned trees have one entry per block (`double_blocks_3/img_attn/qkv`, one layer); scanned
  trees one per stack (`double_blocks/img_attn/qkv`, a list over the stacked layers).
  """
  out: dict[Path, list[tuple[str, ...]]] = {path: [mods] for path, mods in _TOP.items()}
  for ours, (theirs, table) in _BLOCKS.items():
    for sub, mods in table.items():
      per_layer = [tuple(f"{theirs}.{i}.{m}" for m in mods) for i in range(num_layers[ours])]
      if scanned:
        out[(ours, *sub)] = per_layer
      else:
        for i, layer_mods in enumerate(per_layer):
          out[(f"{ours}_{i}", *sub)] = [layer_mods]
  return out


def tensor_name(prefix: str, adapter: str | None, module: str, which: str) -> str:
  """The file's name of `module`'s `lora_A` / `lora_B` weight."""
  infix = f".{adapter}" if adapter else ""
  return f"{prefix}{module}.lora_{which}{infix}.weight"


def rank(ckpt_shape: Callable[[str], tuple[int, ...] | None], prefix: str, adapter: str | None,
         modules: tuple[str, ...]) -> int:
  """Total rank of the (fused) modules as the file stores them: each part's `lora_A` rows (or
  `lora_B` columns when A is absent); 0 for parts the file lacks (reported as missing later)."""
  total = 0
  for m in modules:
    a = ckpt_shape(tensor_name(prefix, adapter, m, "A"))
    b = ckpt_shape(tensor_name(prefix, adapter, m, "B"))
    if a is not None and len(a) == 2:
      total += a[0]
    elif b is not None and len(b) == 2:
      total += b[1]
  return total


def genfocus_recipes(layers: dict[Path, list[tuple[str, ...]]], prefix: str,
                     adapter: str | None) -> dict[Path, Recipe]:
  """Recipes of the `lora_a` / `lora_b` leaves of every adapted layer (see the module doc)."""
  recipes = {}
  for path, per_layer in layers.items():
    stacked = path[0] in _BLOCKS  # a scanned stack
    names = lambda mods, which: tuple(tensor_name(prefix, adapter, m, which) for m in mods)
    recipes[(*path, "lora_a")] = Recipe(
        tuple(Source(names(mods, "A"), "linear") for mods in per_layer), stacked)
    recipes[(*path, "lora_b")] = Recipe(
        tuple(Source(names(mods, "B"), "linear", block_diagonal=True) for mods in per_layer),
        stacked)
  return recipes


def adapter_shapes(abstract_params, rank: int, dtype) -> dict:
  """Shapes (`jax.ShapeDtypeStruct`) of one stage's adapter leaves as `load_genfocus_lora` builds
  them from a file whose every projection has rank `rank` (fused layers: `rank x parts`), for
  scanned base params `abstract_params`: what time and memory plans need without a file."""
  flat = {tuple(k.key for k in p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(
      abstract_params)[0]}
  num_layers = {s: next(leaf.shape[0] for p, leaf in flat.items() if p[0] == s)
                for s in ("double_blocks", "single_blocks")}
  out: dict = {}
  for layer, per_layer in adapted_layers(num_layers, scanned=True).items():
    kernel, r = flat[(*layer, "kernel")].shape, rank * len(per_layer[0])
    node = out
    for name in layer:
      node = node.setdefault(name, {})
    node["lora_a"] = jax.ShapeDtypeStruct((*kernel[:-2], kernel[-2], r), dtype)
    node["lora_b"] = jax.ShapeDtypeStruct((*kernel[:-2], r, kernel[-1]), dtype)
  return out

