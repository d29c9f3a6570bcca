"""Export inference parameters (EMA) + config from a training workdir; load them back.

An exported directory holds `config.json` (the full training config) and `params/` (an Orbax
StandardCheckpointer checkpoint of the EMA parameter pytree). The refocus CLI, the evaluation
program and the notebooks load it with `load_exported`.

    python -m diffcamera_jax.export --workdir DIR --out DIR2 [--step N]
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from diffcamera_jax.cli import ensure_writable_dir

CONFIG_FILE = "config.json"
PARAMS_DIR = "params"


def save_exported(path: str, config: ml_collections.ConfigDict, params: Any) -> None:
  """Writes `config.json` and `params/` under `path` (created; an existing export is refused)."""
  path = os.path.abspath(path)
  if os.path.exists(os.path.join(path, PARAMS_DIR)):
    raise FileExistsError(f"{path} already holds an exported model; choose another --out")
  ensure_writable_dir(path, "--out")
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.join(path, PARAMS_DIR), params)
  if jax.process_index() == 0:
    with open(os.path.join(path, CONFIG_FILE), "w", encoding="utf-8") as f:
      f.write(config.to_json_best_effort(indent=2))


def load_config_json(path: str) -> ml_collections.ConfigDict:
  """Reads a config written by `save_exported` (or beside a training checkpoint)."""
  with open(path, encoding="utf-8") as f:
    data = json.load(f)
  return _to_config(data)


def _to_config(data: dict) -> ml_collections.ConfigDict:
  """JSON lists back to tuples, as the config files write them (shapes, rules, ranges)."""
  def convert(value):
    if isinstance(value, dict):
      return ml_collections.ConfigDict({k: convert(v) for k, v in value.items()})
    if isinstance(value, list):
      return tuple(convert(v) for v in value)
    return value
  return convert(data)


def load_exported(path: str) -> tuple[ml_collections.ConfigDict, Any]:
  """Returns `(config, params)` of an exported model; errors name what is missing."""
  path = os.path.abspath(path)
  config_path = os.path.join(path, CONFIG_FILE)
  params_path = os.path.join(path, PARAMS_DIR)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"model directory {path} does not exist")
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"model directory {path} has no {CONFIG_FILE}; is it an exported model?")
  if not os.path.isdir(params_path):
    raise FileNotFoundError(f"model directory {path} has no {PARAMS_DIR}/; is it an exported model?")
  config = load_config_json(config_path)
  with ocp.StandardCheckpointer() as checkpointer:
    params = checkpointer.restore(params_path)
  return config, params


def export_from_workdir(workdir: str, out: str, step: int | None = None) -> int:
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
  save_exported(out, config, ema)
  manager.close()
  return step


def main(argv: list[str] | None = None) -> int:
  import argparse
  import sys

  parser = argparse.ArgumentParser(description="Export EMA params + config for inference.")
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--step", type=int, default=None)
  args = parser.parse_args(argv)
  try:
    step = export_from_workdir(args.workdir, args.out, args.step)
  except (FileNotFoundError, FileExistsError, ValueError) as error:
    print(f"export: error: {error}", file=sys.stderr)
    return 2
  print(f"exported step {step} of {args.workdir} to {os.path.abspath(args.out)}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
