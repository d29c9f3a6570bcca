"""tools/corruption_margins.py: the model's per-scene margin over the renderer given the same
corrupted map, per kind and averaged, from a results file; a file without such rows exits 2."""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write(path, methods):
  scores = {name: {"per_scene": {m: list(map(float, v)) for m, v in rows.items()}}
            for name, rows in methods.items()}
  with open(path, "w") as f:
    json.dump({"benchmarks": {"procedural": {"methods": scores}}}, f)


def _rows(bokeh, refocus):
  n = len(bokeh)
  rows = {m: [0.0] * n for m in ("bokeh/focus_accuracy", "deblur/psnr",
                                 "refocus/focus_accuracy", "stacking/psnr", "sweep/lvcorr")}
  rows.update({"bokeh/psnr": bokeh, "refocus/psnr": refocus})
  return rows


def test_margins_per_kind_and_their_mean(tmp_path):
  path = str(tmp_path / "results.json")
  _write(path, {
      "renderer (depth: blur)": _rows([30, 32, 34], [25, 26, 27]),
      "model (depth: blur)": _rows([31, 32, 36], [25, 27, 27]),
      "renderer (depth: holes)": _rows([40, 40, 40], [30, 30, 30]),
      "model (depth: holes)": _rows([37, 40, 40], [30, 30, 33]),
  })
  out = str(tmp_path / "margins.json")
  run = subprocess.run([sys.executable, "tools/corruption_margins.py", path, "--out", out],
                       cwd=ROOT, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr
  table = json.load(open(out))[path]
  assert table["model (depth: blur)"]["bokeh/psnr"]["mean"] == 1.0
  mean = table["model (depth: mean over corruptions)"]
  per_scene = np.mean([[1, 0, 2], [-3, 0, 0]], axis=0)  # bokeh margins, scene by scene
  np.testing.assert_allclose(mean["bokeh/psnr"]["mean"], per_scene.mean())
  np.testing.assert_allclose(mean["bokeh/psnr"]["per_scene_se"],
                             per_scene.std(ddof=1) / np.sqrt(3))
  np.testing.assert_allclose(mean["refocus/psnr"]["mean"], np.mean([[0, 1, 0], [0, 0, 3]]))


def test_a_file_without_corrupted_rows_is_named_and_exits_2(tmp_path):
  path = str(tmp_path / "results.json")
  _write(path, {"model": _rows([30.0], [25.0])})
  run = subprocess.run([sys.executable, "tools/corruption_margins.py", path],
                       cwd=ROOT, capture_output=True, text=True)
  assert run.returncode == 2 and path in run.stderr and run.stderr.count("\n") == 1
