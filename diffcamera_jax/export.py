"""`python -m diffcamera_jax.export`: the EMA params + config of a training workdir, exported.

    python -m diffcamera_jax.export --workdir DIR --out DIR2 [--step N] [--replace]

The format and its reader are `diffcamera_jax.exported`.
"""
from __future__ import annotations

import os

import orbax.checkpoint as ocp

from diffcamera_jax.cli import ArgumentParser, one_line
from diffcamera_jax.exported import CONFIG_FILE, load_config_json, save_exported


def export_from_workdir(workdir: str, out: str, step: int | None = None, *,
                        replace: bool = False) -> int:
  """Writes the EMA params of checkpoint `step` (default: newest) of a training workdir to `out`."""
  from diffcamera_jax.training import checkpointing  # Local: keeps `load_exported` light for notebooks.

  config_path = os.path.join(os.path.abspath(workdir), CONFIG_FILE)
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"workdir {workdir} has no {CONFIG_FILE}: is it a training workdir?")
  config = load_config_json(config_path)
  manager = checkpointing.make_checkpoint_manager(workdir, config, read_only=True)
  steps = manager.all_steps()
  if not steps:
    raise FileNotFoundError(f"workdir {workdir} has no checkpoint to export")
  step = max(steps) if step is None else step
  if step not in steps:
    raise ValueError(f"--step {step} is not among the checkpoints {sorted(steps)} of {workdir}")
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  state = restored["state"]
  ema = state["ema_params"] if isinstance(state, dict) else state.ema_params
  save_exported(out, config, ema, replace=replace)
  manager.close()
  return step


def main(argv: list[str] | None = None) -> int:
  import sys

  parser = ArgumentParser(prog="python -m diffcamera_jax.export",
                          description="Export EMA params + config for inference.")
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--step", type=int, default=None)
  parser.add_argument("--replace", action="store_true",
                      help="replace the export already in --out (never any other folder)")
  try:
    args = parser.parse_args(argv)
    step = export_from_workdir(args.workdir, args.out, args.step, replace=args.replace)
  except (FileNotFoundError, FileExistsError, ValueError) as error:
    print(f"export: error: {one_line(str(error))}", file=sys.stderr)
    return 2
  print(f"exported step {step} of {args.workdir} to {os.path.abspath(args.out)}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
