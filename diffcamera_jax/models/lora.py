"""Low-rank adapters (LoRA) for a frozen base model: the dense layer, optimiser masking, files.

A targeted projection computes `y = x W + b + (alpha / rank) · (x A) B` with `A` `[in, rank]`
and `B` `[rank, out]`. `B` starts at zero, so at initialisation the adapted model is bit-for-bit
the base model. Only `A`, `B` (and whatever new condition modules a model adds) are trained: the
optimiser is wrapped so the frozen base gets no update and no optimiser state.

The adapter leaves are named `lora_a` / `lora_b` inside their dense layer, so a LoRA-only file
is the flat `{path: array}` subset of the params tree with those names. The tree utilities here
accept boxed (`nn.LogicallyPartitioned`) trees and return plain nested dicts.
"""
import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from diffcamera_jax.weights import loader, safetensors_io

Dtype = Any
LORA_LEAVES = ("lora_a", "lora_b")


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
  """Rank, scale and which dense layers (by module name, e.g. "qkv", "fc1") get an adapter."""
  rank: int = 0
  alpha: float = 1.0
  targets: tuple[str, ...] = ()
  param_dtype: Dtype = jnp.float32

  def __post_init__(self):
    if self.rank < 0:
      raise ValueError(f"LoRAConfig.rank must be >= 0, got {self.rank}")
    if self.rank and not self.targets:
      raise ValueError("LoRAConfig.targets is empty although rank > 0")

  @property
  def scale(self) -> float:
    return self.alpha / self.rank if self.rank else 0.0

  def applies_to(self, module_name: str) -> bool:
    """True if the dense layer called `module_name` carries an adapter."""
    return self.rank > 0 and module_name in self.targets


class LoRADense(nn.Module):
  """`nn.Dense` with logical axis names and an optional low-rank adapter.

  `kernel_axes` are the logical names of the kernel `[in, out]`. `A` `[in, rank]` and `B`
  `[rank, out]` carry the same two names (the rank axis takes the one its matrix lacks), so with
  FSDP every adapter is sharded too instead of replicated on each chip.
  """
  features: int
  kernel_axes: tuple[str | None, str | None] = (None, None)
  use_bias: bool = True
  lora: LoRAConfig | None = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    in_axis, out_axis = self.kernel_axes
    kernel = self.param("kernel", nn.with_logical_partitioning(self.kernel_init, self.kernel_axes),
                        (x.shape[-1], self.features), self.param_dtype)
    x = x.astype(self.dtype)
    y = jnp.dot(x, kernel.astype(self.dtype))
    if self.use_bias:
      bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros_init(),
                                                             (out_axis,)),
                        (self.features,), self.param_dtype)
      y = y + bias.astype(self.dtype)
    if self.lora is not None and self.lora.rank > 0:
      # kaiming-uniform A (bound 1/sqrt(fan_in)), zero B: the adapter starts as an exact no-op.
      a_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
      a = self.param("lora_a", nn.with_logical_partitioning(a_init, (in_axis, out_axis)),
                     (x.shape[-1], self.lora.rank), self.lora.param_dtype)
      b = self.param("lora_b", nn.with_logical_partitioning(nn.initializers.zeros_init(),
                                                            (in_axis, out_axis)),
                     (self.lora.rank, self.features), self.lora.param_dtype)
      delta = jnp.dot(jnp.dot(x, a.astype(self.dtype)), b.astype(self.dtype))
      y = y + (self.lora.scale * delta).astype(y.dtype)
    return y


# ----------------------------------------------------------------------------- masks, optimiser


def _path_names(path) -> tuple[str, ...]:
  return tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def trainable_mask(params: Any, trainable_modules: Iterable[str] = ()) -> Any:
  """Pytree of bools like `params`: True for LoRA leaves and anything under `trainable_modules`.

  `trainable_modules` are module names (any path component), e.g. the new condition
  projections of a conditioned model; everything else is the frozen base.
  """
  modules = frozenset(trainable_modules)

  def is_trainable(path, _):
    names = _path_names(path)
    return names[-1] in LORA_LEAVES or any(n in modules for n in names)

  return jax.tree_util.tree_map_with_path(is_trainable, nn.meta.unbox(params))


def split_params(params: Any, mask: Any) -> tuple[dict, dict]:
  """(trainable, frozen) nested dicts holding the leaves where `mask` is True / False."""
  flat = _flatten(params)
  flat_mask = _flatten(mask)
  trainable = {k: v for k, v in flat.items() if flat_mask[k]}
  frozen = {k: v for k, v in flat.items() if not flat_mask[k]}
  return _unflatten(trainable), _unflatten(frozen)


def merge_params(*trees: Mapping) -> dict:
  """Union of nested dicts with disjoint leaves (e.g. loaded base + initialised adapters)."""
  out: dict[tuple[str, ...], Any] = {}
  for tree in trees:
    for k, v in _flatten(tree).items():
      if k in out:
        raise ValueError(f"merge_params: leaf {'/'.join(k)} is present in two trees")
      out[k] = v
  return _unflatten(out)


def flatten_paths(tree: Any) -> list[tuple[str, ...]]:
  """Leaf paths of a nested dict, as tuples of names."""
  return list(_flatten(tree))


def drop_paths(tree: Any, paths: Iterable[tuple[str, ...]]) -> dict:
  """`tree` without the leaves at `paths`."""
  paths = set(paths)
  return _unflatten({k: v for k, v in _flatten(tree).items() if k not in paths})


def fold_lora(params: Any, config: LoRAConfig) -> Any:
  """Base params with every adapter folded into its kernel (`W + scale·A B`), adapters removed.

  For inference: the folded model costs exactly the base model's FLOPs.
  """
  def fold(tree):
    if not isinstance(tree, Mapping):
      return tree
    out = {k: fold(v) for k, v in tree.items() if k not in LORA_LEAVES}
    if "lora_a" in tree and "lora_b" in tree:
      kernel = tree["kernel"]
      a, b = tree["lora_a"], tree["lora_b"]
      # Scanned layers carry a leading layer axis: batch the product over it.
      delta = jnp.einsum("...ir,...ro->...io", a.astype(jnp.float32), b.astype(jnp.float32))
      out["kernel"] = (kernel.astype(jnp.float32) + config.scale * delta).astype(kernel.dtype)
    return out

  return fold(params)


# ----------------------------------------------------------------------------- LoRA-only files


def lora_state(params: Any, mask: Any | None = None) -> dict[str, np.ndarray]:
  """Flat `{"a/b/lora_a": array}` of the trainable leaves (LoRA leaves when `mask` is None)."""
  flat = _flatten(params)
  if mask is None:
    keep = {k for k in flat if k[-1] in LORA_LEAVES}
  else:
    flat_mask = _flatten(mask)
    keep = {k for k in flat if flat_mask[k]}
  return {"/".join(k): np.asarray(jax.device_get(flat[k])) for k in sorted(keep)}


def save_lora(path: str, params: Any, config: LoRAConfig, mask: Any | None = None) -> None:
  """Writes the adapter (and condition) leaves of `params` to a `.safetensors` file."""
  metadata = {"lora_rank": str(config.rank), "lora_alpha": str(config.alpha),
              "lora_targets": json.dumps(list(config.targets))}
  safetensors_io.save_file(path, lora_state(params, mask), metadata=metadata)


def load_lora(path: str, params: Any,
              place: Callable[[tuple[str, ...], np.ndarray], jax.Array] | None = None) -> Any:
  """`params` with the leaves stored in the LoRA file at `path` replaced by the stored values.

  Every stored leaf must exist in `params` with the same shape; a mismatch is reported by name.
  `place(path, array)` puts a leaf on device (default: with the sharding and dtype of the leaf
  it replaces).
  """
  flat = _flatten(params)
  stored = safetensors_io.SafetensorsCheckpoint(path)
  problems = []
  for name in stored.names():
    key = tuple(name.split("/"))
    if key not in flat:
      problems.append(f"extra tensor {name!r} (no such leaf in params)")
    elif tuple(stored.shape(name)) != tuple(np.shape(flat[key])):
      problems.append(f"wrong shape for {name!r}: file {tuple(stored.shape(name))}, "
                      f"params {tuple(np.shape(flat[key]))}")
  if problems:
    raise ValueError(f"load_lora({path!r}): " + "; ".join(problems))

  def default_place(key, value):
    old = flat[key]
    value = np.asarray(value).astype(old.dtype)
    sharding = getattr(old, "sharding", None)
    return jax.device_put(value, sharding) if sharding is not None else jnp.asarray(value)

  place = place or default_place
  for name in stored.names():
    key = tuple(name.split("/"))
    flat[key] = place(key, stored.read(name))
  return _unflatten(flat)


def read_lora_config(path: str) -> LoRAConfig:
  """The `LoRAConfig` recorded in a file written by `save_lora`."""
  meta = safetensors_io.SafetensorsCheckpoint(path).metadata()
  try:
    return LoRAConfig(rank=int(meta["lora_rank"]), alpha=float(meta["lora_alpha"]),
                      targets=tuple(json.loads(meta["lora_targets"])))
  except KeyError as e:
    raise ValueError(f"read_lora_config({path!r}): metadata lacks {e}") from None


# ----------------------------------------------------------------------------- nested dict utils


_flatten = loader.flatten  # `{path: leaf}` with paths as tuples of names
_unflatten = loader.unflatten
