"""Faults a pod run meets, through the real entry points: a damaged newest checkpoint, a failing or
hanging save, a dead peer, unusable workdirs and configs, bad dataset folders."""
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import portpicker
import pytest
from PIL import Image

from diffcamera_jax.testing.train_runs import (TINY, assert_trees_identical, checkpoint_state,
                                               train_command)

# Where the commands below start (the config errors name `configs/...` paths from it).
REPO = pathlib.Path(__file__).resolve().parents[2]

_LOG_PREFIXES = ("I1", "W1", "E1", "I0000", "W0000", "WARNING: All log")


def _user_lines(stderr: str) -> list[str]:
  """stderr without the runtime's own log lines (absl/XLA prefixes)."""
  return [l for l in stderr.splitlines() if l.strip() and not l.startswith(_LOG_PREFIXES)]


def _assert_one_line_error(result, program: str, *needles: str, code: int = 2):
  lines = _user_lines(result.stderr)
  assert result.returncode == code, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  errors = [l for l in lines if l.startswith(f"{program}: error: ")]
  assert len(errors) == 1, lines
  for needle in needles:
    assert needle in errors[0], errors[0]


def _zero_largest_state_file(step_dir: pathlib.Path) -> None:
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file()]
  largest = max(files, key=lambda p: p.stat().st_size)
  largest.write_bytes(b"\0" * largest.stat().st_size)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["zeroed", "no_metadata"])
def test_damaged_newest_checkpoint_is_moved_aside_and_the_run_matches_uninterrupted(
    tmp_path, trainer, straight_run, damage):
  # A run stopped after saving step 18, whose step 18 a half-finished copy then damaged.
  run = tmp_path / "damaged"
  shutil.copytree(straight_run, run)
  shutil.rmtree(run / "checkpoints" / "20")
  if damage == "zeroed":
    _zero_largest_state_file(run / "checkpoints" / "18")
  else:
    (run / "checkpoints" / "18" / "state" / "_METADATA").unlink()
  first = trainer.run(run, *trainer.resumable)
  assert first.returncode == 0, first.stderr[-3000:]
  assert "checkpoint step 18 cannot be restored" in first.stderr, first.stderr[-3000:]
  assert "resumed from checkpoint step 16" in first.stderr
  aside = [p.name for p in (run / "checkpoints").iterdir() if ".corrupt-" in p.name]
  assert len(aside) == 1 and aside[0].startswith("18.corrupt-"), aside
  assert trainer.steps(run) == list(range(2, 21, 2))
  assert_trees_identical(checkpoint_state(straight_run, 20), checkpoint_state(run, 20))
  assert_trees_identical(checkpoint_state(straight_run, 18), checkpoint_state(run, 18))
  if damage == "zeroed":  # a later restart is clean: no crash loop
    again = trainer.run(run, *trainer.resumable)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "cannot be restored" not in again.stderr
    assert "resumed from checkpoint step 20" in again.stderr


_INJECT = """
import sys
import orbax.checkpoint as ocp
from absl import app
from diffcamera_jax import cli, train

async def refuse(*args, **kwargs):
  raise OSError("injected: the bucket refused the write")

if sys.argv.pop(1) == "hang":  # the step folder is never created: the save waits on it forever
  from orbax.checkpoint._src.path import atomicity
  atomicity._create_tmp_directory = refuse
else:  # one item's writer raises inside the save
  ocp.JsonCheckpointHandler.async_save = refuse
app.run(lambda argv: sys.exit(train.main(argv)), flags_parser=cli.absl_flags_parser("train"))
"""


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["raise", "hang"])
def test_a_failing_background_save_ends_the_run_with_one_line(tmp_path, fault):
  command = [sys.executable, "-c", _INJECT, fault, *TINY, f"--workdir={tmp_path / 'run'}",
             "--config.train.num_steps=100000", "--config.train.checkpoint_every=2",
             "--config.train.watchdog_seconds=20"]
  start = time.monotonic()
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
  elapsed = time.monotonic() - start
  lines = [l for l in _user_lines(result.stderr) if l.startswith("train: error: ")]
  assert result.returncode == 4, result.stderr[-3000:]
  assert len(lines) == 1, result.stderr[-3000:]
  assert ("checkpoint save failed" if fault == "raise" else
          "waited more than 20 s for the checkpoint save of step 2") in lines[0]
  steps_logged = [l for l in result.stderr.splitlines() if "] [" in l and "uptime=" in l]
  assert len(steps_logged) < 20, "the run went on training after its save failed"
  assert elapsed < 240, elapsed  # start-up (~20-60 s on a shared CPU) + at most the 20 s limit


@pytest.mark.slow
def test_a_dead_peer_ends_the_other_process(tmp_path):
  port = portpicker.pick_unused_port()
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
         "JAX_PLATFORMS": "cpu"}
  processes = [
      subprocess.Popen(
          train_command(tmp_path / "run", "--config.train.num_steps=100000",
                        "--config.train.checkpoint_every=1000", "--config.train.watchdog_seconds=20",
                        f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                        f"--process_id={i}", "--heartbeat_seconds=15"),
          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  survivor, victim = processes
  lines = []
  for line in survivor.stdout:  # wait until both train (past the compiling first step)
    lines.append(line)
    if "] [3] uptime=" in line:
      break
  assert survivor.poll() is None, "".join(lines[-50:])
  victim.send_signal(signal.SIGKILL)
  victim.wait(timeout=60)
  killed = time.monotonic()
  output, _ = survivor.communicate(timeout=240)
  assert survivor.returncode not in (0, None), output[-3000:]
  assert time.monotonic() - killed < 90


# ------------------------------------------------------------------ user errors: one line, exit 2

@pytest.fixture(scope="module")
def blocked_paths(tmp_path_factory):
  root = tmp_path_factory.mktemp("paths")
  (root / "a_file").write_text("")
  (root / "run_with_blocked_checkpoints").mkdir()
  (root / "run_with_blocked_checkpoints" / "checkpoints").write_text("")
  return root


def _run_all(commands: dict) -> dict:
  """Runs the commands side by side (each is a few seconds of start-up)."""
  processes = {name: subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
               for name, cmd in commands.items()}
  results = {}
  for name, process in processes.items():
    out, err = process.communicate(timeout=600)
    results[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
  return results


def test_unusable_workdirs_and_bad_configs_are_one_line_with_exit_2(blocked_paths):
  cases = {  # name: (override or workdir, words the line must hold)
      "workdir is a file": (f"--workdir={blocked_paths / 'a_file'}", ["a_file", "not a directory"]),
      "workdir below a file": (f"--workdir={blocked_paths / 'a_file' / 'run'}", ["a_file/run"]),
      "workdir not writable": ("--workdir=/sys/diffcamera_run", ["/sys/diffcamera_run"]),
      "checkpoints is a file": (f"--workdir={blocked_paths / 'run_with_blocked_checkpoints'}",
                                ["checkpoint folder", "checkpoints"]),
      "unknown field": ("--config.train.num_stepz=5", ["train.num_stepz", "num_steps"]),
      "unknown section field": ("--config.data.bogus_field=1", ["data.bogus_field"]),
      "malformed value": ("--config.data.batch_size=abc", ["config.data.batch_size", "abc"]),
      "missing config file": ("--config=configs/nope.py", ["configs/nope.py"]),
      "unknown variant": ("--config=configs/default.py:huge", ["huge"]),
      "impossible value": ("--config.data.image_size=(30,32)", ["config.data.image_size"]),
  }
  commands = {}
  for name, (arg, _) in cases.items():
    workdir = () if arg.startswith("--workdir") else (f"--workdir={blocked_paths / 'unused'}",)
    commands[name] = [*train_command(blocked_paths / "unused"), *workdir, arg]
  results = _run_all(commands)
  for name, (_, needles) in cases.items():
    _assert_one_line_error(results[name], "train", *needles)
  assert not (blocked_paths / "unused" / "checkpoints").exists()
  assert (blocked_paths / "a_file").read_text() == ""  # nothing given was touched


def _photo(path: pathlib.Path, size=(8, 10)) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  pixels = (np.random.default_rng(0).random((*size, 3)) * 255).astype(np.uint8)
  Image.fromarray(pixels).save(path)


def _folder(root: pathlib.Path, bad: str | None) -> pathlib.Path:
  """One good pair plus one bad file of the given kind."""
  _photo(root / "images" / "good.png")
  (root / "maps").mkdir(parents=True, exist_ok=True)
  np.save(root / "maps" / "good.npy", np.ones((8, 10)))
  if bad == "truncated_jpeg":
    _photo(root / "images" / "bad.jpg")
    data = (root / "images" / "bad.jpg").read_bytes()
    (root / "images" / "bad.jpg").write_bytes(data[:len(data) // 2])
    np.save(root / "maps" / "bad.npy", np.ones((8, 10)))
  elif bad == "wrong_size_map":
    _photo(root / "images" / "bad.png")
    np.save(root / "maps" / "bad.npy", np.ones((9, 10)))
  elif bad in ("nan_map", "inf_map"):
    _photo(root / "images" / "bad.png")
    values = np.ones((8, 10))
    values[3, 4] = np.nan if bad == "nan_map" else np.inf
    np.save(root / "maps" / "bad.npy", values)
  elif bad == "no_map":
    _photo(root / "images" / "bad.png")
  return root


def test_bad_dataset_inputs_are_one_line_with_exit_2(tmp_path):
  command = lambda source, *extra: [sys.executable, "-m", "data_pipeline.image_depth_folder",
                                    f"--source_dir={source}", f"--data_dir={tmp_path / 'out'}",
                                    *extra]
  cases = {name: (command(_folder(tmp_path / name, name)), needle) for name, needle in [
      ("truncated_jpeg", "bad.jpg"), ("wrong_size_map", "bad.npy"), ("nan_map", "bad.npy"),
      ("inf_map", "bad.npy"), ("no_map", "bad.png")]}
  (tmp_path / "empty").mkdir()
  cases["empty folder"] = (command(tmp_path / "empty"), "empty")
  (tmp_path / "no_photos" / "images").mkdir(parents=True)
  cases["empty images with --skip_bad"] = (command(tmp_path / "no_photos", "--skip_bad"),
                                           "no_photos/images")
  only_bad = tmp_path / "only_bad"
  _photo(only_bad / "images" / "orphan.png")
  cases["nothing usable with --skip_bad"] = (command(only_bad, "--skip_bad"), "none of the 1")
  cases["missing folder"] = (command(tmp_path / "nope"), "nope")
  results = _run_all({name: cmd for name, (cmd, _) in cases.items()})
  for name, (_, needle) in cases.items():
    _assert_one_line_error(results[name], "image_depth_folder", needle)
  assert not list(tmp_path.glob("out/**/dataset_info.json"))  # no dataset was declared ready


def test_unusable_output_paths_are_one_line_with_exit_2(tmp_path, capsys):
  from diffcamera_jax.configs import default
  from diffcamera_jax import evaluate, refocus
  from diffcamera_jax.cli import UserError
  from diffcamera_jax.exported import save_exported
  blocker = tmp_path / "a_file"
  blocker.write_text("kept")
  photo = tmp_path / "photo.png"
  _photo(photo)
  model = tmp_path / "model"  # the flags are checked before a model is loaded
  model.mkdir()
  assert refocus.main(["--model", str(model), "--image", str(photo), "--focus", "0.5,0.5",
                       "--blur", "4", "--out", str(blocker / "out.png")]) == 2
  assert evaluate.main(["--model", str(model), "--num-scenes", "2", "--out", str(blocker)]) == 2
  errors = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
  assert errors == [f"refocus: error: --out folder {blocker} exists and is not a directory",
                    f"evaluate: error: --out {blocker} exists and is not a directory"]
  with pytest.raises(UserError, match="a_file/model"):
    save_exported(str(blocker / "model"), default.get_config("tiny"), {"w": np.zeros(2)})
  assert blocker.read_text() == "kept"


def test_a_restored_state_is_verified():
  import jax.numpy as jnp
  from flax import struct
  from diffcamera_jax.training.checkpointing import verify_train_state

  @struct.dataclass
  class State:
    step: jnp.ndarray
    params: dict

  good = State(step=jnp.asarray(8), params={"w": jnp.ones(3), "count": jnp.asarray(2)})
  verify_train_state(8, good)
  with pytest.raises(ValueError, match="not 6"):
    verify_train_state(6, good)
  with pytest.raises(ValueError, match="non-finite"):
    verify_train_state(8, good.replace(params={"w": jnp.asarray([1.0, jnp.nan, 0.0])}))
