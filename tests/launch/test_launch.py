"""The pod launchers print the right gcloud / xpk commands under --dry-run and run nothing."""
import shlex
import subprocess
import sys

import pytest

from launch import tpu, xpk


def _run(module, *argv):
  return subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True,
                        check=False, cwd=str(__import__("pathlib").Path(__file__).parents[2]))


def test_tpu_dry_run_prints_all_steps_in_order():
  result = _run("launch.tpu", "--name", "dc", "--zone", "us-central2-b", "--accelerator", "v4-32",
                "--workdir", "gs://b/run", "--data", "gs://b/tfds", "--dry-run",
                "create", "install", "train", "delete", "--", "--config.train.num_steps=7")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 4
  create, install, train, delete = (shlex.split(line) for line in lines)
  assert create[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "create"]
  assert "--accelerator-type=v4-32" in create
  assert "--worker=all" in install and "--worker=all" in train
  remote = next(a for a in train if a.startswith("--command="))
  assert "python3 -m diffcamera_jax.train" in remote
  assert "--config=configs/tpu_v4.py" in remote and "--workdir=gs://b/run" in remote
  assert "--config.data.tfds_data_dir=gs://b/tfds" in remote
  assert "--config.train.num_steps=7" in remote
  assert delete[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "delete"]


def test_tpu_queued_resource_variant():
  args = tpu.parse_args(["--name", "dc", "--zone", "z", "--queued", "--spot", "create", "delete"])
  create, delete = tpu.commands_for(args)
  assert create[:5] == ["gcloud", "compute", "tpus", "queued-resources", "create"]
  assert "--node-id=dc" in create and "--spot" in create
  assert "--force" in delete


def test_tpu_training_requires_bucket_workdir():
  result = _run("launch.tpu", "--name", "dc", "--zone", "z", "--workdir", "/tmp/local", "--dry-run",
                "train")
  assert result.returncode == 2
  assert "--workdir must be a gs:// bucket path" in result.stderr


def test_xpk_dry_run_command():
  result = _run("launch.xpk", "--cluster", "c", "--image", "img:1", "--workdir", "gs://b/r",
                "--data", "gs://b/tfds", "--dry-run")
  assert result.returncode == 0, result.stderr
  command = shlex.split(result.stdout.strip())
  assert command[:3] == ["xpk", "workload", "create"]
  assert "--tpu-type=v4-32" in command and "--docker-image=img:1" in command
  train = shlex.split(next(a for a in command if a.startswith("--command=")).split("=", 1)[1])
  assert train[:3] == ["python3", "-m", "diffcamera_jax.train"]
  assert "--config.data.tfds_data_dir=gs://b/tfds" in train


def test_xpk_rejects_local_workdir():
  with pytest.raises(SystemExit):
    xpk.parse_args(["--cluster", "c", "--image", "i", "--workdir", "/tmp/x"])
