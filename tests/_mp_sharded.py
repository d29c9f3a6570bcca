"""Train steps on 8 fake CPU devices; prints a JSON report for test_train_step_sharded.

- `equality`: the same step on a (2, 2, 2) mesh and on one device: relative differences.
- `fsdp`: per-device bytes of params + optimizer state on a (1, 8, 1) mesh vs the total.
"""
import json
import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8")

# pylint: disable=wrong-import-position
import jax

from diffcamera_jax.testing.batches import random_batch, tiny_config
from diffcamera_jax.testing.sharded_steps import bytes_per_device, relative_error, run_steps
from diffcamera_jax.models import build_model
from diffcamera_jax.models.dit import DiT
from diffcamera_jax.models.sizes import ModelSize
from diffcamera_jax.sharding import make_mesh
from diffcamera_jax.training.state import create_train_state
# pylint: enable=wrong-import-position

BATCH = 8


def equality():
  batch = random_batch(0, BATCH)
  m1, p1, _ = run_steps((1, 1, 1), batch, devices=jax.devices()[:1], batch_size=BATCH)
  m8, p8, specs = run_steps((2, 2, 2), batch, devices=jax.devices(), batch_size=BATCH)
  return {
      "metrics": {k: max(relative_error(a[k], b[k]) for a, b in zip(m8, m1))
                  for k in ("loss", "flow_loss", "stack_loss", "grad_norm")},
      "params_max_leaf": max(relative_error(a, b)
                             for a, b in zip(jax.tree.leaves(p8), jax.tree.leaves(p1))),
      "sharded_specs": specs,
  }


def fsdp():
  config = tiny_config(batch_size=BATCH)
  config.mesh.shape = (1, 8, 1)
  _, codec = build_model(config)
  model = DiT(ModelSize(width=256, depth=2, num_heads=4), patch_size=4)
  mesh = make_mesh(config)
  state, _ = create_train_state(config, model, codec, mesh, jax.random.key(0))
  tree = (state.params, state.opt_state)
  per_device = bytes_per_device(tree)
  total = sum(x.nbytes for x in jax.tree.leaves(tree))
  return {"total_bytes": total, "per_device_bytes": sorted(per_device.values()),
          "num_devices": len(per_device)}


if __name__ == "__main__":
  assert jax.device_count() == 8, jax.devices()
  print("REPORT " + json.dumps({"equality": equality(), "fsdp": fsdp()}))
  sys.stdout.flush()
