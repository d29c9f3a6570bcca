"""Runs the real training entry point in subprocesses (one JAX runtime each): the `trainer`
fixture over `diffcamera_jax.testing.train_runs`, and one uninterrupted run that the resume and
damaged-checkpoint tests compare against."""
import signal

import pytest

from diffcamera_jax.testing import train_runs

# The reference run: 20 steps, a checkpoint every 2, all kept. Tests that resume a copy of it (or
# of an interrupted run) pass the same overrides, so their learning-rate schedule is the same.
RESUMABLE = ("--config.train.num_steps=20", "--config.train.checkpoint_every=2",
             "--config.train.keep_checkpoints=20")


@pytest.fixture
def trainer():
  class Trainer:
    run = staticmethod(train_runs.run_train)
    start = staticmethod(train_runs.start_train)
    wait_for = staticmethod(train_runs.wait_for)
    steps = staticmethod(train_runs.finished_steps)
    sigkill = signal.SIGKILL
    sigterm = signal.SIGTERM
    resumable = RESUMABLE
  return Trainer


@pytest.fixture(scope="session")
def straight_run(build_once):
  """The workdir of an uninterrupted `RESUMABLE` run (shared: tests copy it before resuming)."""
  def make(folder):
    result = train_runs.run_train(folder / "run", *RESUMABLE)
    assert result.returncode == 0, result.stderr[-3000:]
  return build_once("straight_train_run", make) / "run"
