"""The design sweep: variant parsing (`configs.overrides`), and tools/design_sweep.py training one
tiny variant and scoring it end to end."""
import json
import os
import subprocess
import sys

import pytest

from diffcamera_jax.configs.overrides import parse_variant

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_parse_variant():
  assert parse_variant("base=") == ("base", {})
  name, overrides = parse_variant(
      "v=objective.timestep_mean=1.5,model.size=S,data.image_size=(32, 32)")
  assert name == "v"
  assert overrides == {"objective.timestep_mean": 1.5, "model.size": "S",
                       "data.image_size": (32, 32)}
  with pytest.raises(ValueError, match="NAME"):
    parse_variant("=a=1")
  with pytest.raises(ValueError, match="field=value"):
    parse_variant("v=model.size")


@pytest.mark.slow
def test_tiny_variant_trains_and_is_scored(tmp_path):
  variant = ("tiny=data.image_size=(32,32),model.size=tiny,model.patch_size=4,"
             "data.batch_size=4,objective.prior=none")
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "tools", "design_sweep.py"), "--steps", "3",
       "--num-scenes", "2", "--variant", variant, "--eval-at", "2", "--out", str(tmp_path)],
      cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT),
      capture_output=True, text=True, timeout=900, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads((tmp_path / "tiny.json").read_text())
  assert result["steps"] == 3 and result["overrides"]["model.size"] == "tiny"
  assert [p["step"] for p in result["curve"]] == [2, 3]  # the learning curve, then the end
  assert result["curve"][0]["train_s"] <= result["curve"][1]["train_s"] == result["train_s"]
  assert result["curve"][1]["steps1_depth"] == result["steps1_depth"]
  for key in ("steps1_depth", "steps1_nodepth", "steps4_depth", "steps4_nodepth"):
    scores = result[key]
    assert 5.0 < scores["deblur/psnr"] < 60.0
    assert -1.0 <= scores["sweep/lvcorr"] <= 1.0
