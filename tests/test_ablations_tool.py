"""tools/ablations.py: the summary across seeds (mean, standard error across seeds, per-scene
standard error of each seed), read from per-scene evaluation results."""
import numpy as np

from tools import ablations


def _methods(values):
  scores = {m: list(values) for m in ablations.METRICS}
  return {"input unchanged": {m: [0.0] * len(values) for m in ablations.METRICS},
          "model": scores}


def test_summary_across_seeds():
  evaluation = "--num-scenes 3"
  results = {"a": {0: {evaluation: _methods([1.0, 2.0, 3.0])},
                   1: {evaluation: _methods([3.0, 4.0, None])}}}
  table = ablations.summarise(results, {"a": ""}, [0, 1], [evaluation])[evaluation]["a"]
  row = table["bokeh/psnr"]
  assert row["per_seed"] == [2.0, 3.5]  # undefined (None) scene scores are left out
  assert row["mean"] == 2.75
  np.testing.assert_allclose(row["se_seeds"], np.std([2.0, 3.5], ddof=1) / np.sqrt(2))
  np.testing.assert_allclose(row["per_scene_se"][0], np.std([1, 2, 3], ddof=1) / np.sqrt(3))
