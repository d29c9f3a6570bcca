"""Orbax checkpoints of the train state, the Grain iterator state and the config, one per step.

Each step directory holds three items: `state` (the sharded TrainState, every process writing its
own shards), `data_iter` (the Grain iterator state of this process, so a resumed run continues with
exactly the batch that would have come next) and `config` (JSON, for people and for `export`).
Orbax writes a step into a temporary directory and renames it when complete, so a save interrupted
by a crash is never listed; `restore_latest` also falls back to the previous step when the newest
one cannot be read, so a damaged directory never costs the run.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any

import grain
import ml_collections
import orbax.checkpoint as ocp

CHECKPOINT_DIR = "checkpoints"


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)


def make_checkpoint_manager(workdir: str, config: ml_collections.ConfigDict, *,
                            read_only: bool = False) -> ocp.CheckpointManager:
  """A manager saving every `config.train.checkpoint_every` steps, keeping the newest N."""
  options = ocp.CheckpointManagerOptions(
      save_interval_steps=config.train.checkpoint_every,
      max_to_keep=config.train.keep_checkpoints,
      enable_async_checkpointing=config.train.async_checkpointing,
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


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any,
                   data_iter: Any | None) -> tuple[int, Any] | None:
  """Restores the newest readable step, newest first; None when the workdir has no checkpoint."""
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      return step, restore(manager, step, abstract_state, data_iter)
    except Exception as error:  # A damaged step (e.g. a crash on a non-atomic filesystem).
      logging.warning("checkpoint step %d cannot be restored (%s: %s); trying the previous one",
                      step, type(error).__name__, error)
  return None
