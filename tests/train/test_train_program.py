"""The training program end to end: events, samples, checkpoints, export, resume, stop, errors.
(Bad overrides and workdirs: tests/train/test_faults.py.)"""
import json
import pathlib
import shutil

import numpy as np
import pytest

from diffcamera_jax.exported import load_exported
from diffcamera_jax.testing.train_runs import assert_trees_identical, checkpoint_state


@pytest.mark.slow
def test_end_to_end_events_samples_checkpoints_and_export(tmp_path, trainer):
  workdir = tmp_path / "run"
  result = trainer.run(workdir, "--config.train.num_steps=4", "--config.train.checkpoint_every=2",
                       "--config.train.eval_every=4")
  assert result.returncode == 0, result.stderr[-3000:]
  assert trainer.steps(workdir) == [2, 4]
  assert list(workdir.glob("events.out.tfevents.*")), "no TensorBoard event file"
  assert sorted(p.name for p in (workdir / "samples").iterdir()) == [
      f"step_0000004_{name}.png" for name in ("blur_sweep", "bokeh", "deblur", "refocus")]
  config = json.loads((workdir / "config.json").read_text())
  assert config["train"]["num_steps"] == 4
  assert "eval/psnr=" in result.stderr and "eval/deblur_gain=" in result.stderr
  assert "loss=" in result.stderr

  # Export, then load what the refocus CLI and notebooks load.
  from diffcamera_jax.export import main as export_main
  out = tmp_path / "exported"
  assert export_main(["--workdir", str(workdir), "--out", str(out)]) == 0
  exported_config, params = load_exported(str(out))
  assert exported_config.model.size == "tiny"
  assert_trees_identical(params, checkpoint_state(workdir, 4)["ema_params"])
  assert export_main(["--workdir", str(workdir), "--out", str(out)]) == 2  # never overwrites


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_identical_to_uninterrupted(tmp_path, trainer, straight_run):
  interrupted = tmp_path / "interrupted"
  process = trainer.start(interrupted, *trainer.resumable)
  assert trainer.wait_for(lambda: 6 in trainer.steps(interrupted), process=process)
  process.send_signal(trainer.sigkill)
  process.wait(timeout=60)
  killed_at = max(trainer.steps(interrupted))
  assert killed_at < 20, "the run finished before it could be killed"
  resumed = trainer.run(interrupted, *trainer.resumable)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"resumed from checkpoint step {killed_at}" in resumed.stderr

  assert_trees_identical(checkpoint_state(straight_run, 20), checkpoint_state(interrupted, 20))
  for step in (2, 20):  # same data order: identical iterator states
    iterator = pathlib.Path("checkpoints", str(step), "data_iter", "process_0-of-1.json")
    assert (straight_run / iterator).read_text() == (interrupted / iterator).read_text()


@pytest.mark.slow
def test_sigterm_checkpoints_the_step_it_stopped_at(tmp_path, trainer):
  workdir = tmp_path / "run"
  process = trainer.start(workdir, "--config.train.num_steps=100000",
                          "--config.train.checkpoint_every=5")
  assert trainer.wait_for(lambda: 5 in trainer.steps(workdir), process=process)
  process.send_signal(trainer.sigterm)
  output, _ = process.communicate(timeout=120)
  assert process.returncode == 0, output[-3000:]
  line = next(l for l in output.splitlines() if "stop requested (SIGTERM)" in l)
  stopped_at = int(line.split("checkpoint saved at step ")[1].split(",")[0])
  assert stopped_at > 5 and max(trainer.steps(workdir)) == stopped_at
  assert int(np.asarray(checkpoint_state(workdir, stopped_at)["step"])) == stopped_at


@pytest.mark.slow
def test_half_written_checkpoint_is_never_loaded(tmp_path, trainer, straight_run):
  # A run whose newest complete checkpoint is step 4 ...
  workdir = tmp_path / "run"
  shutil.copytree(straight_run, workdir)
  root = workdir / "checkpoints"
  for step in trainer.steps(workdir):
    if step > 4:
      shutil.rmtree(root / str(step))
  # ... a crash during the save of step 6 left Orbax's temporary directory behind, and on a
  # filesystem without atomic rename, a step directory with truncated files.
  (root / "6.orbax-checkpoint-tmp-1234" / "state").mkdir(parents=True)
  damaged = root / "5"
  (damaged / "state").mkdir(parents=True)
  (damaged / "_CHECKPOINT_METADATA").write_text("{")
  (damaged / "state" / "_METADATA").write_text("")
  result = trainer.run(workdir, *trainer.resumable)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "resumed from checkpoint step 4" in result.stderr
  assert_trees_identical(checkpoint_state(straight_run, 20), checkpoint_state(workdir, 20))


@pytest.mark.slow
def test_non_finite_loss_stops_with_a_clear_message_keeping_checkpoints(tmp_path, trainer):
  workdir = tmp_path / "run"
  result = trainer.run(workdir, "--config.train.num_steps=50", "--config.train.checkpoint_every=1",
                       "--config.optim.learning_rate=1e38", "--config.optim.warmup_steps=0")
  assert result.returncode == 3, result.stderr[-3000:]
  assert "non-finite" in result.stderr and "last good checkpoint is intact" in result.stderr
  steps = trainer.steps(workdir)
  assert steps, "no checkpoint was kept"
  state = checkpoint_state(workdir, max(steps))
  import jax
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state["params"]))
