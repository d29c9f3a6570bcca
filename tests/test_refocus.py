"""The refocus CLI: every output path, and every bad input -> one stderr line, exit code 2."""
import os
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest
from PIL import Image

from diffcamera_jax.configs.default import get_config
from diffcamera_jax import refocus
from diffcamera_jax.exported import save_exported
from diffcamera_jax.models import build_model, example_inputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPTH_MODEL = os.path.join(ROOT, "tests", "fixtures", "depth", "tiny_a")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """A tiny exported model, a non-square photo, matching and mismatched depth maps."""
  d = tmp_path_factory.mktemp("refocus")
  config = get_config("tiny")
  model, codec = build_model(config)
  params = model.init({"params": jax.random.key(0)}, *example_inputs(codec, (32, 32)))["params"]
  save_exported(str(d / "model"), config, nn.meta.unbox(params))
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)).save(d / "photo.png")
  Image.fromarray(rng.integers(0, 65536, (20, 28), dtype=np.uint16)).save(d / "depth.png")
  Image.fromarray(rng.integers(0, 65536, (21, 28), dtype=np.uint16)).save(d / "depth_bad.png")
  (d / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
  return d


def _args(files, *extra, out="out.png"):
  return ["--model", str(files / "model"), "--image", str(files / "photo.png"),
          "--out", str(files / out), "--quiet", *extra]


def test_single_frame_keeps_input_size(files, capsys):
  assert refocus.main(_args(files, "--focus", "0.3,0.7", "--blur", "12")) == 0
  out = Image.open(files / "out.png")
  assert out.size == (28, 20)
  assert capsys.readouterr().out.strip() == str(files / "out.png")


def test_focal_stack_writes_frames_sheet_and_gif(files):
  argv = _args(files, "--focus", "0.2,0.2", "--focus", "0.8,0.8", "--blur", "0", "--blur", "6",
               "--depth", str(files / "depth.png"), "--aperture", "6,15", "--steps", "1", "--gif",
               out="stack.png")
  assert refocus.main(argv) == 0
  for i in range(4):
    assert Image.open(files / f"stack_{i:03d}.png").size == (28, 20)
  sheet = Image.open(files / "stack_sheet.png")
  assert sheet.size[0] > 2 * 28 and sheet.size[1] > 2 * 20
  frames = [np.asarray(Image.open(files / f"stack_{i:03d}.png").convert("RGB")) for i in range(4)]
  distinct = 1 + sum(not np.array_equal(a, b) for a, b in zip(frames, frames[1:]))
  with Image.open(files / "stack.gif") as gif:
    # Pillow merges identical consecutive frames (adding their durations): the animation still
    # lasts 4 frames' time, with one GIF frame per change.
    assert gif.n_frames == distinct
    total_ms = 0
    for i in range(gif.n_frames):
      gif.seek(i)
      total_ms += gif.info["duration"]
    assert total_ms == 4 * 250


def test_exif_rotated_input_gives_upright_output(files):
  im = Image.open(files / "photo.png")
  exif = im.getexif()
  exif[0x0112] = 8  # rotate 90 CCW to view
  im.save(files / "rotated.jpg", exif=exif)
  argv = ["--model", str(files / "model"), "--image", str(files / "rotated.jpg"), "--focus",
          "0.5,0.5", "--blur", "3", "--out", str(files / "rot_out.png"), "--quiet"]
  assert refocus.main(argv) == 0
  assert Image.open(files / "rot_out.png").size == (20, 28)


def test_large_photo_is_composed_at_full_size_and_the_plan_is_printed(files, capsys):
  Image.fromarray(np.random.default_rng(2).integers(0, 256, (60, 90, 3), dtype=np.uint8)).save(
      files / "large.png")
  argv = ["--model", str(files / "model"), "--image", str(files / "large.png"), "--quiet",
          "--focus", "0.5,0.5", "--blur", "0", "--blur", "9", "--max-memory", "2G",
          "--out", str(files / "large_out.png")]
  assert refocus.main(argv) == 0
  err = capsys.readouterr().err
  assert "working resolution 32x21 (trained at 32x32)" in err
  assert "frames composed at 90x60" in err and "of a 2.0 GiB budget" in err
  assert Image.open(files / "large_out_001.png").size == (90, 60)


def test_depth_model_estimates_and_saves_the_depth(files, capsys):
  """Without --depth, --depth-model estimates the photo's disparity (a tiny random Depth
  Anything); --save-depth writes it as a 16-bit PNG at the photo's size, which --depth reads back
  to the same frames."""
  argv = _args(files, "--focus", "0.3,0.7", "--blur", "8", "--depth-model", DEPTH_MODEL,
               "--save-depth", str(files / "estimated.png"), out="est.png")
  assert refocus.main(argv) == 0
  printed = capsys.readouterr()
  assert str(files / "estimated.png") in printed.out and "depth estimated by" in printed.err
  saved = Image.open(files / "estimated.png")
  assert saved.size == (28, 20) and np.asarray(saved).dtype == np.uint16
  assert np.asarray(saved).std() > 0
  again = _args(files, "--focus", "0.3,0.7", "--blur", "8", "--depth", str(files / "estimated.png"),
                out="est_again.png")
  assert refocus.main(again) == 0
  a = np.asarray(Image.open(files / "est.png"), np.int32)
  b = np.asarray(Image.open(files / "est_again.png"), np.int32)
  assert np.abs(a - b).max() <= 1


@pytest.mark.parametrize("extra, expected", [
    (["--focus", "0.5,0.5", "--blur", "3", "--depth-model", "{d}/no_weights"], "--depth-model"),
    (["--focus", "0.5,0.5", "--blur", "3", "--depth-model", "{d}/photo.png"], "--depth-model"),
    (["--focus", "0.5,0.5", "--blur", "3", "--save-depth", "{d}/d.png"], "--save-depth"),
    (["--focus", "0.5,0.5", "--blur", "3", "--max-memory", "lots"], "--max-memory"),
    (["--focus", "0.5,0.5", "--blur", "3", "--max-memory", "1K"], "--max-memory"),
    (["--focus", "1.5,0.5", "--blur", "3"], "--focus"),
    (["--focus", "0.5", "--blur", "3"], "--focus"),
    (["--focus", "0.5,0.5", "--blur", "-2"], "--blur"),
    (["--focus", "0.5,0.5", "--blur", "3", "--depth", "{d}/depth_bad.png"], "--depth"),
    (["--focus", "0.5,0.5", "--blur", "3", "--depth", "{d}/nowhere.png"], "nowhere.png"),
    (["--focus", "0.5,0.5", "--blur", "3", "--aperture", "2"], "--aperture"),
    (["--focus", "0.5,0.5", "--blur", "3", "--steps", "0"], "--steps"),
    (["--focus", "0.5,0.5", "--blur", "3", "--camera-search-threshold", "0"],
     "--camera-search-threshold"),
    (["--blur", "3"], "--focus"),
])
def test_bad_arguments_exit_2_with_one_line(files, capsys, extra, expected):
  argv = _args(files, *[e.format(d=files) for e in extra], out="bad.png")
  assert refocus.main(argv) == refocus.EXIT_BAD_INPUT
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("refocus: error:") and expected in err[0]
  assert not (files / "bad.png").exists()


@pytest.mark.parametrize("image, model, expected", [
    ("missing.png", "model", "missing.png"),
    ("broken.jpg", "model", "broken.jpg"),
    ("photo.png", "no_model", "--model"),
])
def test_bad_files_exit_2_with_one_line(files, capsys, image, model, expected):
  argv = ["--model", str(files / model), "--image", str(files / image), "--focus", "0.5,0.5",
          "--blur", "3", "--out", str(files / "bad.png")]
  assert refocus.main(argv) == refocus.EXIT_BAD_INPUT
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and expected in err[0]


def test_module_entry_point_has_no_traceback(files):
  proc = subprocess.run(
      [sys.executable, "-m", "diffcamera_jax.refocus", *_args(files, "--focus", "0.5,0.5",
                                                              "--blur", "-1")],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
  assert "--blur" in proc.stderr
