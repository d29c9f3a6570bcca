"""The preview grid: layout, panel contents and the CLI entry point."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from diffcamera_jax.configs import default
from diffcamera_jax.training import preview


def _example(batch=2, height=6, width=5):
  rng = np.random.default_rng(0)
  example = {key: rng.random((batch, height, width, 3), dtype=np.float32)
             for key in ("image", "reference", "target", "target_2", "multifocus")}
  example["disparity"] = rng.random((batch, height, width), dtype=np.float32)
  example["stack_mask"] = (example["disparity"] > 0.5).astype(np.float32)
  for key in ("source_focus", "target_focus", "target_focus_2"):
    example[key] = np.full((batch, 2), 0.5, np.float32)
  return example


def test_grid_lays_out_one_row_per_example_and_one_column_per_panel():
  example = _example()
  picture = preview.grid(example, scale=4)
  header = preview._HEADER
  assert picture.shape == (header + 2 * 6 * 4, len(preview.COLUMNS) * 5 * 4, 3)
  assert picture.dtype == np.uint8
  # Unmarked panels are the upscaled arrays: the disparity of example 1, top-left pixel.
  column = [key for key, _ in preview.COLUMNS].index("disparity")
  top, left = header + 6 * 4, column * 5 * 4
  assert picture[top, left, 0] == np.round(example["disparity"][1, 0, 0] * 255)
  mask_column = [key for key, _ in preview.COLUMNS].index("stack_mask")
  tile = picture[header:header + 24, mask_column * 20:(mask_column + 1) * 20, 0]
  np.testing.assert_array_equal(tile[::4, ::4], example["stack_mask"][0] * 255)


def test_grid_rejects_a_bad_scale():
  with pytest.raises(ValueError, match="scale"):
    preview.grid(_example(), scale=0)


def test_write_preview_renders_a_simulated_batch(tmp_path):
  config = default.get_config("tiny")
  path = preview.write_preview(config, str(tmp_path), num_examples=2, scale=2)
  h, w = config.data.image_size
  with Image.open(path) as png:
    assert png.size == (len(preview.COLUMNS) * w * 2, preview._HEADER + 2 * h * 2)


@pytest.mark.parametrize("program", ["diffcamera_jax.training.preview", "data_pipeline.preview"])
def test_command_line_writes_the_png(tmp_path, program):
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  result = subprocess.run(
      [sys.executable, "-m", program, f"--out={tmp_path}", "--num_examples=1",
       f"--config={root}/configs/default.py:tiny"],
      cwd=root, env=dict(os.environ, PYTHONPATH=root, JAX_PLATFORMS="cpu"),
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert (tmp_path / "preview.png").is_file()
