"""tools/design_sweep.py: variant parsing, and one tiny variant trained and scored end to end."""
import json
import sys

import pytest

from tools import design_sweep


def test_parse_variant():
  assert design_sweep.parse_variant("base=") == ("base", {})
  name, overrides = design_sweep.parse_variant(
      "v=objective.timestep_mean=1.5,model.size=S,data.image_size=(32, 32)")
  assert name == "v"
  assert overrides == {"objective.timestep_mean": 1.5, "model.size": "S",
                       "data.image_size": (32, 32)}
  with pytest.raises(ValueError, match="NAME"):
    design_sweep.parse_variant("=a=1")
  with pytest.raises(ValueError, match="field=value"):
    design_sweep.parse_variant("v=model.size")


@pytest.mark.slow
def test_tiny_variant_trains_and_is_scored(tmp_path, monkeypatch):
  monkeypatch.setattr(sys, "argv", ["design_sweep"])
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")  # main() pins it; restored afterwards
  variant = ("tiny=data.image_size=(32,32),model.size=tiny,model.patch_size=4,"
             "data.batch_size=4,objective.prior=none")
  assert design_sweep.main(["--steps", "3", "--num-scenes", "2", "--variant", variant,
                            "--eval-at", "2", "--out", str(tmp_path)]) == 0
  result = json.loads((tmp_path / "tiny.json").read_text())
  assert result["steps"] == 3 and result["overrides"]["model.size"] == "tiny"
  assert [p["step"] for p in result["curve"]] == [2, 3]  # the learning curve, then the end
  assert result["curve"][0]["train_s"] <= result["curve"][1]["train_s"] == result["train_s"]
  assert result["curve"][1]["steps1_depth"] == result["steps1_depth"]
  for key in ("steps1_depth", "steps1_nodepth", "steps4_depth", "steps4_nodepth"):
    scores = result[key]
    assert 5.0 < scores["deblur/psnr"] < 60.0
    assert -1.0 <= scores["sweep/lvcorr"] <= 1.0
