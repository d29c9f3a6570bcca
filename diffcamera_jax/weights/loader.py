"""Streams checkpoint tensors into a Flax params tree, one leaf at a time, straight onto devices.

A *recipe* says how one params leaf is built from checkpoint tensors: which tensors (concatenated
along their first axis, e.g. q, k, v into a fused qkv), whether to swap the two halves (adaLN
(scale, shift) vs. (shift, scale)), and how to lay out a torch weight (`linear`: `[out, in]` ->
`[in, out]`; `conv`: `[O, I, kh, kw]` -> `[kh, kw, I, O]`; `pointwise`: a 1 x 1 conv `[O, I, 1, 1]`
used as a linear layer -> `[I, O]`). A scanned leaf stacks one such build
per layer. All recipes are checked against the checkpoint header and the abstract params (shapes
only, nothing read) before any data moves; then each leaf is read from the memory-mapped file,
cast, and placed with `jax.make_array_from_callback` so every device copies only its own shard.
At most one leaf is ever materialised on the host. A source may also place its tensors
block-diagonally instead of concatenating them (`block_diagonal`): how per-projection LoRA
up-matrices become one up-matrix of a fused projection (q, k, v -> qkv), exact for every input.
"""
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from diffcamera_jax.weights.safetensors_io import SafetensorsCheckpoint

Path = tuple[str, ...]
_TRANSFORMS = ("none", "linear", "conv", "pointwise")


@dataclasses.dataclass(frozen=True)
class Source:
  """Checkpoint tensors (concatenated on axis 0) that make one leaf, and how to lay them out.

  `block_diagonal`: 2-D tensors `[o_i, r_i]` are placed on the diagonal of a zero
  `[sum o_i, sum r_i]` matrix instead of being concatenated.
  """
  names: tuple[str, ...]
  transform: str = "none"  # "none" | "linear" | "conv" | "pointwise"
  swap_halves: bool = False
  block_diagonal: bool = False

  def __post_init__(self):
    if self.transform not in _TRANSFORMS:
      raise ValueError(f"Source.transform={self.transform!r}; expected one of {_TRANSFORMS}")
    if self.block_diagonal and (self.swap_halves or self.transform not in ("none", "linear")):
      raise ValueError("Source.block_diagonal combines only with transform 'none' or 'linear'")


@dataclasses.dataclass(frozen=True)
class Recipe:
  """One Source per layer; `stacked` leaves get a leading layer axis (scanned blocks)."""
  layers: tuple[Source, ...]
  stacked: bool = False


def _source_shape(ckpt: SafetensorsCheckpoint, src: Source) -> tuple[int, ...]:
  shapes = [ckpt.shape(n) for n in src.names]
  if src.block_diagonal:
    if any(len(s) != 2 for s in shapes):
      raise ValueError(f"tensors {list(src.names)} are not all 2-D: shapes {shapes}")
    shape = (sum(s[0] for s in shapes), sum(s[1] for s in shapes))
    return shape[::-1] if src.transform == "linear" else shape
  if any(s[1:] != shapes[0][1:] for s in shapes):
    raise ValueError(f"tensors {list(src.names)} cannot be concatenated: shapes {shapes}")
  shape = (sum(s[0] for s in shapes), *shapes[0][1:])
  if src.transform == "linear":
    shape = shape[::-1]
  elif src.transform == "conv":
    if len(shape) != 4:
      raise ValueError(f"tensor {src.names[0]!r} is not a 4-D conv weight: {shape}")
    shape = (shape[2], shape[3], shape[1], shape[0])
  elif src.transform == "pointwise":
    if len(shape) != 4 or shape[2:] != (1, 1):
      raise ValueError(f"tensor {src.names[0]!r} is not a 1 x 1 conv weight: {shape}")
    shape = (shape[1], shape[0])
  return shape


def recipe_shape(ckpt: SafetensorsCheckpoint, recipe: Recipe) -> tuple[int, ...]:
  """The shape the recipe builds, from the checkpoint header only."""
  shapes = [_source_shape(ckpt, s) for s in recipe.layers]
  if recipe.stacked:
    if any(s != shapes[0] for s in shapes):
      raise ValueError(f"layers of a stacked leaf differ in shape: {sorted(set(shapes))}")
    return (len(shapes), *shapes[0])
  return shapes[0]


def build(ckpt: SafetensorsCheckpoint, recipe: Recipe, dtype: Any) -> np.ndarray:
  """The host array of one leaf, in `dtype`."""
  def one(src: Source) -> np.ndarray:
    parts = [ckpt.read(n) for n in src.names]
    if src.block_diagonal:
      a = np.zeros((sum(p.shape[0] for p in parts), sum(p.shape[1] for p in parts)), dtype)
      row = col = 0
      for p in parts:
        a[row:row + p.shape[0], col:col + p.shape[1]] = p
        row, col = row + p.shape[0], col + p.shape[1]
      return a.T if src.transform == "linear" else a
    a = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    if src.swap_halves:
      half = a.shape[0] // 2
      a = np.concatenate([a[half:], a[:half]], axis=0)
    if src.transform == "linear":
      a = a.T
    elif src.transform == "conv":
      a = a.transpose(2, 3, 1, 0)
    elif src.transform == "pointwise":
      a = a[:, :, 0, 0].T
    return np.asarray(a, dtype=dtype)

  if recipe.stacked:
    return np.stack([one(s) for s in recipe.layers])
  return one(recipe.layers[0])


def flatten(tree: Any) -> dict[Path, Any]:
  """`{path: leaf}` of a (possibly boxed) params tree, paths as tuples of names."""
  leaves = jax.tree_util.tree_flatten_with_path(nn.meta.unbox(tree))[0]
  return {tuple(str(getattr(k, "key", k)) for k in p): v for p, v in leaves}


def unflatten(flat: Mapping[Path, Any]) -> dict:
  out: dict = {}
  for key, value in flat.items():
    node = out
    for k in key[:-1]:
      node = node.setdefault(k, {})
    node[key[-1]] = value
  return out


def check(ckpt: SafetensorsCheckpoint, recipes: Mapping[Path, Recipe],
          abstract: Mapping[Path, Any], allow_unused: Callable[[str], bool] = lambda n: False
          ) -> None:
  """Raises one ValueError naming every missing, unexpected or wrong-shaped tensor."""
  problems = []
  used = set()
  for path, recipe in recipes.items():
    names = [n for s in recipe.layers for n in s.names]
    used.update(names)
    missing = [n for n in names if n not in ckpt]
    leaf = "/".join(path)
    if missing:
      problems.append(f"missing tensor(s) {missing} for params leaf {leaf}")
      continue
    try:
      shape = recipe_shape(ckpt, recipe)
    except ValueError as e:
      problems.append(f"params leaf {leaf}: {e}")
      continue
    expected = tuple(abstract[path].shape)
    if shape != expected:
      problems.append(f"wrong shape for params leaf {leaf} from {names[:4]}"
                      f"{'...' if len(names) > 4 else ''}: checkpoint gives {shape}, "
                      f"model expects {expected}")
  extra = sorted(n for n in ckpt.names() if n not in used and not allow_unused(n))
  if extra:
    problems.append(f"unexpected tensor(s) in checkpoint: {extra}")
  if problems:
    raise ValueError(f"{ckpt.path}: checkpoint does not match the model:\n  " +
                     "\n  ".join(problems))


def load_params(ckpt: SafetensorsCheckpoint, recipes: Mapping[Path, Recipe], abstract: Any,
                shardings: Any | None = None,
                allow_unused: Callable[[str], bool] = lambda n: False) -> dict:
  """Nested dict of the recipe leaves, each a `jax.Array` with the abstract leaf's dtype.

  `abstract`: params tree of `jax.ShapeDtypeStruct` (e.g. `jax.eval_shape(model.init, ...)`),
  boxed or not. Placement: `shardings` (a matching tree of `jax.sharding.Sharding`), else the
  abstract leaf's own `.sharding` if it has one, else the default device.
  """
  flat = flatten(abstract)
  unknown = [p for p in recipes if p not in flat]
  if unknown:
    raise ValueError(f"recipes for leaves not in the params tree: {['/'.join(p) for p in unknown]}")
  check(ckpt, recipes, flat, allow_unused)
  flat_shardings = flatten(shardings) if shardings is not None else {}
  out = {}
  for path, recipe in recipes.items():
    leaf = flat[path]
    host = build(ckpt, recipe, leaf.dtype)
    sharding = flat_shardings.get(path) or getattr(leaf, "sharding", None)
    if sharding is None:
      out[path] = jax.device_put(host)
    else:
      out[path] = jax.make_array_from_callback(host.shape, sharding, lambda idx, h=host: h[idx])
    del host
  return unflatten(out)
