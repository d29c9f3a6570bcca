"""A trained FLUX export is usable: train -> export -> refocus -> evaluate through the public
commands; folded and separate LoRA agree; a missing or mismatched base fails with one line."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from diffcamera_jax import evaluate, refocus
from diffcamera_jax.inference.refocuser import Refocuser

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "flux")


@pytest.fixture(scope="module")
def export(tmp_path_factory, flux_run):
  """The tiny FLUX variant trained 2 steps by `diffcamera_jax.train` (the shared run), exported
  by `diffcamera_jax.export` (LoRA and condition params only; the base is the seeded random one)."""
  workdir, train = flux_run
  assert train.returncode == 0, train.stderr[-3000:]
  d = tmp_path_factory.mktemp("flux_chain")
  exported = subprocess.run(
      [sys.executable, "-m", "diffcamera_jax.export", f"--workdir={workdir}", "--step=2",
       f"--out={d / 'export'}"], cwd=ROOT, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert exported.returncode == 0, exported.stderr[-3000:]
  return d


def test_refocus_cli_keeps_each_photo_size(export, capsys):
  rng = np.random.default_rng(0)
  for h, w in [(40, 56), (48, 24)]:
    photo = export / f"photo_{h}x{w}.png"
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(photo)
    out = export / f"out_{h}x{w}.png"
    argv = ["--model", str(export / "export"), "--image", str(photo), "--focus", "0.4,0.6",
            "--blur", "0", "--blur", "6", "--steps", "2", "--quiet", "--out", str(out)]
    assert refocus.main(argv) == 0, capsys.readouterr().err
    for i in range(2):
      assert Image.open(export / f"out_{h}x{w}_{i:03d}.png").size == (w, h)
  assert "working resolution" in capsys.readouterr().err


def test_folded_lora_gives_the_same_frames(export):
  separate = Refocuser.load(str(export / "export"), max_side=64)
  folded = Refocuser.load(str(export / "export"), max_side=64, fold_lora=True)
  assert folded.loaded.model.lora is None and separate.loaded.model.lora is not None
  rng = np.random.default_rng(1)
  image = rng.random((40, 56, 3)).astype(np.float32)
  disparity = rng.random((40, 56)).astype(np.float32)
  a = separate.refocus(image, [(0.3, 0.3), (0.7, 0.7)], [0.0, 5.0], disparity=disparity, seed=3)
  b = folded.refocus(image, [(0.3, 0.3), (0.7, 0.7)], [0.0, 5.0], disparity=disparity, seed=3)
  assert a.shape == (4, 40, 56, 3)
  np.testing.assert_allclose(a, b, atol=1e-5)
  np.testing.assert_array_equal(a, separate.refocus(image, [(0.3, 0.3), (0.7, 0.7)], [0.0, 5.0],
                                                    disparity=disparity, seed=3))


def test_evaluate_scores_a_flux_export(export):
  out = export / "eval"
  argv = ["--model", str(export / "export"), "--num-scenes", "2", "--examples", "0",
          "--steps", "1", "--quiet", "--out", str(out)]
  assert evaluate.main(argv) == 0
  bench = json.loads((out / "results.json").read_text())["benchmarks"]["procedural"]
  assert "model" in bench["methods"] and bench["size"] == [32, 32]
  assert len(bench["methods"]["model"]["per_scene"]["refocus/psnr"]) == 2


def test_missing_or_mismatched_base_is_one_line(export, capsys, tmp_path):
  broken = tmp_path / "export_missing_base"
  shutil.copytree(export / "export", broken)
  config = json.loads((broken / "config.json").read_text())
  config["flux"]["transformer_weights"] = str(tmp_path / "gone" / "flux1-dev.safetensors")
  (broken / "config.json").write_text(json.dumps(config))
  photo = export / "photo_40x56.png"
  if not photo.exists():
    Image.fromarray(np.zeros((40, 56, 3), np.uint8)).save(photo)
  common = ["--image", str(photo), "--focus", "0.5,0.5", "--blur", "3", "--quiet",
            "--out", str(tmp_path / "o.png")]
  assert refocus.main(["--model", str(broken), *common]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "gone/flux1-dev.safetensors" in err[0] and "--base-weights" in err[0]
  # a base of other dimensions (the parity fixture's tiny FLUX) names the tensors that differ
  mismatched = os.path.join(FIXTURES, "transformer_original.safetensors")
  assert refocus.main(["--model", str(export / "export"), "--base-weights", mismatched,
                       *common]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "transformer_original.safetensors" in err[0]
  # the first mismatch in the model's leaf order: the tiny fixture's heads are half as wide
  assert ("wrong shape for params leaf double_blocks_0/img_attn/norm/key_norm/scale" in err[0]
          and "checkpoint gives (16,), model expects (32,)" in err[0])
