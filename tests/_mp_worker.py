"""One process of the two-process train-step test: `_mp_worker.py PROCESS_ID PORT OUT.json`.

Joins a 2-process JAX runtime on 127.0.0.1 (one CPU device per process), feeds its half of the
global batch, runs the train step on a (2, 1, 1) data-parallel mesh, blocking on every step, and
(process 0) writes the metrics and parameters.
"""
import json
import sys

import jax

from diffcamera_jax.testing.batches import random_batch
from diffcamera_jax.testing.sharded_steps import run_steps

BATCH, NUM_PROCESSES = 8, 2


def main(process_id: int, port: int, out_path: str) -> None:
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                             num_processes=NUM_PROCESSES, process_id=process_id,
                             initialization_timeout=120)
  assert jax.process_count() == NUM_PROCESSES and jax.local_device_count() == 1
  per_process = BATCH // NUM_PROCESSES
  local = {k: v[process_id * per_process:(process_id + 1) * per_process]
           for k, v in random_batch(0, BATCH).items()}
  history, params, _ = run_steps((NUM_PROCESSES, 1, 1), local, batch_size=BATCH)
  if process_id == 0:
    leaves = {jax.tree_util.keystr(p): x.tolist()
              for p, x in jax.tree_util.tree_leaves_with_path(params)}
    with open(out_path, "w", encoding="utf-8") as f:
      json.dump({"history": history, "params": leaves}, f)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
