"""tools/refine_depth_study.py: the untrained corrector returns the map it is given, so every
renderer gain is exactly zero; a few steps change the maps, the report covers every kind, and the
learning curve scores the requested steps."""
import importlib.util
import pathlib
import sys

import numpy as np

from diffcamera_jax.evaluation import depth_corruption

_PATH = pathlib.Path(__file__).resolve().parents[1] / "tools" / "refine_depth_study.py"
_spec = importlib.util.spec_from_file_location("refine_depth_study", _PATH)
refine_depth_study = importlib.util.module_from_spec(_spec)
sys.modules["refine_depth_study"] = refine_depth_study  # flax modules are dataclasses of it
_spec.loader.exec_module(refine_depth_study)


def test_untrained_corrector_changes_nothing_training_changes_maps_and_the_curve_has_each_point():
  kinds = ("none",) + tuple(depth_corruption.CORRUPTIONS)
  untrained = refine_depth_study.study(0, 4, 1e-3, (4, 8, 8), num_train=16, num_val=4)
  assert tuple(untrained["per_map"]) == kinds
  for kind in kinds:
    for row in untrained["per_map"][kind].values():
      assert row["gain"] == 0.0
      np.testing.assert_allclose(row["map_error_corrected"], row["map_error_given"], atol=1e-7)
  trained = refine_depth_study.study(3, 4, 1e-2, (4, 8, 8), num_train=16, num_val=4, eval_at=(2,))
  assert trained["per_map"]["none"]["bokeh"]["map_error_corrected"] > 0
  assert np.isfinite(trained["final_loss_mean_last_100"])
  # the learning curve: the requested step, then the final model (the same scores as the report)
  assert [point["step"] for point in trained["curve"]] == [2, 3]
  assert trained["curve"][-1]["per_map"] == trained["per_map"]
  assert trained["curve"][0]["per_map"] != trained["per_map"]
