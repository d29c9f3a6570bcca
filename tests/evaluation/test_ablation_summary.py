"""The ablation summary across seeds (`evaluation.ablation_summary`, what tools/ablations.py
writes): mean, standard error across seeds, per-scene standard error of each seed, read from
per-scene evaluation results."""
import numpy as np

from diffcamera_jax.evaluation import ablation_summary


def _methods(values):
  scores = {m: list(values) for m in ablation_summary.METRICS}
  return {"input unchanged": {m: [0.0] * len(values) for m in ablation_summary.METRICS},
          "model": scores}


def test_summary_across_seeds():
  evaluation = "--num-scenes 3"
  results = {"a": {0: {evaluation: _methods([1.0, 2.0, 3.0])},
                   1: {evaluation: _methods([3.0, 4.0, None])}}}
  table = ablation_summary.summarise(results, {"a": ""}, [0, 1], [evaluation])[evaluation]["a"]
  assert list(table) == ["model"]  # the input's row is not the model's
  row = table["model"]["bokeh/psnr"]
  assert row["per_seed"] == [2.0, 3.5]  # undefined (None) scene scores are left out
  assert row["mean"] == 2.75
  np.testing.assert_allclose(row["se_seeds"], np.std([2.0, 3.5], ddof=1) / np.sqrt(2))
  np.testing.assert_allclose(row["per_scene_se"][0], np.std([1, 2, 3], ddof=1) / np.sqrt(3))


def test_corrupted_depth_rows_and_their_mean():
  evaluation = "--depth-corruption all"
  methods = _methods([1.0, 2.0])
  methods["model (depth: blur)"] = {m: [3.0, 5.0] for m in ablation_summary.METRICS}
  methods["model (depth: warp)"] = {m: [5.0, None] for m in ablation_summary.METRICS}
  methods["renderer (depth: blur)"] = {m: [9.0, 9.0] for m in ablation_summary.METRICS}
  results = {"a": {0: {evaluation: methods}}}
  table = ablation_summary.summarise(results, {"a": ""}, [0], [evaluation])[evaluation]["a"]
  assert set(table) == {"model", "model (depth: blur)", "model (depth: warp)",
                        ablation_summary.CORRUPTED_MEAN}
  assert table["model (depth: blur)"]["sweep/lvcorr"]["per_seed"] == [4.0]
  # per scene: mean of blur and warp (4.0); a scene missing in one corruption is left out
  assert table[ablation_summary.CORRUPTED_MEAN]["bokeh/psnr"]["per_seed"] == [4.0]


def test_contrasts_pair_scenes_within_each_seed():
  evaluation = "--num-scenes 3"
  results = {"ref": {0: {evaluation: _methods([1.0, 2.0, 3.0])},
                     1: {evaluation: _methods([0.0, 0.0, 0.0])}},
             "b": {0: {evaluation: _methods([2.0, 2.0, 6.0])},
                   1: {evaluation: _methods([1.0, None, 1.0])}}}
  arms = {"ref": "", "b": "--x"}
  table = ablation_summary.contrasts(results, arms, [0, 1], [evaluation], "ref")[evaluation]
  assert list(table) == ["b"]  # the reference is not compared with itself
  row = table["b"]["model"]["refocus/psnr"]
  assert row["per_seed"] == [4.0 / 3.0, 1.0]  # seed 1: the undefined scene is left out
  np.testing.assert_allclose(row["per_scene_se"][0], np.std([1, 0, 3], ddof=1) / np.sqrt(3))
  np.testing.assert_allclose(row["mean"], (4.0 / 3.0 + 1.0) / 2)


def test_renderer_margins_under_the_same_corrupted_map():
  evaluation = "--depth-corruption all"
  methods = _methods([1.0, 2.0])
  methods["model (depth: blur)"] = {m: [3.0, 5.0] for m in ablation_summary.METRICS}
  methods["renderer (depth: blur)"] = {m: [4.0, 4.0] for m in ablation_summary.METRICS}
  methods["model (depth: warp)"] = {m: [5.0, 5.0] for m in ablation_summary.METRICS}
  methods["renderer (depth: warp)"] = {m: [6.0, 2.0] for m in ablation_summary.METRICS}
  methods["renderer (true depth)"] = {m: [9.0, 9.0] for m in ablation_summary.METRICS}
  results = {"a": {0: {evaluation: methods}},
             "b": {0: {"--no-depth": _methods([1.0, 1.0])}}}
  margins = ablation_summary.renderer_margins(results, {"a": ""}, [0], [evaluation])
  table = margins[evaluation]["a"]
  assert set(table) == {"model (depth: blur)", "model (depth: warp)",
                        ablation_summary.CORRUPTED_MEAN}
  assert table["model (depth: blur)"]["bokeh/psnr"]["per_seed"] == [0.0]  # (-1 + 1) / 2
  assert table["model (depth: warp)"]["bokeh/psnr"]["per_seed"] == [1.0]  # (-1 + 3) / 2
  # the mean over corruptions: per scene, model mean (4, 5) minus renderer mean (5, 3)
  assert table[ablation_summary.CORRUPTED_MEAN]["bokeh/psnr"]["per_seed"] == [0.5]
  # an evaluation without corrupted rows has no margins
  assert ablation_summary.renderer_margins(results, {"b": ""}, [0], ["--no-depth"]) == {}
