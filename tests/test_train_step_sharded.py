"""Sharded train step on 8 fake CPU devices (in a subprocess, so this process keeps 1 device):
a (2, 2, 2) mesh gives the single-device result, and FSDP really divides the state's memory."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def report():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(HERE), env.get("PYTHONPATH", "")])
  proc = subprocess.run([sys.executable, os.path.join(HERE, "_mp_sharded.py")], env=env,
                        capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = next(l for l in proc.stdout.splitlines() if l.startswith("REPORT "))
  return json.loads(line[len("REPORT "):])


@pytest.mark.slow
def test_mesh_2x2x2_equals_one_device(report):
  eq = report["equality"]
  for name, err in eq["metrics"].items():
    assert err <= 1e-5, (name, err)
  assert eq["params_max_leaf"] <= 1e-5, eq["params_max_leaf"]
  # The comparison is meaningful only if the 8-device run really sharded the params.
  specs = eq["sharded_specs"]
  assert "fsdp" in specs["['block_0']['mlp']['fc1']['kernel']"]
  assert "tensor" in specs["['block_0']['mlp']['fc1']['kernel']"]


@pytest.mark.slow
def test_fsdp_divides_params_and_optimizer_state(report):
  fsdp = report["fsdp"]
  assert fsdp["num_devices"] == 8
  ideal = fsdp["total_bytes"] / 8
  for per_device in fsdp["per_device_bytes"]:
    assert abs(per_device / ideal - 1.0) <= 0.10, (per_device, ideal)
