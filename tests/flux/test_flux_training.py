"""FLUX + LoRA through the real train state, train step and training program: the state holds the
trainable part only, the frozen base stays outside it and unchanged, checkpoints are LoRA-only."""
import json
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from diffcamera_jax.configs import flux_lora
from diffcamera_jax.training import state as ts
from diffcamera_jax.models import build_model, example_inputs, lora
from diffcamera_jax.models import flux_diffcamera as fd
from diffcamera_jax.sharding import logical_rules, make_mesh, shard_batch
from diffcamera_jax.training.step import make_train_step
from diffcamera_jax.testing.batches import random_example
from diffcamera_jax.testing.train_runs import train_tiny_flux

STEPS = 3


def _is_trainable(path) -> bool:
  return path[-1] in lora.LORA_LEAVES or any(n in fd.CONDITION_MODULES for n in path)


@pytest.fixture(scope="module")
def trained():
  config = flux_lora.get_config("tiny")
  config.train.num_steps = 100
  model, codec = build_model(config)
  assert isinstance(model, fd.FluxDiffCamera)
  mesh = make_mesh(config)
  state, state_sharding = ts.create_train_state(config, model, codec, mesh, jax.random.key(0))
  frozen, frozen_sharding = ts.frozen_base(config, model, codec, mesh)
  initial = jax.device_get(state.params)
  frozen_initial = jax.device_get(frozen)
  step = make_train_step(config, model, codec, mesh, state_sharding, frozen, frozen_sharding)
  hw = tuple(config.data.image_size)
  history = []
  for i in range(STEPS):
    batch = shard_batch(random_example(i, config.data.batch_size, hw), mesh, logical_rules(config))
    state, metrics = step(state, batch, jax.random.key(i))
    history.append(jax.device_get(metrics))
  return dict(config=config, model=model, codec=codec, mesh=mesh, state=state, initial=initial,
              frozen=frozen, frozen_initial=frozen_initial, history=history)


def test_state_holds_only_the_trainable_part(trained):
  state, frozen = trained["state"], trained["frozen"]
  paths = lora.flatten_paths(state.params)
  assert paths and all(_is_trainable(p) for p in paths), [p for p in paths if not _is_trainable(p)]
  assert lora.flatten_paths(state.ema_params) == paths
  assert not any(_is_trainable(p) for p in lora.flatten_paths(frozen))
  # Optimizer state covers the trainable leaves only (AdamW: two moments each).
  num_trainable = sum(x.size for x in jax.tree.leaves(state.params))
  num_frozen = sum(x.size for x in jax.tree.leaves(frozen))
  assert num_frozen > 4 * num_trainable
  assert sum(x.size for x in jax.tree.leaves(state.opt_state)) <= 2 * num_trainable + 8
  # Together they are exactly the model's params.
  full = ts.full_params(state.params, frozen)
  config, model, codec = trained["config"], trained["model"], trained["codec"]
  abstract = jax.eval_shape(lambda: model.init(
      jax.random.key(0), *example_inputs(codec, tuple(config.data.image_size)))["params"])
  assert sorted(lora.flatten_paths(full)) == sorted(lora.flatten_paths(abstract))


def test_only_adapters_and_condition_layers_change(trained):
  for m in trained["history"]:
    assert np.isfinite(m["loss"]) and np.isfinite(m["grad_norm"]) and m["grad_norm"] > 0
  assert int(trained["state"].step) == STEPS
  before = dict(zip(lora.flatten_paths(trained["initial"]), jax.tree.leaves(trained["initial"])))
  after = jax.device_get(trained["state"].params)
  changed = {p: not np.array_equal(before[p], a)
             for p, a in zip(lora.flatten_paths(after), jax.tree.leaves(after))}
  assert changed[("flux", "double_blocks_0", "img_attn", "qkv", "lora_b")]
  assert changed[("flux", "single_blocks_0", "linear2", "lora_b")]
  assert changed[("camera_in", "proj", "kernel")] and changed[("depth_in", "kernel")]
  # The frozen base is untouched and still alive (not donated).
  for x, y in zip(jax.tree.leaves(trained["frozen"]), jax.tree.leaves(trained["frozen_initial"])):
    assert not x.is_deleted()
    np.testing.assert_array_equal(np.asarray(x), y)


def test_frozen_base_is_reproducible_and_weights_are_required_beyond_tiny(trained):
  config, model, codec, mesh = (trained[k] for k in ("config", "model", "codec", "mesh"))
  again, _ = ts.frozen_base(config, model, codec, mesh)
  for x, y in zip(jax.tree.leaves(again), jax.tree.leaves(trained["frozen_initial"])):
    np.testing.assert_array_equal(np.asarray(x), y)
  other = flux_lora.get_config("tiny")
  other.flux.variant = "schnell"
  with pytest.raises(ValueError, match="transformer_weights"):
    ts.frozen_base(other, model, codec, mesh)
  dit = flux_lora.get_config("tiny")
  dit.model.name = "dit"
  assert ts.frozen_base(dit, model, codec, mesh) == (None, None)


@pytest.mark.slow
def test_training_program_writes_a_lora_only_checkpoint_and_resumes(flux_run, tmp_path):
  shared, result = flux_run
  assert result.returncode == 0, result.stderr[-3000:]
  assert "loss=" in result.stderr and "eval/psnr=" in result.stderr
  assert json.loads((shared / "config.json").read_text())["model"]["name"] == "flux"
  with ocp.StandardCheckpointer() as checkpointer:
    state = checkpointer.restore(shared / "checkpoints" / "2" / "state")
  assert int(state["step"]) == 2
  paths = lora.flatten_paths(state["params"])
  assert paths and all(_is_trainable(p) for p in paths)
  assert ("flux", "double_blocks_0", "img_attn", "qkv", "lora_a") in paths
  # Resuming (a copy of the shared run) restores the LoRA-only state onto the same (seeded) base
  # and keeps training.
  workdir = tmp_path / "run"
  shutil.copytree(shared, workdir)
  resumed = train_tiny_flux(workdir, 3)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resumed from checkpoint step 2" in resumed.stderr
  with ocp.StandardCheckpointer() as checkpointer:
    assert int(checkpointer.restore(workdir / "checkpoints" / "3" / "state")["step"]) == 3
