"""TFDS builder `image_depth_folder`: a folder of photos + depth/disparity maps -> ArrayRecord.

The source folder is TFDS's manual dir (`reading.py` documents its layout). The output is readable
by random access with `tfds.data_source("image_depth_folder/<config>", data_dir=...)`, locally or
from a bucket path, which is what Grain needs. Configs: `disparity` (maps hold disparity or any
inverse depth) and `depth` (maps hold depth; converted to 1 / depth). Either way the stored map is
disparity in [0, 1] (1 = nearest), quantised to uint16.

Photos without a map get one from a `depth_model` when the builder has one (a
`diffcamera_jax.depth.DepthEstimator`: Depth Anything V2), estimated in batches on the accelerator
with a progress bar; photos with a map keep it. The estimated keys are listed in
`info.metadata["estimated"]`.

Bad files (corrupt, unreadable, missing or mis-sized map, NaN or negative values) raise
`BadFileError` naming the path; with `skip_bad=True` they are skipped, logged, and listed in the
dataset's metadata (`info.metadata["skipped"]`, one `{"split", "path", "reason"}` per file).
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

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

  def __init__(self, *, skip_bad: bool = False, depth_model: Any = None, **kwargs):
    super().__init__(**kwargs)
    self.skip_bad = bool(skip_bad)
    self.depth_model = depth_model
    self.skipped: list[dict[str, str]] = []
    self.estimated: list[str] = []

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
    for pair, read in self._read_pairs(split, pairs):
      if read is None:
        continue
      image, disparity = read
      kept += 1
      yield pair.key, {"image": image, "disparity": reading.quantize_disparity(disparity),
                       "key": pair.key}
    if kept == 0:
      raise reading.BadFileError(split_dir, f"none of the {len(pairs)} photos is usable "
                                 f"({len(self.skipped)} skipped as bad)")
    self.info.metadata["skipped"] = list(self.skipped)
    self.info.metadata["estimated"] = list(self.estimated)

  def _read_pairs(self, split: str, pairs: list[reading.Pair]
                  ) -> Iterator[tuple[reading.Pair, tuple | None]]:
    """(pair, (image, disparity) or None if skipped), in order. Photos without a map are read in
    chunks and their maps estimated together when there is a depth model."""
    missing = sum(p.map_path is None for p in pairs) if self.depth_model is not None else 0
    chunk = 4 * getattr(self.depth_model, "batch_size", 1)
    progress = None
    if missing:
      from tqdm import tqdm
      progress = tqdm(total=missing, desc=f"estimating depth ({split})", unit="photo")
    try:
      for start in range(0, len(pairs), chunk):
        batch = pairs[start:start + chunk]
        results: list[tuple | None] = [None] * len(batch)
        to_estimate = []
        for i, pair in enumerate(batch):
          try:
            if pair.map_path is None and self.depth_model is not None:
              to_estimate.append((i, reading.read_image(pair.image_path)))
            else:
              results[i] = reading.read_pair(pair, self.builder_config.map_kind)
          except reading.BadFileError as e:
            self._skip(split, e)
        if to_estimate:
          maps = self.depth_model.estimate_many(
              [image.astype(np.float32) / 255.0 for _, image in to_estimate],
              on_image=progress.update if progress is not None else None)
          for (i, image), disparity in zip(to_estimate, maps):
            results[i] = (image, disparity)
            self.estimated.append(batch[i].key)
        yield from zip(batch, results)
    finally:
      if progress is not None:
        progress.close()

  def _skip(self, split: str, error: reading.BadFileError) -> None:
    if not self.skip_bad:
      raise error
    logging.warning("image_depth_folder: skipping %s", error)
    self.skipped.append({"split": split, "path": error.path, "reason": error.reason})
    self.info.metadata["skipped"] = list(self.skipped)
