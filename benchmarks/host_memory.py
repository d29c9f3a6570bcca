"""Peak host memory of a refocusing call against what its plan says, on this machine.

    python -m benchmarks.host_memory --model DIR [--sizes 1000x1500,2000x3000] [--frames 1,4] \
        [--out benchmarks/results/host_memory.json]

Each (photo size, frame count) runs in its own process: the model is loaded and the plan for the
call is made (which compiles the sampler), then the call runs; the growth of the process's peak
RSS during the call is compared with `inference.memory.host_bytes` and with the sampler's planned
bytes. On a CPU backend both share the host's memory, so their sum is what `--max-memory` bounds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

_CHILD = r"""
import json, resource, sys
import numpy as np
from diffcamera_jax.inference.refocuser import Refocuser
model, h, w, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
refocuser = Refocuser.load(model)
plan = refocuser.plan_for((h, w), n)
photo = np.random.default_rng(0).random((h, w, 3), dtype=np.float32)
blur = list(np.linspace(1.0, 8.0, n))
refocuser.refocus(photo[:8, :8], (0.5, 0.5), blur)  # compiles what a call needs at a small size
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
refocuser.refocus(photo, (0.5, 0.5), blur)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak_growth_bytes": after - before, "host_bytes": plan.host_bytes,
                  "program_bytes": plan.program_bytes}))
"""


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", required=True, help="exported model directory")
  parser.add_argument("--sizes", default="1000x1500,2000x3000", help="HxW,...")
  parser.add_argument("--frames", default="1,4")
  parser.add_argument("--out", default="benchmarks/results/host_memory.json")
  args = parser.parse_args(argv)
  rows = []
  for size in args.sizes.split(","):
    h, w = (int(v) for v in size.lower().split("x"))
    for n in (int(v) for v in args.frames.split(",")):
      result = subprocess.run([sys.executable, "-c", _CHILD, args.model, str(h), str(w), str(n)],
                              capture_output=True, text=True, check=True)
      row = {"height": h, "width": w, "frames": n, **json.loads(result.stdout.strip().splitlines()[-1])}
      row["growth_over_host_bytes"] = row["peak_growth_bytes"] / row["host_bytes"]
      rows.append(row)
      print(json.dumps(row), flush=True)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w", encoding="utf-8") as f:
    json.dump({"machine": platform.node(), "model": os.path.abspath(args.model), "rows": rows},
              f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
