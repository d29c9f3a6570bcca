"""The training loop: data → device render → sharded train step → logs, evaluation, checkpoints.

Reads top to bottom like the program runs: setup, data, model and state, restore, step functions,
loop. Every random draw derives from `config.seed` and the step number, and the data iterator's state
is checkpointed, so a resumed run is bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import logging
from typing import Any

import jax
import ml_collections
import numpy as np
from clu import asynclib, metric_writers, periodic_actions

from etils import epath

from data_pipeline import pipeline
from diffcamera_jax.objective import example as simulate_lib
from diffcamera_jax import models, sharding
from diffcamera_jax.training import checkpointing, state as train_state, step as train_step_lib
from diffcamera_jax.evaluation import periodic as periodic_eval
from diffcamera_jax.cli import ensure_writable_dir
from diffcamera_jax.configs.validation import validate_config
from diffcamera_jax.training.preemption import StopRequest
from diffcamera_jax.training.watchdog import Watchdog


class NonFiniteLossError(RuntimeError):
  """The loss or gradient norm became NaN/inf; the last good checkpoint is kept."""


class BackgroundWorkError(RuntimeError):
  """A checkpoint save or metrics write running in the background failed; the run stops."""


def _check_finite(step: int, metrics: dict[str, float]) -> None:
  bad = {k: v for k, v in metrics.items() if k in ("loss", "grad_norm") and not np.isfinite(v)}
  if bad:
    raise NonFiniteLossError(
        f"non-finite {', '.join(f'{k}={v}' for k, v in bad.items())} at step {step}; stopping. "
        "The last good checkpoint is intact: lower config.optim.learning_rate or check the data.")


def prepare_workdir(workdir: str) -> str:
  """Creates `workdir` and its checkpoint folder and checks both can be written (local or any
  `etils.epath` URL); returns the absolute workdir. Raises `UserError` naming the path."""
  root = checkpointing.absolute(workdir)
  ensure_writable_dir(root, "--workdir")
  ensure_writable_dir(checkpointing.checkpoint_dir(root), "checkpoint folder")
  return root


def _write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  if jax.process_index() == 0:
    (epath.Path(workdir) / "config.json").write_text(config.to_json_best_effort(indent=2))


def _first_line(error: Exception) -> str:
  text = str(error)
  return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def _save(manager: Any, step: int, state: Any, data_iter: Any,
          config: ml_collections.ConfigDict) -> None:
  """Starts the save of `step`, first surfacing any failure of an earlier background save."""
  try:
    manager.check_for_errors()
    checkpointing.save(manager, step, state, data_iter, config, force=True)
  except Exception as error:
    raise BackgroundWorkError(f"checkpoint save failed by step {step} ({_first_line(error)}); "
                              "the previous checkpoints are kept") from error


def _finish_saves(manager: Any) -> None:
  try:
    manager.wait_until_finished()
    manager.close()
  except Exception as error:
    raise BackgroundWorkError(f"checkpoint save failed ({_first_line(error)})") from error


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Any:
  """Trains `config` in `workdir` (resuming if it holds checkpoints); returns the final state."""
  # ------------------------------------------------------------------ setup
  validate_config(config, num_devices=jax.device_count())
  workdir = prepare_workdir(workdir)
  _write_config(workdir, config)
  mesh = sharding.make_mesh(config)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  stop = StopRequest()

  # ------------------------------------------------------------------ data
  data_iter = pipeline.make_train_iterator(config)

  # ------------------------------------------------------------------ model and state
  model, codec = models.build_model(config)
  root_rng = jax.random.key(config.seed)
  init_rng, loop_rng = jax.random.split(root_rng)
  abstract_state, state_sharding, init_state = train_state.train_state_plan(config, model, codec,
                                                                            mesh)
  # FLUX + LoRA: the frozen base, outside the (LoRA-only) state; (None, None) for the DiT.
  frozen, frozen_sharding = train_state.frozen_base(config, model, codec, mesh)

  # ------------------------------------------------------------------ restore (or initialise)
  manager = checkpointing.make_checkpoint_manager(workdir, config)
  restored = checkpointing.restore_latest(manager, abstract_state, data_iter)
  if restored is not None:
    start_step, state = restored
    logging.info("resumed from checkpoint step %d", start_step)
  else:
    start_step, state = 0, init_state(init_rng)

  # ------------------------------------------------------------------ step functions
  train_step = train_step_lib.make_train_step(config, model, codec, mesh, state_sharding,
                                              frozen, frozen_sharding)
  simulate = simulate_lib.make_simulate_fn(config, mesh)
  # The validation scenes are rendered only when an evaluation falls within this run.
  every = config.train.eval_every
  evaluates = config.train.num_steps // every > start_step // every
  evaluator = (periodic_eval.HeldOutEvaluator(config, model, codec, mesh, workdir) if evaluates
               else None)
  report = periodic_actions.ReportProgress(num_train_steps=config.train.num_steps, writer=writer,
                                           every_steps=config.train.log_every, every_secs=None)

  # ------------------------------------------------------------------ loop
  # Multi-process CPU collectives can deadlock when processes run ahead: block on each step.
  block_each_step = jax.process_count() > 1 and jax.devices()[0].platform == "cpu"
  watchdog, limit = Watchdog(), config.train.watchdog_seconds
  step = start_step
  try:
    with metric_writers.ensure_flushes(writer):
      while step < config.train.num_steps:
        # The first step compiles (minutes for a large model): not bounded.
        with watchdog.waiting(f"step {step + 1} (data batch, device work, collectives)",
                              limit if step > start_step else 0):
          with report.timed("data"):
            host_batch = next(data_iter)
            batch = pipeline.to_global_batch(host_batch, mesh)
          step_rng = jax.random.fold_in(loop_rng, step)
          render_rng, update_rng = jax.random.split(step_rng)
          example = simulate(batch, render_rng)
          state, metrics = train_step(state, example, update_rng)
          if block_each_step:
            jax.block_until_ready(metrics)
          step += 1
          report(step)

          is_last = step == config.train.num_steps
          must_stop = stop.should_stop(step, sync=step % config.train.log_every == 0 or is_last)
          save_due = must_stop or is_last or step % config.train.checkpoint_every == 0
          if step % config.train.log_every == 0 or save_due:
            scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
            _check_finite(step, scalars)
            writer.write_scalars(step, scalars)
        if step % config.train.eval_every == 0:
          with report.timed("eval"):
            evaluator.run(train_state.full_params(state.ema_params, frozen), step, writer)
        if save_due:
          with watchdog.waiting(f"the checkpoint save of step {step}", limit):
            _save(manager, step, state, data_iter, config)
        if must_stop:
          logging.warning("stop requested (SIGTERM): checkpoint saved at step %d, exiting", step)
          break
  except asynclib.AsyncError as error:  # the metrics writer's background thread failed
    raise BackgroundWorkError(f"the metrics writer failed ({error.__cause__ or error}); "
                              "the previous checkpoints are kept") from error
  finally:  # Also on errors (e.g. a non-finite loss): finish the saves already started.
    try:
      with watchdog.waiting("the checkpoint saves to finish", limit):
        _finish_saves(manager)
    finally:
      watchdog.close()
      stop.restore_handler()
  return state
