"""Runs the real training entry point in subprocesses (one JAX runtime each)."""
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = [
    "--config=configs/default.py:tiny",
    "--config.train.log_every=1",
    "--config.train.eval_every=100000",  # evaluation is tested where it is asked for
]


def train_command(workdir, *overrides, extra=()):
  return [sys.executable, "-m", "diffcamera_jax.train", *TINY, f"--workdir={workdir}",
          *overrides, *extra]


def run_train(workdir, *overrides, timeout=600, extra=()):
  result = subprocess.run(train_command(workdir, *overrides, extra=extra), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False)
  return result


def start_train(workdir, *overrides, extra=()):
  return subprocess.Popen(train_command(workdir, *overrides, extra=extra), cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, timeout=300, interval=0.02, process=None):
  end = time.time() + timeout
  while time.time() < end:
    if predicate():
      return True
    if process is not None and process.poll() is not None:
      return predicate()
    time.sleep(interval)
  return False


def finished_steps(workdir):
  """Finalized checkpoint steps (Orbax renames a step directory only when it is complete)."""
  root = pathlib.Path(workdir) / "checkpoints"
  if not root.is_dir():
    return []
  return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit())


@pytest.fixture
def trainer():
  class Trainer:
    run = staticmethod(run_train)
    start = staticmethod(start_train)
    wait_for = staticmethod(wait_for)
    steps = staticmethod(finished_steps)
    sigkill = signal.SIGKILL
    sigterm = signal.SIGTERM
  return Trainer
