"""Runs the training job on a Cloud TPU pod: create the TPU VM, install, train on all workers.

Every worker runs the same `python -m diffcamera_jax.train`; JAX's multi-controller runtime
(`jax.distributed.initialize()`, auto-detected on TPU VMs) connects them. Workdir and data live on
a bucket. `--dry-run` prints each command instead of running it.

    python -m launch.tpu --name dc-v4 --zone us-central2-b --accelerator v4-32 \
        --workdir gs://BUCKET/runs/exp1 --data gs://BUCKET/tfds create install train
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from typing import Sequence

STEPS = ("create", "install", "train", "status", "delete")
RUNTIME_VERSION = "tpu-ubuntu2204-base"
REPO_DIR = "~/diffcamera_jax"


def create_command(args: argparse.Namespace) -> list[str]:
  """`gcloud` command that creates the TPU VM (or a queued resource, which waits for capacity)."""
  if args.queued:
    command = ["gcloud", "compute", "tpus", "queued-resources", "create", args.name,
               f"--node-id={args.name}", f"--zone={args.zone}",
               f"--accelerator-type={args.accelerator}", f"--runtime-version={args.runtime_version}"]
  else:
    command = ["gcloud", "compute", "tpus", "tpu-vm", "create", args.name, f"--zone={args.zone}",
               f"--accelerator-type={args.accelerator}", f"--version={args.runtime_version}"]
  if args.project:
    command.append(f"--project={args.project}")
  if args.spot:
    command.append("--spot")
  return command


def ssh_all_workers(args: argparse.Namespace, remote: str) -> list[str]:
  """Runs `remote` (a shell line) on every worker of the pod at once."""
  command = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", args.name, f"--zone={args.zone}",
             "--worker=all", f"--command={remote}"]
  if args.project:
    command.append(f"--project={args.project}")
  return command


def install_remote(args: argparse.Namespace) -> str:
  """Shell line: fetch the code onto a worker and install it with JAX for TPU."""
  return " && ".join([
      f"rm -rf {REPO_DIR}",
      f"git clone --depth 1 --branch {shlex.quote(args.git_ref)} {shlex.quote(args.repo)} {REPO_DIR}",
      f"cd {REPO_DIR}",
      "python3 -m pip install -q --upgrade pip",
      "python3 -m pip install -q 'jax[tpu]' -e .",
  ])


def train_remote(args: argparse.Namespace) -> str:
  """Shell line: the training command every worker runs (same flags everywhere)."""
  flags = [f"--config={args.config}", f"--workdir={args.workdir}"]
  if args.data:
    flags.append(f"--config.data.tfds_data_dir={args.data}")
  flags += list(args.extra)
  train = "python3 -m diffcamera_jax.train " + " ".join(shlex.quote(f) for f in flags)
  return f"cd {REPO_DIR} && {train} 2>&1 | tee -a ~/train.log"


def delete_command(args: argparse.Namespace) -> list[str]:
  kind = ["queued-resources"] if args.queued else ["tpu-vm"]
  command = ["gcloud", "compute", "tpus", *kind, "delete", args.name, f"--zone={args.zone}",
             "--quiet"]
  if args.queued:
    command.append("--force")
  if args.project:
    command.append(f"--project={args.project}")
  return command


def status_command(args: argparse.Namespace) -> list[str]:
  kind = ["queued-resources"] if args.queued else ["tpu-vm"]
  return ["gcloud", "compute", "tpus", *kind, "describe", args.name, f"--zone={args.zone}"]


def commands_for(args: argparse.Namespace) -> list[list[str]]:
  """The gcloud commands for the requested steps, in order."""
  builders = {
      "create": lambda: create_command(args),
      "install": lambda: ssh_all_workers(args, install_remote(args)),
      "train": lambda: ssh_all_workers(args, train_remote(args)),
      "status": lambda: status_command(args),
      "delete": lambda: delete_command(args),
  }
  return [builders[step]() for step in args.steps]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  """Flags of the launcher; everything after `--` goes to the train command."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("steps", nargs="+", choices=STEPS)
  parser.add_argument("--name", required=True, help="TPU VM (and queued resource) name")
  parser.add_argument("--zone", required=True)
  parser.add_argument("--project", default="")
  parser.add_argument("--accelerator", default="v4-32")
  parser.add_argument("--runtime-version", default=RUNTIME_VERSION)
  parser.add_argument("--queued", action="store_true", help="create through queued resources")
  parser.add_argument("--spot", action="store_true")
  parser.add_argument("--repo", default="https://github.com/diffcamera-jax/diffcamera_jax.git")
  parser.add_argument("--git-ref", default="main")
  parser.add_argument("--config", default="configs/tpu_v4.py")
  parser.add_argument("--workdir", default="", help="gs:// path for checkpoints and logs")
  parser.add_argument("--data", default="", help="gs:// path of the prepared TFDS data_dir")
  parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
  argv = list(argv)
  split = argv.index("--") if "--" in argv else len(argv)
  args = parser.parse_args(argv[:split])
  args.extra = argv[split + 1:]
  if "train" in args.steps and not args.workdir.startswith("gs://"):
    parser.error("--workdir must be a gs:// bucket path when training on a pod (all workers write it)")
  return args


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  for command in commands_for(args):
    print(shlex.join(command), flush=True)
    if not args.dry_run:
      result = subprocess.run(command, check=False)
      if result.returncode:
        print(f"command failed with exit code {result.returncode}", file=sys.stderr)
        return result.returncode
  return 0


if __name__ == "__main__":
  sys.exit(main())
