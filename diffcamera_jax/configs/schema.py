"""The one config schema, and the upgrade of configs written before a field existed.

The schema is `configs/default.py`: every training config starts from it, so a config built in
this version has every field. A model's exported `config.json` (and a workdir's) records the
config it was trained with, possibly by an older version. `upgrade` brings such a config to the
schema once, when it is read: fields added since are filled with the value those models were
trained with (what the code did before the field existed), fields that left the schema are
dropped. Library code then reads every field directly, with no default of its own.
"""
from __future__ import annotations

from typing import Any

import ml_collections

from diffcamera_jax.cli import UserError
from diffcamera_jax.configs import default as default_config

DTYPE_NAMES = ("float32", "bfloat16")  # values of model.dtype / model.param_dtype

# Field -> its value in models trained before the field existed.
ADDED_FIELDS: dict[str, Any] = {
    "model.pixel_widths": (),
    "model.camera_adaln": False,
    "model.defocus_map": False,
    "objective.prior": "none",
    "objective.residual": False,
    "objective.prediction": "velocity",
    "objective.flow_mse_floor": 0.0,
    "objective.restore_weight": 1.0,
    "objective.restore_mse_floor": 0.0,
    "objective.depth_weight": 1.0,
    "objective.blur_map_weight": 0.1,
    "train.watchdog_seconds": 0,
    "model.regression_widths": (24, 48, 96),
    "model.restorer.refine_depth": False,
    "objective.p_depth_corrupt": 0.0,
    "objective.depth_error": "abs",
    "model.restorer.refine_widths": (16, 32, 64),
    "objective.refine_weight": 10.0,
}
# Fields added with a value taken from another field of the same config.
ADDED_FROM: dict[str, str] = {
    "model.restorer.depth_widths": "model.restorer.widths",
}
# Fields that left the schema. The optics pre-pass settings are inference options now
# (`inference.options.InferenceOptions`), not facts of training.
REMOVED_FIELDS = (
    "objective.camera_search",
    "objective.camera_search_threshold",
    "objective.uniform_search_min_gain",
    "model.pixel_focus_readout",
)
# Sections a program adds to the configs it exports, outside the training schema (`baseline`:
# what a regression baseline exported by its own loop recorded of its training).
RECORD_SECTIONS = ("baseline",)


class SchemaError(UserError):
  """A config does not fit the schema, even after the upgrade."""


def flatten(config: ml_collections.ConfigDict | dict, prefix: str = "") -> dict[str, Any]:
  """`{"a.b.c": value}` of every leaf field."""
  out = {}
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      out.update(flatten(value, name + "."))
    else:
      out[name] = value
  return out


def schema_fields() -> dict[str, Any]:
  """Every field of the schema with its default (`configs/default.py`)."""
  return flatten(default_config.get_config())


def _set(tree: dict, name: str, value: Any) -> None:
  *parents, leaf = name.split(".")
  for part in parents:
    tree = tree.setdefault(part, {})
  tree[leaf] = value


def _legacy_baseline(tree: dict) -> None:
  """A regression baseline exported by its own loop (before it was a model family): the config
  it trained with plus `baseline.widths`. Its network is today's `model.name="regression"`."""
  tree["model"]["name"] = "regression"
  tree["model"]["regression_widths"] = tuple(tree["baseline"]["widths"])
  tree["objective"].update(prior="none", residual=False, prediction="x0", sample_steps=1)


def _pop(tree: dict, name: str) -> None:
  *parents, leaf = name.split(".")
  for part in parents:
    tree = tree.get(part)
    if not isinstance(tree, dict):
      return
  tree.pop(leaf, None)


def upgrade(config: ml_collections.ConfigDict, source: str = "config") -> ml_collections.ConfigDict:
  """`config` (a copy) brought to the schema: added fields filled, removed fields dropped.

  Raises `SchemaError` naming `source` and the fields when the config still lacks schema fields
  or holds unknown ones (a config of another program, or of a version this one does not know).
  """
  tree = config.to_dict()
  if "baseline" in tree and tree["model"]["name"] == "dit":
    _legacy_baseline(tree)
  present = flatten(tree)
  for name in REMOVED_FIELDS:
    _pop(tree, name)
  for name, value in ADDED_FIELDS.items():
    if name not in present:
      _set(tree, name, value)
  for name, origin in ADDED_FROM.items():
    if name not in present and origin in present:
      _set(tree, name, present[origin])
  fields = {k for k in flatten(tree) if k.split(".")[0] not in RECORD_SECTIONS}
  schema = set(schema_fields())
  missing, unknown = sorted(schema - fields), sorted(fields - schema)
  if missing or unknown:
    parts = ([f"lacks {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else "")]
             if missing else []) + (
        [f"has unknown {', '.join(unknown[:8])}" + (" ..." if len(unknown) > 8 else "")]
        if unknown else [])
    raise SchemaError(f"{source} does not fit this version's config schema: {'; '.join(parts)}")
  return ml_collections.ConfigDict(tree)


__all__ = ["ADDED_FIELDS", "ADDED_FROM", "REMOVED_FIELDS", "SchemaError", "flatten",
           "schema_fields", "upgrade"]
