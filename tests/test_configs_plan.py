"""Every config in configs/ loads, validates and has its full sharding plan built abstractly.

The plans run in subprocesses with fake CPU devices standing in for the accelerators
(`--xla_force_host_platform_device_count`), so nothing is allocated. `tpu_v4.py` is also compiled
ahead of time: XLA's memory analysis of the real train step must fit a v4 chip (32 GiB HBM).
The FLUX config's plan (12B base + LoRA on a v4-32) is checked in tests/flux/test_flux_plan.py.
"""
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
V4_HBM_GIB = 32.0
DIT_PLANS = {  # config argument -> fake device count
    "configs/default.py": 1,
    "configs/default.py:tiny": 1,
    "configs/gpu.py": 1,
    "configs/tpu_v4.py:procedural": 16,  # a v4-32 slice: 16 chips
}
PLANNED_ELSEWHERE = {"configs/flux_lora.py"}


def _plan(config: str, devices: int, *extra: str) -> dict:
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
         "JAX_PLATFORMS": "cpu"}
  result = subprocess.run([sys.executable, "-m", "diffcamera_jax.memory_plan",
                           f"--config={config}", *extra], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout[result.stdout.index("{"):])


def test_every_config_file_is_planned():
  files = {f"configs/{p.name}" for p in (REPO / "configs").glob("*.py") if p.name != "__init__.py"}
  planned = {c.split(":")[0] for c in DIT_PLANS} | PLANNED_ELSEWHERE
  assert files == planned


@pytest.mark.parametrize("config", [c for c in DIT_PLANS if "tpu_v4" not in c])
def test_single_device_configs_plan(config):
  plan = _plan(config, DIT_PLANS[config])
  assert plan["devices"] == 1
  gib = plan["gib_per_device"]
  assert gib["state"] == pytest.approx(plan["gib_total_state"], rel=1e-3)
  assert gib["ema_params"] == pytest.approx(gib["params"], rel=1e-6)
  assert gib["opt_state"] == pytest.approx(2 * gib["params"], rel=0.01)  # Adam: mu and nu


@pytest.mark.slow
def test_tpu_v4_plan_is_sharded_and_fits_a_v4_chip():
  plan = _plan("configs/tpu_v4.py:procedural", 16, "--compile")
  assert plan["mesh"] == {"data": 1, "fsdp": 16, "tensor": 1}
  assert plan["num_params"] > 600e6  # DiT-XL
  gib = plan["gib_per_device"]
  # FSDP: each chip holds ~1/16 of params, EMA and optimizer state.
  assert gib["state"] == pytest.approx(plan["gib_total_state"] / 16, rel=0.1)
  assert 0 < gib["step_temporaries"] and gib["step_total"] < V4_HBM_GIB
