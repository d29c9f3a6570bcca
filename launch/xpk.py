"""Runs the training job on GKE TPU node pools with xpk (`xpk workload create`).

xpk starts one pod per TPU VM host and the same command in each; `jax.distributed.initialize()`
auto-detects the slice. `--dry-run` prints the command instead of running it.

    python -m launch.xpk --cluster my-cluster --tpu-type v4-32 --image IMAGE \
        --workdir gs://BUCKET/runs/exp1 --data gs://BUCKET/tfds
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from typing import Sequence


def workload_command(args: argparse.Namespace) -> list[str]:
  """The `xpk workload create` command line for the training job."""
  train = ["python3", "-m", "diffcamera_jax.train", f"--config={args.config}",
           f"--workdir={args.workdir}"]
  if args.data:
    train.append(f"--config.data.tfds_data_dir={args.data}")
  train += list(args.extra)
  command = ["xpk", "workload", "create", f"--cluster={args.cluster}", f"--workload={args.name}",
             f"--tpu-type={args.tpu_type}", f"--num-slices={args.num_slices}",
             f"--docker-image={args.image}", f"--command={shlex.join(train)}"]
  if args.project:
    command.append(f"--project={args.project}")
  if args.zone:
    command.append(f"--zone={args.zone}")
  return command


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  """Flags of the launcher; everything after `--` goes to the train command."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--cluster", required=True)
  parser.add_argument("--name", default="diffcamera-train")
  parser.add_argument("--tpu-type", default="v4-32")
  parser.add_argument("--num-slices", type=int, default=1)
  parser.add_argument("--image", required=True, help="container image with the package installed")
  parser.add_argument("--project", default="")
  parser.add_argument("--zone", default="")
  parser.add_argument("--config", default="configs/tpu_v4.py")
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--data", default="")
  parser.add_argument("--dry-run", action="store_true")
  argv = list(argv)
  split = argv.index("--") if "--" in argv else len(argv)
  args = parser.parse_args(argv[:split])
  args.extra = argv[split + 1:]
  if not args.workdir.startswith("gs://"):
    parser.error("--workdir must be a gs:// bucket path (every host writes checkpoint shards)")
  return args


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  command = workload_command(args)
  print(shlex.join(command), flush=True)
  if args.dry_run:
    return 0
  return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
  sys.exit(main())
