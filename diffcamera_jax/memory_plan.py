"""The full sharding plan of a config, built abstractly: per-device bytes before anything runs.

    XLA_FLAGS=--xla_force_host_platform_device_count=16 \
        python -m diffcamera_jax.memory_plan --config=configs/tpu_v4.py:procedural [--compile]

Builds the mesh, the model and the sharded train state with `jax.eval_shape` (no allocation) and
sums, per device, the bytes of parameters, EMA and optimizer state from their shardings. With
`--compile`, the train step is also compiled ahead of time for abstract inputs and XLA's memory
analysis adds the step's temporaries (activations, gradients) — the figure to compare with a
chip's HBM. Fake CPU devices stand in for the chips.
"""
from __future__ import annotations

import json
import math
import sys
from typing import Any

import jax
import ml_collections
import numpy as np

from diffcamera_jax import models, sharding
from diffcamera_jax.training import state as train_state, step as train_step
from diffcamera_jax.configs.validation import validate_config
from diffcamera_jax.objective.example import Example

GIB = 2.0 ** 30


def _bytes_per_device(abstract_tree: Any) -> float:
  """Bytes one device holds for a tree of sharded `ShapeDtypeStruct`s (the largest shard)."""
  total = 0
  for leaf in jax.tree.leaves(abstract_tree):
    shard = leaf.sharding.shard_shape(leaf.shape)
    total += math.prod(shard) * np.dtype(leaf.dtype).itemsize
  return float(total)


def abstract_batch(config: ml_collections.ConfigDict, mesh: Any) -> Example:
  """One global device example (`objective.Example`) of abstract arrays, sharded over the batch
  axes."""
  rules = sharding.logical_rules(config)
  return Example.abstract(
      config.data.batch_size, tuple(config.data.image_size),
      lambda shape: jax.sharding.NamedSharding(mesh, sharding.batch_spec(len(shape), rules)))


def plan(config: ml_collections.ConfigDict, *, compile_step: bool = False) -> dict[str, Any]:
  """Per-device memory of `config`'s train state (and step, with `compile_step`) on all devices."""
  validate_config(config, num_devices=jax.device_count(), check_paths=False)
  mesh = sharding.make_mesh(config)
  model, codec = models.build_model(config)
  abstract_state, state_sharding, _ = train_state.train_state_plan(config, model, codec, mesh)
  num_params = sum(math.prod(x.shape) for x in jax.tree.leaves(abstract_state.params))
  result = {
      "devices": jax.device_count(),
      "mesh": dict(zip(mesh.axis_names, (int(s) for s in mesh.devices.shape))),
      "num_params": int(num_params),
      "gib_per_device": {
          "params": _bytes_per_device(abstract_state.params) / GIB,
          "ema_params": _bytes_per_device(abstract_state.ema_params) / GIB,
          "opt_state": _bytes_per_device(abstract_state.opt_state) / GIB,
      },
      "gib_total_state": sum(
          math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(abstract_state)
      ) / GIB,
  }
  result["gib_per_device"]["state"] = sum(result["gib_per_device"].values())
  if compile_step:
    step = train_step.make_train_step(config, model, codec, mesh, state_sharding)
    rng = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=sharding.replicated(mesh))
    compiled = step.lower(abstract_state, abstract_batch(config, mesh), rng).compile()
    memory = compiled.memory_analysis()
    result["gib_per_device"]["step_temporaries"] = memory.temp_size_in_bytes / GIB
    result["gib_per_device"]["step_total"] = (
        memory.argument_size_in_bytes + memory.temp_size_in_bytes
        + memory.output_size_in_bytes - memory.alias_size_in_bytes) / GIB
  return result


def main(argv: list[str]) -> None:
  from absl import flags
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
  flags.DEFINE_bool("compile", False, "Also compile the train step for its memory analysis.")
  flags.FLAGS(argv)
  print(json.dumps(plan(flags.FLAGS.config, compile_step=flags.FLAGS.compile), indent=2))


if __name__ == "__main__":
  main(sys.argv)
