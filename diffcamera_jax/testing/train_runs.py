"""Runs of the real training program for the tests: `python -m diffcamera_jax.train` in
subprocesses (one JAX runtime each) on the tiny configs, and the checkpoints they leave.

The configs are named by their files in this package, so the commands work from any folder; they
start in `IMPORT_ROOT`, so `-m diffcamera_jax.train` runs this same copy of the package.
"""
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

_PACKAGE = pathlib.Path(__file__).resolve().parents[1]
# The folder this `diffcamera_jax` is imported from (a source checkout, or site-packages).
IMPORT_ROOT = _PACKAGE.parent
CONFIGS = _PACKAGE / "configs"

TINY = [
    f"--config={CONFIGS / 'default.py'}:tiny",
    "--config.train.log_every=1",
    "--config.train.eval_every=100000",  # evaluation is tested where it is asked for
]


def train_command(workdir, *overrides, extra=()) -> list[str]:
  """The training program on the tiny config in `workdir`, with `--config.*` `overrides`."""
  return [sys.executable, "-m", "diffcamera_jax.train", *TINY, f"--workdir={workdir}",
          *overrides, *extra]


def run_train(workdir, *overrides, timeout=600, extra=()) -> subprocess.CompletedProcess:
  """`train_command` run to its end (output captured, exit status not checked)."""
  return subprocess.run(train_command(workdir, *overrides, extra=extra), cwd=IMPORT_ROOT,
                        capture_output=True, text=True, timeout=timeout, check=False)


def start_train(workdir, *overrides, extra=()) -> subprocess.Popen:
  """`train_command` started in the background (stderr into stdout, as text)."""
  return subprocess.Popen(train_command(workdir, *overrides, extra=extra), cwd=IMPORT_ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, timeout=300, interval=0.02, process=None) -> bool:
  """Polls `predicate` until it holds, `timeout` seconds pass or `process` ends."""
  end = time.time() + timeout
  while time.time() < end:
    if predicate():
      return True
    if process is not None and process.poll() is not None:
      return predicate()
    time.sleep(interval)
  return False


def finished_steps(workdir) -> list[int]:
  """Finalized checkpoint steps (Orbax renames a step directory only when it is complete)."""
  root = pathlib.Path(workdir) / "checkpoints"
  if not root.is_dir():
    return []
  return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit())


def checkpoint_state(workdir, step):
  """The train state checkpointed at `step` in `workdir`, restored as a tree of host arrays."""
  import orbax.checkpoint as ocp
  with ocp.StandardCheckpointer() as checkpointer:
    state = checkpointer.restore(pathlib.Path(workdir) / "checkpoints" / str(step) / "state")
  return state


def assert_trees_identical(a, b) -> None:
  """Same tree structure, bit-identical leaves."""
  import jax
  leaves_a, tree_a = jax.tree.flatten(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def train_tiny_flux(workdir, num_steps: int) -> subprocess.CompletedProcess:
  """The training program on the tiny FLUX + LoRA config (`flux_lora.py:tiny`) for `num_steps`
  (resumes when `workdir` holds a checkpoint), on the CPU."""
  command = [sys.executable, "-m", "diffcamera_jax.train",
             f"--config={CONFIGS / 'flux_lora.py'}:tiny",
             f"--workdir={workdir}", f"--config.train.num_steps={num_steps}",
             "--config.train.log_every=1", "--config.train.eval_every=2"]
  return subprocess.run(command, cwd=IMPORT_ROOT, capture_output=True, text=True, timeout=900,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"), check=False)
