"""A picture of what the model learns from: `python -m diffcamera_jax.training.preview --out DIR`.

Writes `DIR/preview.png`: one row per example, columns all-in-focus image, disparity, reference,
target, second target, stacking mask and multi-focus image. Crosses mark the focus points (the
source focus on the reference, the two target foci on their targets). Camera values are printed.
"""
from __future__ import annotations

import functools
import os
from typing import Any

from absl import app
from absl import flags
import jax
from ml_collections import config_flags
import numpy as np
from PIL import Image, ImageDraw

from data_pipeline import pipeline
from diffcamera_jax.objective import example as simulate_lib

COLUMNS = (("image", "all-in-focus"), ("disparity", "disparity"), ("reference", "reference"),
           ("target", "target"), ("target_2", "target 2"), ("stack_mask", "mask"),
           ("multifocus", "multi-focus"))
_MARKS = {"reference": "source_focus", "target": "target_focus", "target_2": "target_focus_2"}
_HEADER = 14  # pixels of the label row


def grid(example: dict[str, np.ndarray], scale: int = 1) -> np.ndarray:
  """uint8 [HEADER + B * H * scale, 7 * W * scale, 3] picture of a simulated batch."""
  if scale < 1:
    raise ValueError(f"scale must be >= 1, got {scale}")
  image = np.asarray(example["image"])
  batch, height, width, _ = image.shape
  h, w = height * scale, width * scale
  canvas = Image.new("RGB", (len(COLUMNS) * w, _HEADER + batch * h), "black")
  draw = ImageDraw.Draw(canvas)
  for c, (key, label) in enumerate(COLUMNS):
    draw.text((c * w + 2, 1), label, fill="white")
    for b in range(batch):
      panel = np.asarray(example[key][b], np.float32)
      if panel.ndim == 2:
        panel = np.repeat(panel[..., None], 3, axis=-1)
      tile = Image.fromarray(np.round(np.clip(panel, 0.0, 1.0) * 255).astype(np.uint8))
      tile = tile.resize((w, h), Image.Resampling.NEAREST)
      if key in _MARKS:
        _cross(ImageDraw.Draw(tile), np.asarray(example[_MARKS[key]][b]), w, h)
      canvas.paste(tile, (c * w, _HEADER + b * h))
  return np.asarray(canvas)


def _cross(draw: ImageDraw.ImageDraw, point: np.ndarray, w: int, h: int) -> None:
  x, y, r = float(point[0]) * w, float(point[1]) * h, max(2, w // 24)
  for colour, width in (("black", 3), ("red", 1)):
    draw.line([(x - r, y), (x + r, y)], fill=colour, width=width)
    draw.line([(x, y - r), (x, y + r)], fill=colour, width=width)


def write_preview(config: Any, out_dir: str, num_examples: int = 4, scale: int = 0) -> str:
  """Simulates one batch of `config`'s pipeline and writes its grid; returns the PNG path."""
  if num_examples < 1:
    raise ValueError(f"num_examples must be >= 1, got {num_examples}")
  config = config.copy_and_resolve_references()
  config.data.batch_size = num_examples
  config.data.num_workers = 0
  host = next(pipeline.make_train_iterator(config, process_index=0, process_count=1))
  render = jax.jit(functools.partial(simulate_lib.simulate, gamma=float(config.data.gamma),
                                     max_radius=simulate_lib.max_blur_radius(config.data)))
  example = jax.tree.map(np.asarray, render(host)).to_dict()
  scale = scale or max(1, 128 // max(config.data.image_size))
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, "preview.png")
  Image.fromarray(grid(example, scale)).save(path)
  for b in range(num_examples):
    e = {k: v[b] for k, v in example.items()}
    print(f"example {b}: source focus {e['source_focus']} blur {e['source_blur']:.2f} | target "
          f"focus {e['target_focus']} / {e['target_focus_2']} blur {e['target_blur']:.2f} | "
          f"blades {e['aperture_blades']}")
  return path


_OUT = flags.DEFINE_string("out", None, "Output folder for preview.png.")
_NUM = flags.DEFINE_integer("num_examples", 4, "Examples (rows) in the grid.")
_SCALE = flags.DEFINE_integer("scale", 0, "Upscale factor of each panel (0: to about 128 px).")
_CONFIG = config_flags.DEFINE_config_file("config", None,
                                          "Config file (default: configs/default.py).")


def main(argv) -> None:
  del argv
  if not _OUT.value:
    raise app.UsageError("--out is required")
  config = _CONFIG.value
  if config is None:
    from diffcamera_jax.configs import default  # pylint: disable=g-import-not-at-top
    config = default.get_config()
  print(write_preview(config, _OUT.value, _NUM.value, _SCALE.value))


if __name__ == "__main__":
  app.run(main)
