"""Prepares the dataset.

    python -m data_pipeline.image_depth_folder --source_dir=... --data_dir=... [--skip_bad]
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


def main(argv):
  del argv
  try:
    builder = image_depth_folder.prepare(_SOURCE_DIR.value, _DATA_DIR.value,
                                         map_kind=_MAP_KIND.value, skip_bad=_SKIP_BAD.value)
  except reading.SourceError as error:  # a bad photo or map, a missing or empty folder
    hint = "" if _SKIP_BAD.value or isinstance(error, reading.MissingSourceError) else (
        " (--skip_bad skips bad files and lists them)")
    cli.fail("image_depth_folder", f"{error}{hint}")
  splits = {name: info.num_examples for name, info in builder.info.splits.items()}
  print(f"prepared {builder.data_dir}: examples per split {splits}; skipped {len(builder.skipped)}")
  for item in builder.skipped:
    print(f"  skipped {item['path']}: {item['reason']}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.absl_flags_parser("image_depth_folder", config_flags=()))
