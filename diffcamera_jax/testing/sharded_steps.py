"""The tiny model's train steps on a mesh, and the measures that compare layouts: relative error,
bytes per device (the sharding, sharded and multi-process train-step tests and their scripts).

JAX is imported inside the functions: the subprocess scripts set `XLA_FLAGS` before JAX starts.
"""
import numpy as np

from diffcamera_jax.testing.batches import tiny_config


def run_steps(mesh_shape, host_batch: dict, num_steps: int = 2, devices=None,
              batch_size: int = 8):
  """Creates the tiny model's state on a `mesh_shape` mesh and runs `num_steps` train steps.

  `host_batch` is this process's slice of the global batch of `batch_size` examples. Blocks on
  every step (multi-process CPU collectives must not run ahead). Returns (metrics per step as
  floats, final params as numpy, params' partition specs by path).
  """
  import jax
  from diffcamera_jax.models import build_model
  from diffcamera_jax.sharding import logical_rules, make_mesh, shard_batch
  from diffcamera_jax.training.state import create_train_state
  from diffcamera_jax.training.step import make_train_step

  config = tiny_config(batch_size=batch_size)
  config.mesh.shape = tuple(mesh_shape)
  config.objective.p_depth_drop = 0.5
  # The paper's objective: after two Adam steps, params from zero-initialised leaves amplify any
  # rounding difference ~100x, and the physics prior's FFT renders differ by ~2e-7 between
  # layouts; tests/objective/test_prior.py checks the prior's layout invariance directly.
  config.objective.prior = "none"
  model, codec = build_model(config)
  mesh = make_mesh(config, devices)
  state, state_sharding = create_train_state(config, model, codec, mesh, jax.random.key(0))
  step = make_train_step(config, model, codec, mesh, state_sharding)
  from diffcamera_jax.objective.example import Example
  batch = shard_batch(Example.from_dict(host_batch), mesh, logical_rules(config))
  history = []
  for i in range(num_steps):
    state, metrics = step(state, batch, jax.random.key(1 + i))
    jax.block_until_ready(metrics)
    history.append({k: float(v) for k, v in jax.device_get(metrics).items()})
  params = jax.tree.map(lambda x: np.asarray(jax.device_get(x)), state.params)
  specs = {jax.tree_util.keystr(p): str(x.sharding.spec)
           for p, x in jax.tree_util.tree_leaves_with_path(state.params)}
  return history, params, specs


def relative_error(a, b) -> float:
  """`|a - b| / |b|` in the 2-norm over all elements (float64)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def bytes_per_device(tree) -> dict:
  """Bytes each addressable device holds for the arrays of `tree`."""
  import jax
  totals = {}
  for leaf in jax.tree.leaves(tree):
    for shard in leaf.addressable_shards:
      totals[shard.device] = totals.get(shard.device, 0) + shard.data.nbytes
  return totals
