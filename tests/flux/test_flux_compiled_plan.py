"""The compiled-plan tool: FLUX.1-dev programs compiled with abstract params (CPU stand-in)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.mark.slow
def test_sampler_plans_compile_with_abstract_flux_dev_params(tmp_path):
  """One device holds the whole bf16 base (~22 GiB of arguments); sharded over 8 devices each
  holds an eighth. Nothing is allocated: the params are never materialised."""
  out = tmp_path / "plans.json"
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "tools", "flux_compiled_plan.py"), "--target", "cpu",
       "--cases", "sampler", "--out", str(out)],
      env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=900,
      cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  cases = {c["slice"]: c for c in json.loads(out.read_text())["cases"]}
  one, sharded = cases["v5p chip"], cases["v4-8"]
  assert 21.5 < one["arguments_gib"] < 23.5 and one["temporaries_gib"] > 0
  assert one["arguments_gib"] / 9 < sharded["arguments_gib"] < one["arguments_gib"] / 6
  assert all(c["image_size"] == [1024, 1024] and c["steps"] == 28 for c in cases.values())
