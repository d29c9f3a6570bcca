"""The `image_depth_folder` TFDS dataset: photos + depth/disparity maps as ArrayRecord files.

    builder = prepare("/photos", "/tfds")          # once (needs TensorFlow to write)
    source = data_source("/tfds", split="train")   # random access for Grain (no TensorFlow)

Importing this package registers the builder with TFDS.
"""
from __future__ import annotations

import pathlib
from typing import Any

import tensorflow_datasets as tfds

from data_pipeline.image_depth_folder.image_depth_folder_dataset_builder import (
    Builder, ImageDepthFolderConfig)
from data_pipeline.image_depth_folder import reading
from data_pipeline.image_depth_folder.reading import BadFileError

NAME = "image_depth_folder"

__all__ = ["Builder", "ImageDepthFolderConfig", "BadFileError", "NAME", "prepare", "data_source"]


def prepare(source_dir: str | pathlib.Path, data_dir: str | pathlib.Path, *,
            map_kind: str = "disparity", skip_bad: bool = False,
            depth_model: Any = None) -> Builder:
  """Builds the ArrayRecord dataset from `source_dir` into `data_dir`; returns the builder.

  `map_kind` names the builder config ("disparity" or "depth"); with `skip_bad` bad files are
  skipped and listed in `builder.skipped` and `builder.info.metadata["skipped"]`. With a
  `depth_model` (`diffcamera_jax.depth.DepthEstimator`) photos without a map get an estimated
  one (listed in `builder.estimated`); photos with a map keep it.
  """
  names = [c.name for c in Builder.BUILDER_CONFIGS]
  if map_kind not in names:
    raise ValueError(f"map_kind must be one of {names}, got {map_kind!r}")
  if not pathlib.Path(source_dir).is_dir():
    raise reading.MissingSourceError(f"source_dir {source_dir} does not exist or is not a folder")
  reading.find_splits(source_dir)  # an empty folder: our message, not TFDS's assertion
  builder = Builder(config=map_kind, data_dir=str(data_dir), skip_bad=skip_bad,
                    depth_model=depth_model)
  builder.download_and_prepare(
      file_format="array_record",
      download_config=tfds.download.DownloadConfig(manual_dir=str(source_dir)))
  return builder


def data_source(data_dir: str | pathlib.Path, split: str = "train",
                map_kind: str = "disparity") -> Any:
  """A random-access source of `{"image": uint8 [H, W, 3], "disparity": uint16 [H, W], "key"}`."""
  return tfds.data_source(f"{NAME}/{map_kind}", split=split, data_dir=str(data_dir),
                          download=False)
