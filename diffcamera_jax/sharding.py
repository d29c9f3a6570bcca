"""Device mesh and shardings from the config.

The mesh has axes `(data, fsdp, tensor)`; parameters and activations carry logical axis names that
`config.mesh.logical_axis_rules` maps onto them (e.g. `batch -> (data, fsdp)`, `embed -> fsdp`,
`mlp/heads -> tensor`). Mesh axes are `AxisType.Auto`: sharding propagates through the program
from the in/out shardings and the logical constraints.
"""
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

LogicalRules = Sequence[tuple[str, Any]]


def resolve_mesh_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
  """Replaces a single -1 in `shape` by what fills `num_devices`; checks the product."""
  shape = tuple(int(s) for s in shape)
  if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
    raise ValueError(f"config.mesh.shape {shape}: entries must be positive, with at most one -1")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if num_devices % known:
      raise ValueError(f"config.mesh.shape {shape}: {num_devices} devices are not divisible by "
                       f"{known}")
    shape = tuple(num_devices // known if s == -1 else s for s in shape)
  if math.prod(shape) != num_devices:
    raise ValueError(f"config.mesh.shape {shape} needs {math.prod(shape)} devices, "
                     f"found {num_devices}")
  return shape


def make_mesh(config: ml_collections.ConfigDict,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """The `(data, fsdp, tensor)` mesh of `config.mesh` over `devices` (default: all devices)."""
  devices = jax.devices() if devices is None else list(devices)
  names = tuple(config.mesh.axis_names)
  shape = resolve_mesh_shape(config.mesh.shape, len(devices))
  if len(names) != len(shape):
    raise ValueError(f"config.mesh.axis_names {names} and shape {shape} differ in length")
  return jax.make_mesh(shape, names, axis_types=(AxisType.Auto,) * len(shape), devices=devices)


def logical_rules(config: ml_collections.ConfigDict) -> tuple[tuple[str, Any], ...]:
  """`config.mesh.logical_axis_rules` as the tuple of pairs Flax expects."""
  return tuple((name, tuple(axes) if isinstance(axes, list) else axes)
               for name, axes in config.mesh.logical_axis_rules)


def logical_shardings(boxed_tree: Any, mesh: Mesh, rules: LogicalRules) -> Any:
  """NamedShardings for a pytree whose leaves are (possibly abstract) `nn.Partitioned` boxes;
  unboxed leaves are replicated."""
  return nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed_tree), mesh, rules)


def batch_spec(ndim: int, rules: LogicalRules) -> PartitionSpec:
  """Partition spec of a batch array: leading axis by the `batch` rule, the rest replicated."""
  axes = nn.logical_to_mesh_axes(("batch",) + (None,) * (ndim - 1), rules)
  return PartitionSpec(*axes)


def batch_shardings(batch: Any, mesh: Mesh, rules: LogicalRules) -> Any:
  """NamedShardings for every array of a batch (leading axis = examples)."""
  return jax.tree.map(lambda x: NamedSharding(mesh, batch_spec(np.ndim(x), rules)), batch)


def shard_batch(host_batch: Any, mesh: Mesh, rules: LogicalRules) -> Any:
  """Global device arrays from this process's slice of the batch (multi-process safe)."""
  shardings = batch_shardings(host_batch, mesh, rules)
  return jax.tree.map(lambda s, x: jax.make_array_from_process_local_data(s, np.asarray(x)),
                      shardings, host_batch)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())
