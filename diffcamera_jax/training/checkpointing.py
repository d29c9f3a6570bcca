"""Orbax checkpoints of the train state, the Grain iterator state and the config, one per step.

Each step directory holds three items: `state` (the sharded TrainState, every process writing its
own shards), `data_iter` (the Grain iterator state of this process, so a resumed run continues with
exactly the batch that would have come next) and `config` (JSON, for people and for `export`).
Orbax writes a step into a temporary directory and renames it when complete, so a save interrupted
by a crash is never listed. A step that is listed but cannot be read (a file truncated or zeroed by a
half-finished copy, metadata missing) is moved aside as `STEP.corrupt-<UTC time>` in the same
directory — never deleted — and `restore_latest` falls back to the previous step, so the run
resumes and later saves that step number afresh instead of crash-looping on it.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

CHECKPOINT_DIR = "checkpoints"


def absolute(path: str) -> str:
  """`path` made absolute; URLs such as `gs://bucket/run` are kept as they are."""
  return path if "://" in path else os.path.abspath(path)


def checkpoint_dir(workdir: str) -> str:
  return str(epath.Path(absolute(workdir)) / CHECKPOINT_DIR)


def make_checkpoint_manager(workdir: str, config: ml_collections.ConfigDict, *,
                            read_only: bool = False) -> ocp.CheckpointManager:
  """A manager saving every `config.train.checkpoint_every` steps, keeping the newest N; its
  background threads give up after `config.train.watchdog_seconds` rather than wait forever."""
  timeout = int(config.train.watchdog_seconds)
  options = ocp.CheckpointManagerOptions(
      save_interval_steps=config.train.checkpoint_every,
      max_to_keep=config.train.keep_checkpoints,
      enable_async_checkpointing=config.train.async_checkpointing,
      async_options=ocp.AsyncOptions(timeout_secs=timeout) if timeout > 0 else None,
      create=not read_only,
      read_only=read_only,
  )
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                               item_names=("state", "data_iter", "config"))


def save(manager: ocp.CheckpointManager, step: int, state: Any, data_iter: Any,
         config: ml_collections.ConfigDict, *, force: bool = False) -> bool:
  """Saves (asynchronously when configured) if `step` is due or `force`; True when a save began."""
  args = ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data_iter=grain.checkpoint.CheckpointSave(data_iter),
      config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
  )
  return manager.save(step, args=args, force=force)


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any,
            data_iter: Any | None) -> Any:
  """Restores `state` (into the shardings of `abstract_state`) and, if given, the iterator in place."""
  items = {"state": ocp.args.StandardRestore(abstract_state)}
  if data_iter is not None:
    items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
  restored = manager.restore(step, args=ocp.args.Composite(**items))
  return restored["state"]


def _all_processes_ok(ok: bool) -> bool:
  """True when `ok` holds on every process (a step one process cannot read is unusable to all)."""
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.asarray(ok, np.int32))))


def move_aside(manager: ocp.CheckpointManager, step: int, reason: str) -> str:
  """Renames step directory `step` to `STEP.corrupt-<UTC time>` beside it (process 0; any path
  `etils.epath` handles, gs:// included) and makes the manager forget it; returns the new path."""
  source = epath.Path(manager.directory) / str(step)
  target = source.parent / f"{step}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
  if jax.process_index() == 0:
    source.rename(target)
    logging.warning("checkpoint step %d cannot be restored (%s); moved aside to %s", step, reason,
                    target)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"checkpoint_move_aside_{step}")
  manager.reload()
  return str(target)


def verify_train_state(step: int, state: Any) -> None:
  """Raises ValueError unless `state` is plausibly what step `step` saved: its step counter
  matches and every floating-point leaf is finite (a garbled chunk that still decodes)."""
  saved_step = int(jax.device_get(state.step)) if hasattr(state, "step") else step
  if saved_step != step:
    raise ValueError(f"state.step is {saved_step}, not {step}")
  finite = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(state)
            if jnp.issubdtype(x.dtype, jnp.floating)]
  if finite and not bool(jax.device_get(jnp.all(jnp.stack(finite)))):
    raise ValueError("non-finite values in the restored state")


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any,
                   data_iter: Any | None) -> tuple[int, Any] | None:
  """Restores the newest readable step, newest first; None when the workdir has no checkpoint.

  A step that fails to restore or to verify (`verify_train_state`) on any process is moved aside
  (`move_aside`) and the previous one tried. Orbax and TensorStore check what they read (metadata,
  array shapes and dtypes, the OCDBT manifest, compressed chunk framing): a zeroed or truncated
  data file fails to decode rather than load garbage.
  """
  for step in sorted(manager.all_steps(), reverse=True):
    restored, reason = None, ""
    try:
      restored = restore(manager, step, abstract_state, data_iter)
      verify_train_state(step, restored)
    except Exception as error:  # A damaged step (e.g. a half-copied bucket, a zeroed file).
      restored, reason = None, f"{type(error).__name__}: {str(error)[:300]}"
    if _all_processes_ok(restored is not None):
      return step, restored
    move_aside(manager, step, reason or "another process could not read it")
  return None
