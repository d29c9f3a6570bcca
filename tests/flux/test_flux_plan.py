"""FLUX.1-dev (12B) + LoRA on a v4-32 mesh: the abstract sharding plan fits a 32 GiB chip."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.mark.parametrize("variant", ["", "1024"])
def test_flux_dev_lora_fits_a_v4_chip(variant):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=32",
             JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "tools", "flux_plan.py"), f"--variant={variant}"],
      env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  plan = json.loads(result.stdout)
  assert plan["chips"] == 32 and plan["mesh"]["fsdp"] == 32
  # FLUX.1-dev is 11.9B parameters; the DiffCamera condition layers and adapters add ~0.2B.
  assert 11.9e9 < plan["params_total"] < 12.2e9
  assert 0 < plan["params_trainable"] < 0.03 * plan["params_total"]
  gib = plan["gib_per_chip"]
  # The bf16 base is sharded over all 32 chips: ~2 bytes x 11.9B / 32.
  assert gib["frozen_base"] == pytest.approx(2 * 11.9e9 / 32 / 2 ** 30, rel=0.05)
  assert gib["trainable_state"] < 0.5
  assert plan["fits"] and gib["total"] < 32.0
  assert plan["step_tflops"] > 0 and plan["step_time_s_at_mfu"] > 0
