"""Two processes on 127.0.0.1 (jax.distributed, one CPU device each) run the train step on a
data-parallel mesh and agree with the single-process result."""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from diffcamera_jax.testing.batches import random_batch
from diffcamera_jax.testing.sharded_steps import relative_error, run_steps

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
  out = str(tmp_path / "result.json")
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)  # one CPU device per process
  env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(HERE), env.get("PYTHONPATH", "")])
  procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "_mp_worker.py"), str(i),
                             str(port), out], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(2)]
  try:
    logs = [p.communicate(timeout=600)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-4000:]
  with open(out, encoding="utf-8") as f:
    result = json.load(f)

  history, params, _ = run_steps((1, 1, 1), random_batch(0, 8), devices=jax.devices()[:1])
  assert len(result["history"]) == len(history) == 2
  for multi, single in zip(result["history"], history):
    for key in ("loss", "flow_loss", "stack_loss", "grad_norm"):
      assert relative_error(multi[key], single[key]) <= 1e-5, (key, multi[key], single[key])
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    assert relative_error(np.asarray(result["params"][jax.tree_util.keystr(path)]), leaf) <= 1e-5
