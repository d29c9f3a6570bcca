"""`pip install .` gives working programs: run from another folder, with only the installed copy.

The repository is copied and `pip install`ed into a fresh virtual environment (no network: its
dependencies are the running environment's packages, made visible through a `.pth` file, which
leaves out this checkout's editable install), then every program runs with that environment's
Python from an empty working directory, so nothing resolves through the source tree: a module
left out of the package, or an import of something outside it (such as a top-level `configs`),
fails here.
"""
import os
import pathlib
import shutil
import site as site_lib
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Not part of a fresh checkout: version control, environments, build leftovers, run outputs.
_ROOT_LEFTOVERS = {".git", ".venv", "venv", "build", "dist", ".pytest_cache", "tests", "docs",
                   "notebooks"}


def _not_source(folder, names):
  skip = {n for n in names if n == "__pycache__" or n.endswith((".egg-info", ".pyc"))}
  if pathlib.Path(folder).resolve() == ROOT:
    skip |= {n for n in names if n in _ROOT_LEFTOVERS or n.startswith(("workdir", "out"))}
  return skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """The repository installed into a fresh venv; `site` is its site-packages, `run` runs its
  Python from the empty folder `cwd`.

  It is built from a copy: building in place would write `build/` into the checkout, and a stale
  `build/lib` there can carry modules that no longer exist in the source.
  """
  base = tmp_path_factory.mktemp("install")
  source, venv, cwd = base / "source", base / "venv", base / "elsewhere"
  shutil.copytree(ROOT, source, ignore=_not_source)
  cwd.mkdir()
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                 timeout=300)
  python = venv / "bin" / "python"
  site = pathlib.Path(subprocess.run(
      [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
      capture_output=True, text=True, check=True, timeout=60).stdout.strip())
  # The dependencies: this environment's site-packages as plain path entries (its own .pth files,
  # among them the checkout's editable install, are not read from there).
  (site / "_dependencies.pth").write_text("\n".join(site_lib.getsitepackages()) + "\n")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("PYTHONPATH", None)
  pip = subprocess.run(
      [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
       "--no-build-isolation", "--no-index", "--no-cache-dir", "--disable-pip-version-check",
       "--quiet", str(source)], capture_output=True, text=True, timeout=600, check=False,
      env=env)
  assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]

  def run(*args, timeout=600):
    return subprocess.run([python, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)

  return types.SimpleNamespace(site=site, cwd=cwd, run=run)


def test_installed_copy_is_the_one_imported(installed):
  """The editable install of the checkout must not win over the installed copy."""
  result = installed.run("-c", "import diffcamera_jax, data_pipeline; "
                               "print(diffcamera_jax.__file__); print(data_pipeline.__file__)")
  assert result.returncode == 0, result.stderr[-3000:]
  paths = [pathlib.Path(line).resolve() for line in result.stdout.split()]
  assert len(paths) == 2
  for path in paths:
    assert path.is_relative_to(installed.site.resolve()), path


@pytest.mark.parametrize("program, code, flag", [
    ("train", 1, "--workdir"),  # absl's --help exits 1 by design (absl.app.HelpFlag)
    ("refocus", 0, "--focus"),
    ("evaluate", 0, "--model"),
    ("export", 0, "--workdir"),
])
def test_programs_print_their_help(installed, program, code, flag):
  result = installed.run("-m", f"diffcamera_jax.{program}", "--help")
  assert result.returncode == code, result.stderr[-3000:]
  assert flag in result.stdout and "Traceback" not in result.stderr


@pytest.mark.slow
def test_train_export_refocus_with_the_installed_config(installed, tmp_path):
  """Trains the tiny config shipped inside the installed package, exports it and refocuses a
  photo with the export, all from the empty folder (evaluation is left to tests/train: it would
  double the time; its modules are still imported by the trainer)."""
  config = installed.site / "diffcamera_jax" / "configs" / "default.py"
  assert config.is_file(), "the configs are not installed with the package"
  workdir, export, photo, out = (tmp_path / n for n in ("run", "export", "photo.png", "out.png"))
  result = installed.run("-m", "diffcamera_jax.train", f"--config={config}:tiny",
                         f"--workdir={workdir}", "--config.train.num_steps=2",
                         "--config.train.checkpoint_every=2", "--config.train.eval_every=100000",
                         "--distributed=off")
  assert result.returncode == 0, result.stderr[-3000:]
  assert (workdir / "checkpoints" / "2").is_dir()

  result = installed.run("-m", "diffcamera_jax.export", "--workdir", workdir, "--out", export)
  assert result.returncode == 0, result.stderr[-3000:]

  Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 28, 3), np.uint8)).save(photo)
  result = installed.run("-m", "diffcamera_jax.refocus", "--model", export, "--image", photo,
                         "--focus", "0.3,0.7", "--blur", "4", "--out", out, "--quiet")
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip() == str(out)
  assert Image.open(out).size == (28, 20)
  assert not list(installed.cwd.iterdir()), "a program wrote into its working directory"
