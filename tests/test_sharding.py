"""Mesh construction and logical-axis shardings (single device; 8-device runs are in
test_train_step_sharded)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, PartitionSpec as P

from diffcamera_jax.configs.default import get_config
from diffcamera_jax.testing.sharded_steps import bytes_per_device
from diffcamera_jax.sharding import (batch_spec, logical_rules,
                                     logical_shardings, make_mesh, resolve_mesh_shape,
                                     shard_batch)


def test_resolve_mesh_shape_fills_minus_one():
  assert resolve_mesh_shape((-1, 2, 1), 8) == (4, 2, 1)
  assert resolve_mesh_shape((2, 2, 2), 8) == (2, 2, 2)
  with pytest.raises(ValueError, match="not divisible"):
    resolve_mesh_shape((-1, 3, 1), 8)
  with pytest.raises(ValueError, match="needs 4 devices"):
    resolve_mesh_shape((2, 2, 1), 8)
  with pytest.raises(ValueError, match="at most one -1"):
    resolve_mesh_shape((-1, -1, 1), 8)


def test_make_mesh_uses_auto_axes():
  mesh = make_mesh(get_config())
  assert mesh.axis_names == ("data", "fsdp", "tensor")
  assert tuple(mesh.axis_types) == (AxisType.Auto,) * 3
  assert mesh.devices.size == jax.device_count()


def test_rules_map_params_and_batches():
  rules = logical_rules(get_config())
  assert batch_spec(4, rules) == P(("data", "fsdp"), None, None, None)
  assert nn.logical_to_mesh_axes(("embed", "mlp"), rules) == P("fsdp", "tensor")
  # An activation's embed dim is not sharded once batch has taken fsdp.
  assert nn.logical_to_mesh_axes(("batch", "length", "embed"), rules) == P(("data", "fsdp"),
                                                                            None, None)


def test_logical_shardings_of_boxed_and_plain_leaves():
  config = get_config()
  mesh, rules = make_mesh(config), logical_rules(config)
  tree = {"w": nn.Partitioned(jax.ShapeDtypeStruct((4, 8), jnp.float32), ("embed", "mlp")),
          "step": jax.ShapeDtypeStruct((), jnp.int32)}
  shardings = logical_shardings(tree, mesh, rules)
  assert shardings["w"].spec == P("fsdp", "tensor")
  assert shardings["step"].spec == P()


def test_shard_batch_and_bytes_per_device():
  config = get_config()
  mesh, rules = make_mesh(config), logical_rules(config)
  host = {"image": np.ones((4, 8, 8, 3), np.float32), "blur": np.arange(4, dtype=np.float32)}
  batch = shard_batch(host, mesh, rules)
  assert batch["image"].shape == (4, 8, 8, 3)
  assert batch["image"].sharding.spec == P(("data", "fsdp"), None, None, None)
  np.testing.assert_array_equal(batch["blur"], host["blur"])
  assert sum(bytes_per_device(batch).values()) == 4 * 8 * 8 * 3 * 4 + 4 * 4
