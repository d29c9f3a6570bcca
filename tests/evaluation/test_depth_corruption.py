"""Corrupted depth for evaluation: each kind is deterministic per map, stays in [0, 1] and does the
error it names; `evaluate --depth-corruption` adds one row per kind and method, scored against the
true depth."""
import json

import numpy as np
import pytest

from diffcamera_jax import evaluate
from diffcamera_jax.evaluation import benchmark, depth_corruption as dc


def _maps(n=3, size=32):
  scenes = benchmark.procedural_scenes(n, size, size, seed=20_000)
  return np.stack([s.disparity for s in scenes])


@pytest.mark.parametrize("kind", sorted(dc.CORRUPTIONS))
def test_each_kind_is_deterministic_in_range_and_changes_the_map(kind):
  d = _maps()
  a, b = dc.corrupt(d, kind), dc.corrupt(d, kind)
  assert a.shape == d.shape and a.dtype == np.float32
  np.testing.assert_array_equal(a, b)  # the same map -> the same corruption
  np.testing.assert_array_equal(dc.corrupt(d[1], kind), a[1])  # whatever the batch
  assert a.min() >= 0.0 and a.max() <= 1.0
  assert np.abs(a - d).mean() > 1e-3


def test_kinds_do_what_they_name():
  d = _maps()
  warped = dc.corrupt(d, "warp")
  order = np.argsort(d[0].ravel(), kind="stable")
  assert np.all(np.diff(warped[0].ravel()[order]) >= 0)  # monotone: order kept
  noisy = dc.corrupt(d, "noise")
  assert len(np.unique(noisy)) <= dc.NOISE_LEVELS
  coarse = dc.corrupt(d, "coarse")
  cell = 32 // dc.COARSE_CELLS
  assert np.all(coarse[:, :cell, :cell] == coarse[:, :1, :1])  # constant over a cell
  np.testing.assert_allclose(coarse[:, :cell, :cell].mean((1, 2)),
                             d[:, :cell, :cell].mean((1, 2)), atol=1e-6)
  holes = dc.corrupt(d, "holes")
  assert np.all((holes == d) | (holes == 0.0)) and np.mean(holes == 0.0) > 0.02
  blurred = dc.corrupt(d, "blur")
  lap = lambda x: np.abs(np.diff(x, axis=-1)).mean()
  assert lap(blurred) < 0.7 * lap(d)


def test_parse_kinds_names_the_problem():
  assert dc.parse_kinds("all") == tuple(dc.CORRUPTIONS)
  assert dc.parse_kinds("blur, holes") == ("blur", "holes")
  for bad in ("", "fog", "blur,blur"):
    with pytest.raises(ValueError, match="--depth-corruption"):
      dc.parse_kinds(bad)


def test_rows_per_kind_and_focus_scored_against_true_depth(tmp_path):
  out = tmp_path / "eval"
  argv = ["--depth-corruption", "warp,holes", "--num-scenes", "2", "--size", "32x32",
          "--examples", "0", "--quiet", "--out", str(out)]
  assert evaluate.main(argv) == 0
  methods = json.loads((out / "results.json").read_text())["benchmarks"]["procedural"]["methods"]
  assert list(methods) == ["input unchanged", "renderer (true depth)", "renderer (depth: warp)",
                           "renderer (depth: holes)"]
  true_row, warped = methods["renderer (true depth)"], methods["renderer (depth: warp)"]
  assert true_row["summary"]["bokeh/focus_accuracy"] == 1.0
  assert warped["summary"]["bokeh/psnr"] < true_row["summary"]["bokeh/psnr"]


@pytest.mark.parametrize("extra", [["--depth-corruption", "fog"],
                                   ["--depth-corruption", "blur", "--no-depth"]])
def test_bad_corruption_flags_exit_2(tmp_path, capsys, extra):
  assert evaluate.main(extra + ["--num-scenes", "1", "--out", str(tmp_path / "o")]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "--depth-corruption" in err[0]
