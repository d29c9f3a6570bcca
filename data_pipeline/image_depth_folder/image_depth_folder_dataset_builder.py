"""TFDS builder `image_depth_folder`: a folder of photos + depth/disparity maps -> ArrayRecord.

The source folder is TFDS's manual dir (`reading.py` documents its layout). The output is readable
by random access with `tfds.data_source("image_depth_folder/<config>", data_dir=...)`, locally or
from a bucket path, which is what Grain needs. Configs: `disparity` (maps hold disparity or any
inverse depth) and `depth` (maps hold depth; converted to 1 / depth). Either way the stored map is
disparity in [0, 1] (1 = nearest), quantised to uint16.

Bad files (corrupt, unreadable, missing or mis-sized map, NaN or negative values) raise
`BadFileError` naming the path; with `skip_bad=True` they are skipped, logged, and listed in the
dataset's metadata (`info.metadata["skipped"]`, one `{"split", "path", "reason"}` per file).
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import tensorflow_datasets as tfds

from data_pipeline.image_depth_folder import reading


@dataclasses.dataclass
class ImageDepthFolderConfig(tfds.core.BuilderConfig):
  """`map_kind`: what the map files hold, "disparity" or "depth"."""
  map_kind: str = "disparity"


class Builder(tfds.core.GeneratorBasedBuilder):
  """Photos with matching depth or disparity maps, any size and aspect ratio."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      ImageDepthFolderConfig(name="disparity", map_kind="disparity",
                             description="Maps hold disparity (inverse depth), any scale."),
      ImageDepthFolderConfig(name="depth", map_kind="depth",
                             description="Maps hold depth (> 0), converted to 1 / depth."),
  ]
  DEFAULT_CONFIG_NAME = "disparity"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Pass the source folder as the manual dir: <dir>/images/<name>.<jpg|png> with "
      "<dir>/maps/<name>.<png|npy> (or one such pair of folders per split sub-folder).")

  def __init__(self, *, skip_bad: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.skip_bad = bool(skip_bad)
    self.skipped: list[dict[str, str]] = []

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png",
                                         doc="All-in-focus photo, sRGB."),
            "disparity": tfds.features.Tensor(
                shape=(None, None), dtype=np.uint16, encoding="zlib",
                doc=f"Disparity in [0, 1] (1 = nearest) times {reading.DISPARITY_LEVELS}."),
            "key": tfds.features.Text(doc="Photo path relative to the split's images/ folder."),
        }),
        metadata=tfds.core.MetadataDict(),
        homepage="https://arxiv.org/abs/2509.26599",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    splits = reading.find_splits(dl_manager.manual_dir)
    return {name: self._generate_examples(name, path) for name, path in splits.items()}

  def _generate_examples(self, split: str, split_dir):
    pairs = reading.find_pairs(split_dir)
    kept = 0
    for pair in pairs:
      try:
        image, disparity = reading.read_pair(pair, self.builder_config.map_kind)
      except reading.BadFileError as e:
        if not self.skip_bad:
          raise
        logging.warning("image_depth_folder: skipping %s", e)
        self.skipped.append({"split": split, "path": e.path, "reason": e.reason})
        self.info.metadata["skipped"] = list(self.skipped)
        continue
      kept += 1
      yield pair.key, {"image": image, "disparity": reading.quantize_disparity(disparity),
                       "key": pair.key}
    if kept == 0:
      raise reading.BadFileError(split_dir, f"none of the {len(pairs)} photos is usable "
                                 f"({len(self.skipped)} skipped as bad)")
    self.info.metadata["skipped"] = list(self.skipped)
