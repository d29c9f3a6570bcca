"""The evaluation program: JSON + HTML with baselines and models side by side; bad input -> exit 2."""
import json
import math
import os

import flax.linen as nn
import jax
import numpy as np
import pytest

from diffcamera_jax.configs.default import get_config
from diffcamera_jax import evaluate
from diffcamera_jax.exported import save_exported
from diffcamera_jax.models import build_model, example_inputs
from diffcamera_jax.evaluation.report import bar_chart, line_chart, render_report

DEPTH_MODEL = os.path.join(os.path.dirname(__file__), "fixtures", "depth", "tiny_a")


def _export(path, seed):
  config = get_config("tiny")
  model, codec = build_model(config)
  params = model.init({"params": jax.random.key(seed)}, *example_inputs(codec, (32, 32)))["params"]
  save_exported(str(path), config, nn.meta.unbox(params))


@pytest.mark.slow
def test_models_and_ablation_side_by_side(tmp_path, capsys, monkeypatch):
  from diffcamera_jax.inference import physics_deblur
  _export(tmp_path / "model", 0)
  _export(tmp_path / "no_stack", 1)
  searched = []  # the optics pre-pass is shared by the two models: each photo searched once
  real = physics_deblur.deblur_with_depth
  monkeypatch.setattr(physics_deblur, "deblur_with_depth", lambda photos, *a, **k: searched.extend(
      p.tobytes() for p in photos) or real(photos, *a, **k))
  out = tmp_path / "eval"
  argv = ["--model", str(tmp_path / "model"), "--ablation", f"no_stack={tmp_path / 'no_stack'}",
          "--num-scenes", "2", "--examples", "1", "--steps", "1", "--quiet", "--out", str(out)]
  assert evaluate.main(argv) == 0
  assert searched and len(set(searched)) == len(searched)
  results = json.loads((out / "results.json").read_text())
  bench = results["benchmarks"]["procedural"]
  assert list(bench["methods"]) == ["input unchanged", "renderer (true depth)", "model",
                                    "optics deblur + model", "no_stack",
                                    "optics deblur + no_stack"]
  assert bench["size"] == [32, 32]  # the model's training size
  for method in bench["methods"].values():
    assert len(method["per_scene"]["bokeh/psnr"]) == 2
    assert all(v is None or math.isfinite(v) for v in method["summary"].values()
               if not isinstance(v, list))
  assert bench["methods"]["renderer (true depth)"]["summary"]["bokeh/psnr"] == 100.0
  html = (out / "report.html").read_text()
  assert "no_stack" in html and "<svg" in html
  for rel in bench["images"].values():
    assert (out / rel).is_file() and f'src="{rel}"' in html
  printed = capsys.readouterr().out
  assert "no_stack" in printed and str(out / "report.html") in printed


def test_depth_model_runs_methods_on_estimated_depth_and_fills_folder_maps(tmp_path):
  """`--depth-model` (a tiny random Depth Anything): the renderer, the model and the folder's
  map-less photo run on estimated disparity; the true-depth renderer stays as the reference."""
  from PIL import Image
  _export(tmp_path / "model", 0)
  folder = tmp_path / "photos"
  folder.mkdir()
  rng = np.random.default_rng(0)
  for name in ("with_map", "without_map"):
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"{name}.png")
  Image.fromarray(rng.integers(0, 65536, (40, 48), dtype=np.uint16)).save(
      folder / "with_map_disparity.png")
  out = tmp_path / "eval"
  argv = ["--model", str(tmp_path / "model"), "--depth-model", DEPTH_MODEL, "--folder",
          str(folder), "--num-scenes", "2", "--examples", "0", "--steps", "1", "--quiet",
          "--optics-prepass", "off", "--out", str(out)]
  assert evaluate.main(argv) == 0
  results = json.loads((out / "results.json").read_text())
  for bench in results["benchmarks"].values():
    assert list(bench["methods"]) == ["input unchanged", "renderer (true depth)",
                                      "renderer (estimated depth)", "model (estimated depth)"]
  assert results["benchmarks"]["folder"]["num_scenes"] == 2
  procedural = results["benchmarks"]["procedural"]["methods"]
  estimated = procedural["renderer (estimated depth)"]["summary"]["bokeh/psnr"]
  assert math.isfinite(estimated) and estimated < 100.0  # the true-depth render is exact


def test_scene_seed_picks_other_scenes(tmp_path):
  """`--scene-seed 20000` scores the validation scenes instead of the benchmark's."""
  scores = {}
  for name, extra in (("bench", []), ("val", ["--scene-seed", "20000"])):
    out = tmp_path / name
    assert evaluate.main(["--num-scenes", "2", "--size", "16x16", "--examples", "0", "--quiet",
                          *extra, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    scores[name] = results["benchmarks"]["procedural"]["methods"]["input unchanged"]["per_scene"]
    assert results["settings"]["scene_seed"] == (20000 if extra else None)
  assert scores["bench"]["refocus/psnr"] != scores["val"]["refocus/psnr"]


@pytest.mark.parametrize("argv, expected", [
    (["--num-scenes", "0"], "--num-scenes"),
    (["--model", "/nonexistent/model"], "--model"),
    (["--ablation", "nodir"], "NAME=DIR"),
    (["--size", "8x8"], "16x16"),
    (["--folder", "/nonexistent/folder"], "--folder"),
    (["--depth-model", "/nonexistent/weights"], "--depth-model"),
    (["--depth-model", DEPTH_MODEL, "--no-depth"], "exclude each other"),
    (["--camera-search-threshold", "0"], "--camera-search-threshold"),
    (["--uniform-search-min-gain", "-1"], "--uniform-search-min-gain"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, expected):
  assert evaluate.main([*argv, "--out", str(tmp_path / "o")]) == evaluate.EXIT_BAD_INPUT
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and expected in err[0]


def test_to_json_replaces_undefined_scores():
  got = evaluate.to_json({"a": np.float32(1.5), "b": [float("nan"), np.int64(3)], "c": math.inf})
  assert got == {"a": 1.5, "b": [None, 3], "c": None}
  json.dumps(got, allow_nan=False)


def test_svg_charts_and_report_page():
  svg = bar_chart("t", ["bokeh", "deblur"], {"m1": [1.0, 2.0], "m2": [float("nan"), 3.0]})
  assert svg.startswith("<svg") and svg.count("<rect") == 3 + 2  # 3 finite bars + 2 legend keys
  with pytest.raises(ValueError, match="m1"):
    bar_chart("t", ["a"], {"m1": [1.0, 2.0]})
  line = line_chart("t", [0.0, 1.0, 2.0], {"m": [0.0, -1.0, -2.0]})
  assert line.count("<circle") == 3
  summary = {k: 1.0 for k in ("bokeh/psnr", "deblur/psnr", "refocus/psnr", "stacking/psnr",
                              "bokeh/ssim", "deblur/ssim", "refocus/ssim")}
  summary["sweep/log_lv_drop"] = [0.0, -1.0]
  page = render_report({"benchmarks": {"procedural": {
      "num_scenes": 1, "size": [32, 32], "sweep_levels": [0.0, 2.0],
      "methods": {"a<b": {"summary": summary}}, "images": {}}}})
  assert "a&lt;b" in page and page.count("<svg") == 4
