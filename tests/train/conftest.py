"""Runs the real training entry point in subprocesses (one JAX runtime each): the `trainer`
fixture over `diffcamera_jax.testing.train_runs`."""
import signal

import pytest

from diffcamera_jax.testing import train_runs


@pytest.fixture
def trainer():
  class Trainer:
    run = staticmethod(train_runs.run_train)
    start = staticmethod(train_runs.start_train)
    wait_for = staticmethod(train_runs.wait_for)
    steps = staticmethod(train_runs.finished_steps)
    sigkill = signal.SIGKILL
    sigterm = signal.SIGTERM
  return Trainer
