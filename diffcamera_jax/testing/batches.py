"""Shared helpers for the train-step tests and their subprocess scripts (config, random batches)."""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from diffcamera_jax.configs.default import get_config  # pylint: disable=wrong-import-position


def tiny_config(batch_size: int = 8, image_size=(16, 16)):
  """The tiny config on small images; full-depth dropout and stacking so every branch runs."""
  config = get_config("tiny")
  config.data.batch_size = batch_size
  config.data.image_size = tuple(image_size)
  config.model.patch_size = 4
  config.optim.warmup_steps = 2
  config.train.num_steps = 100
  return config


def random_batch(seed: int, batch_size: int, image_size=(16, 16)) -> dict:
  """A device example (`objective.Example` fields, as a dict) of random values with the right shapes and ranges.

  The multi-focus image is the exact mask blend of the two targets, as for an ideal renderer.
  """
  rs = np.random.RandomState(seed)
  h, w = image_size
  img = lambda: rs.uniform(0, 1, (batch_size, h, w, 3)).astype(np.float32)
  target, target_2 = img(), img()
  disparity = rs.uniform(0, 1, (batch_size, h, w)).astype(np.float32)
  mask = (rs.uniform(0, 1, (batch_size, h, w)) > 0.5).astype(np.float32)
  return {
      "image": img(), "reference": img(), "target": target, "target_2": target_2,
      "disparity": disparity, "stack_mask": mask,
      "multifocus": mask[..., None] * target + (1 - mask[..., None]) * target_2,
      "source_focus": rs.uniform(0, 1, (batch_size, 2)).astype(np.float32),
      "source_blur": rs.uniform(0, 4, (batch_size,)).astype(np.float32),
      "target_focus": rs.uniform(0, 1, (batch_size, 2)).astype(np.float32),
      "target_focus_2": rs.uniform(0, 1, (batch_size, 2)).astype(np.float32),
      "target_blur": rs.uniform(0, 4, (batch_size,)).astype(np.float32),
      "aperture_blades": rs.choice([0, 5, 6], batch_size).astype(np.int32),
      "aperture_rotation": rs.uniform(0, np.pi, (batch_size,)).astype(np.float32),
      "target_focus_disparity": rs.uniform(0, 1, (batch_size,)).astype(np.float32),
      "target_focus_disparity_2": rs.uniform(0, 1, (batch_size,)).astype(np.float32),
  }


def run_steps(mesh_shape, host_batch: dict, num_steps: int = 2, devices=None,
              batch_size: int = 8):
  """Creates the tiny model's state on a `mesh_shape` mesh and runs `num_steps` train steps.

  `host_batch` is this process's slice of the global batch of `batch_size` examples. Blocks on
  every step (multi-process CPU collectives must not run ahead). Returns (metrics per step as
  floats, final params as numpy, params' partition specs by path).
  """
  # Imported here: the subprocess scripts set XLA_FLAGS before JAX starts.
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


def refocus_losses(apply_fn, params, codec, batch: dict, rng, config, patch_size: int):
  """`Objective.losses` of `config` on a dict batch with every `Example` field."""
  from diffcamera_jax.objective.example import Example
  from diffcamera_jax.objective.objective import Objective
  return Objective.from_config(config).losses(apply_fn, params, codec, Example.from_dict(batch),
                                              rng, patch_size)


def prior_fn(config):
  """The objective's prior image of `config` as `fn(image, disparity, camera, keep)`."""
  from diffcamera_jax.objective.objective import Objective
  return Objective.from_config(config).prior_image


def random_example(seed: int, batch_size: int, image_size=(16, 16)):
  """`random_batch` as an `objective.Example`."""
  from diffcamera_jax.objective.example import Example
  return Example.from_dict(random_batch(seed, batch_size, image_size))
