"""Shared fixtures of the FLUX tests: paths and the reference inputs/outputs (numpy only)."""
import json
import os
import subprocess

import numpy as np
import pytest

from diffcamera_jax.testing.train_runs import train_tiny_flux
from diffcamera_jax.weights.safetensors_io import SafetensorsCheckpoint

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "flux")


def read_all(path: str) -> dict[str, np.ndarray]:
  f = SafetensorsCheckpoint(path)
  return {n: np.array(f.read(n)) for n in f.names()}


@pytest.fixture(scope="session")
def fixtures_dir() -> str:
  return FIXTURES


@pytest.fixture(scope="session")
def transformer_io() -> dict[str, np.ndarray]:
  return read_all(os.path.join(FIXTURES, "transformer_io.safetensors"))


@pytest.fixture(scope="session")
def vae_io() -> dict[str, np.ndarray]:
  return read_all(os.path.join(FIXTURES, "vae_io.safetensors"))


@pytest.fixture(scope="session")
def transformer_config() -> dict:
  with open(os.path.join(FIXTURES, "transformer", "config.json")) as f:
    return json.load(f)


@pytest.fixture(scope="session")
def vae_config() -> dict:
  with open(os.path.join(FIXTURES, "vae", "config.json")) as f:
    return json.load(f)


@pytest.fixture(scope="session")
def flux_run(build_once):
  """One 2-step run of the tiny FLUX variant through the training program, shared by the
  training and the inference tests (who copy it before changing it): (workdir, the finished
  process as read back from the shared folder)."""
  def make(folder):
    result = train_tiny_flux(folder / "run", 2)
    (folder / "result.json").write_text(json.dumps(
        {"returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr}))
  folder = build_once("flux_train_run", make)
  result = json.loads((folder / "result.json").read_text())
  return folder / "run", subprocess.CompletedProcess(
      args=[], returncode=result["returncode"], stdout=result["stdout"], stderr=result["stderr"])
