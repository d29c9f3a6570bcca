"""The exported-model format: `config.json` + `params/`, written atomically and read back checked.

An exported directory holds `config.json` (the full training config) and `params/` (an Orbax
StandardCheckpointer checkpoint of the EMA parameter pytree). `python -m diffcamera_jax.export`
writes one from a training workdir; the refocusing and evaluation programs and the notebooks
load it with `load_exported`. Configs are brought to this version's schema as they are read
(`configs.schema.upgrade`).
"""
from __future__ import annotations

import os
import shutil
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from diffcamera_jax.cli import UserError, ensure_writable_dir
from diffcamera_jax.configs.schema import upgrade
from diffcamera_jax.user_files import read_json_object

CONFIG_FILE = "config.json"
PARAMS_DIR = "params"


def save_exported(path: str, config: ml_collections.ConfigDict, params: Any, *,
                  replace: bool = False) -> None:
  """Writes `config.json` and `params/` under `path`.

  The export is written beside `path` (`PATH.partial`) and renamed into place, so a failure leaves
  no half-written model. A folder holding an earlier export is replaced only with `replace`; a
  folder holding anything else is refused (`UserError`), so no file the programs did not write
  is touched.
  """
  path = os.path.abspath(path)
  if os.path.lexists(path):
    if not os.path.isdir(path):
      raise UserError(f"--out {path} exists and is not a directory")
    entries = sorted(os.listdir(path))
    if entries and not (set(entries) <= {CONFIG_FILE, PARAMS_DIR}
                        and os.path.isdir(os.path.join(path, PARAMS_DIR))):
      raise UserError(f"--out {path} holds files that are not an export ({entries[:3]}"
                      f"{' ...' if len(entries) > 3 else ''}); choose a new or empty folder")
    if entries and not replace:
      raise FileExistsError(f"{path} already holds an exported model; choose another --out "
                            "(or --replace it)")
  ensure_writable_dir(os.path.dirname(path), f"--out {path}: its folder")
  staging = path + ".partial"
  if jax.process_index() == 0 and os.path.lexists(staging):
    shutil.rmtree(staging)  # left by an export that failed; named as ours
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.join(staging, PARAMS_DIR), params)
  if jax.process_index() == 0:
    with open(os.path.join(staging, CONFIG_FILE), "w", encoding="utf-8") as f:
      f.write(config.to_json_best_effort(indent=2))
    if os.path.lexists(path):
      old = path + ".replaced"
      if os.path.lexists(old):
        shutil.rmtree(old)
      os.replace(path, old)
      os.replace(staging, path)
      shutil.rmtree(old)
    else:
      os.replace(staging, path)


def load_config_json(path: str) -> ml_collections.ConfigDict:
  """Reads a config written by `save_exported` (or beside a training checkpoint), upgraded to
  the schema; a file that is not a JSON object, or not a config of this package, is a
  `UserError` naming it."""
  return upgrade(_to_config(read_json_object(path, "model config")), source=path)


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
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      params = checkpointer.restore(params_path)
  except Exception as error:  # orbax/TensorStore: a truncated, zeroed or foreign params/ folder
    raise UserError(f"model directory {path}: its {PARAMS_DIR}/ cannot be restored "
                    f"({_root_cause(error)})") from None
  return config, params


def _root_cause(error: BaseException, limit: int = 300) -> str:
  """The first line of the innermost cause of `error` (TensorStore's errors nest a multi-line
  spec dump around a one-line reason)."""
  while error.__cause__ is not None:
    error = error.__cause__
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  text = lines[0] if lines else type(error).__name__
  return text if len(text) <= limit else text[:limit] + " ..."


__all__ = ["CONFIG_FILE", "PARAMS_DIR", "load_config_json", "load_exported", "save_exported"]
