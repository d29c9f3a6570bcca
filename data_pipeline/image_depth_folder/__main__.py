"""Prepares the dataset.

    python -m data_pipeline.image_depth_folder --source_dir=... --data_dir=... [--skip_bad] \
        [--depth-model WEIGHTS]

With `--depth-model` (Depth Anything V2 weights, `diffcamera_jax.depth`) photos without a map
get an estimated one; photos with a map keep it. Flags may be spelt with `-` or `_`.
"""
from absl import app
from absl import flags

from data_pipeline import image_depth_folder
from data_pipeline.image_depth_folder import reading
from diffcamera_jax import cli

_SOURCE_DIR = flags.DEFINE_string("source_dir", None, "Folder with images/ and maps/.",
                                  required=True)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir (local or gs://).", required=True)
_MAP_KIND = flags.DEFINE_enum("map_kind", "disparity", ["disparity", "depth"],
                              "What the map files hold.")
_SKIP_BAD = flags.DEFINE_bool("skip_bad", False, "Skip and count bad files instead of stopping.")
_DEPTH_MODEL = flags.DEFINE_string("depth_model", None,
                                   "Depth Anything V2 weights: estimate maps for photos without one.")
_DEPTH_BATCH = flags.DEFINE_integer("depth_batch_size", 8, "Photos per depth-estimation batch.")


def main(argv):
  del argv
  try:
    if "://" not in _DATA_DIR.value:
      cli.ensure_writable_dir(_DATA_DIR.value, "--data_dir")
    from diffcamera_jax.depth import load_depth_model
    depth_model = load_depth_model(_DEPTH_MODEL.value, batch_size=max(1, _DEPTH_BATCH.value))
  except ValueError as error:
    cli.fail("image_depth_folder", str(error))
  try:
    builder = image_depth_folder.prepare(_SOURCE_DIR.value, _DATA_DIR.value,
                                         map_kind=_MAP_KIND.value, skip_bad=_SKIP_BAD.value,
                                         depth_model=depth_model)
  except reading.SourceError as error:  # a bad photo or map, a missing or empty folder
    hint = "" if _SKIP_BAD.value or isinstance(error, reading.MissingSourceError) else (
        " (--skip_bad skips bad files and lists them)")
    cli.fail("image_depth_folder", f"{error}{hint}")
  splits = {name: info.num_examples for name, info in builder.info.splits.items()}
  print(f"prepared {builder.data_dir}: examples per split {splits}; skipped {len(builder.skipped)}"
        f"; depth estimated for {len(builder.estimated)}")
  for item in builder.skipped:
    print(f"  skipped {item['path']}: {item['reason']}")


def _underscored(argv: list[str]) -> list[str]:
  """`--depth-model=X` -> `--depth_model=X` (flag names only)."""
  out = []
  for arg in argv:
    if arg.startswith("--"):
      name, sep, value = arg.partition("=")
      arg = "--" + name[2:].replace("-", "_") + sep + value
    out.append(arg)
  return out


if __name__ == "__main__":
  parse = cli.absl_flags_parser("image_depth_folder", config_flags=())
  app.run(main, flags_parser=lambda argv: parse(_underscored(argv)))
