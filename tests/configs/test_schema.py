"""One schema: exported configs are upgraded once, at load, and library code reads fields directly."""
import ast
import json
import os

import ml_collections
import pytest

from diffcamera_jax.configs import default, schema
from diffcamera_jax.exported import load_config_json

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECTIONS = ("objective", "model", "data", "train", "eval", "flux", "mesh", "restorer", "baseline")


def _write(tmp_path, tree) -> str:
  path = tmp_path / "config.json"
  path.write_text(json.dumps(tree))
  return str(path)


def test_a_config_of_this_version_reads_back_unchanged(tmp_path):
  for variant in ("", "tiny", "paper"):
    config = default.get_config(variant)
    loaded = load_config_json(_write(tmp_path, json.loads(config.to_json_best_effort())))
    assert schema.flatten(loaded) == schema.flatten(config)


def test_an_old_export_gets_the_values_it_was_trained_with(tmp_path):
  tree = json.loads(default.get_config().to_json_best_effort())
  for name in list(schema.ADDED_FIELDS) + list(schema.ADDED_FROM):
    section, *rest = name.split(".")
    node = tree[section]
    for part in rest[:-1]:
      node = node[part]
    del node[rest[-1]]
  tree["objective"]["camera_search"] = True  # an inference option now: dropped
  config = load_config_json(_write(tmp_path, tree))
  flat = schema.flatten(config)
  for name, value in schema.ADDED_FIELDS.items():
    assert flat[name] == value, name
  assert flat["model.restorer.depth_widths"] == flat["model.restorer.widths"]
  assert "objective.camera_search" not in flat
  assert set(flat) == set(schema.schema_fields())


@pytest.mark.parametrize("change, message", [
    (lambda t: t["data"].pop("image_size"), "lacks data.image_size"),
    (lambda t: t["model"].update(wings=2), "has unknown model.wings"),
])
def test_a_foreign_config_is_one_error_naming_the_file_and_fields(tmp_path, change, message):
  tree = json.loads(default.get_config().to_json_best_effort())
  change(tree)
  path = _write(tmp_path, tree)
  with pytest.raises(schema.SchemaError, match=message) as error:
    load_config_json(path)
  assert path in str(error.value) and "\n" not in str(error.value)


def test_the_sections_a_program_records_pass_through(tmp_path):
  tree = json.loads(default.get_config().to_json_best_effort())
  tree["baseline"] = {"steps": 10, "widths": [8, 16]}
  assert load_config_json(_write(tmp_path, tree)).baseline.steps == 10


def _config_gets(path: str) -> list[str]:
  """`X.get(...)` calls whose receiver is a section of a training config (`config.objective`,
  `o` bound to one, ...), by source text."""
  source = open(path, encoding="utf-8").read()
  found = []
  for node in ast.walk(ast.parse(source)):
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"):
      receiver = ast.get_source_segment(source, node.func.value) or ""
      if any(receiver.endswith(f".{s}") or receiver == f"config.{s}" for s in SECTIONS):
        found.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}: {receiver}.get")
  return found


def test_no_library_code_carries_its_own_default_for_a_config_field():
  found = []
  for package in ("diffcamera_jax", "data_pipeline"):
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
      for name in files:
        if name.endswith(".py"):
          found += _config_gets(os.path.join(folder, name))
  assert not found, found


def test_the_check_finds_a_default(tmp_path):
  path = tmp_path / "m.py"
  path.write_text("def f(config):\n  return config.objective.get('prior', 'none')\n")
  assert _config_gets(str(path))


def test_no_inference_option_is_a_training_field():
  fields = schema.schema_fields()
  for name in ("objective.camera_search", "objective.camera_search_threshold",
               "objective.uniform_search_min_gain"):
    assert name not in fields
  assert isinstance(default.get_config(), ml_collections.ConfigDict)
