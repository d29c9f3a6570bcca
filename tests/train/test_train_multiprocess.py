"""Two processes on 127.0.0.1 run the real training entry point together (jax.distributed)."""
import json
import os
import subprocess

import portpicker
import pytest

from diffcamera_jax.testing.train_runs import IMPORT_ROOT, train_command


@pytest.mark.slow
def test_two_processes_train_together_and_save_one_checkpoint(tmp_path):
  port = portpicker.pick_unused_port()
  workdir = tmp_path / "run"
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
         "JAX_PLATFORMS": "cpu"}
  processes = [
      subprocess.Popen(
          train_command(workdir, "--config.train.num_steps=3", "--config.train.checkpoint_every=3",
                        f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                        f"--process_id={i}"),
          cwd=IMPORT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)
  ]
  outputs = [p.communicate(timeout=600)[0] for p in processes]
  for p, out in zip(processes, outputs):
    assert p.returncode == 0, out[-3000:]
  assert "process 0 of 2, 1 local / 2 global devices" in outputs[0]
  assert "process 1 of 2, 1 local / 2 global devices" in outputs[1]

  step_dir = workdir / "checkpoints" / "3"
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["3"]
  # One checkpoint, written by both: each process's iterator state, one global state.
  assert sorted(p.name for p in (step_dir / "data_iter").glob("process_*.json")) == [
      "process_0-of-2.json", "process_1-of-2.json"]
  states = [json.loads((step_dir / "data_iter" / f"process_{i}-of-2.json").read_text())
            for i in range(2)]
  # Each process consumed 3 batches of its own shard (disjointness: tests/data_pipeline).
  assert [s["next_index"] for s in states] == [3, 3]
  # Only process 0 writes logs.
  assert len(list(workdir.glob("events.out.tfevents.*"))) == 1
