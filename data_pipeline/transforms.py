"""Per-example Grain transforms and sources (numpy + Pillow only: they run in worker processes).

Each is a small picklable class so `mp_prefetch` can ship it to workers. Elements are dicts; the
final element has exactly the host-batch keys of docs/architecture.md (without the batch dim).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import grain
import numpy as np
from PIL import Image

from data_pipeline import cameras
from data_pipeline import procedural
from data_pipeline.image_depth_folder import reading

# Virtual length of the infinite procedural source (Grain's index shuffle takes 32-bit indices).
PROCEDURAL_LENGTH = 2**31
# A random crop covers this fraction of the largest crop of the training aspect ratio.
CROP_AREA_RANGE = (0.35, 1.0)


@dataclasses.dataclass(frozen=True)
class ProceduralScenes:
  """Random-access source of procedural scenes drawn directly at the training size.

  Scenes are resolution independent, so drawing at the training size replaces crop + resize
  without resampling and keeps the disparity exact.
  """
  seed: int
  height: int
  width: int
  length: int = PROCEDURAL_LENGTH

  def __len__(self) -> int:
    return self.length

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    image, disparity = procedural.make_scene(self.seed, int(index), self.height, self.width)
    return {"image": image, "disparity": disparity}


class DecodeRecord(grain.transforms.Map):
  """A TFDS record (uint8 image, uint16 or float disparity) -> float32 image and disparity."""

  def map(self, element: dict[str, Any]) -> dict[str, np.ndarray]:
    image = np.asarray(element["image"])
    if image.dtype == np.uint8:
      image = image.astype(np.float32) / np.float32(255.0)
    disparity = np.asarray(element["disparity"])
    if disparity.ndim == 3 and disparity.shape[-1] == 1:
      disparity = disparity[..., 0]
    if disparity.dtype == np.uint16:
      disparity = reading.dequantize_disparity(disparity)
    if image.ndim != 3 or image.shape[-1] != 3 or disparity.shape != image.shape[:2]:
      raise ValueError(f"record has image {image.shape} and disparity {disparity.shape}; expected "
                       "[H, W, 3] and [H, W]")
    return {"image": image.astype(np.float32), "disparity": disparity.astype(np.float32)}


def crop_box(rng: np.random.Generator, height: int, width: int, out_height: int, out_width: int,
             area_range: tuple[float, float] = CROP_AREA_RANGE) -> tuple[int, int, int, int]:
  """A random (top, left, crop_h, crop_w) with the output's aspect ratio inside an H x W image."""
  aspect = out_width / out_height
  max_h = min(float(height), width / aspect)
  scale = np.sqrt(rng.uniform(*area_range))
  crop_h = int(np.clip(round(max_h * scale), 1, height))
  crop_w = int(np.clip(round(max_h * scale * aspect), 1, width))
  top = int(rng.integers(height - crop_h + 1))
  left = int(rng.integers(width - crop_w + 1))
  return top, left, crop_h, crop_w


def resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bilinear resize (antialiased when shrinking) of float32 [h, w] or [h, w, C] arrays."""
  if array.shape[:2] == (height, width):
    return array
  channels = array[..., None] if array.ndim == 2 else array
  out = np.stack([
      np.asarray(Image.fromarray(np.ascontiguousarray(channels[..., c]), mode="F")
                 .resize((width, height), Image.Resampling.BILINEAR))
      for c in range(channels.shape[-1])
  ], axis=-1)
  return out[..., 0] if array.ndim == 2 else out


class RandomCropResize(grain.transforms.RandomMap):
  """Random crop with the training aspect ratio, resized to (height, width)."""

  def __init__(self, height: int, width: int, area_range: tuple[float, float] = CROP_AREA_RANGE):
    if not 0.0 < area_range[0] <= area_range[1] <= 1.0:
      raise ValueError(f"area_range must satisfy 0 < low <= high <= 1, got {area_range}")
    self.height, self.width, self.area_range = int(height), int(width), tuple(area_range)

  def random_map(self, element: dict[str, np.ndarray], rng: np.random.Generator):
    image, disparity = element["image"], element["disparity"]
    top, left, h, w = crop_box(rng, *disparity.shape, self.height, self.width, self.area_range)
    window = (slice(top, top + h), slice(left, left + w))
    return {
        "image": np.clip(resize(image[window], self.height, self.width), 0.0, 1.0),
        "disparity": np.clip(resize(disparity[window], self.height, self.width), 0.0, 1.0),
    }


class SampleCameras(grain.transforms.RandomMap):
  """Adds the example's cameras (`cameras.sample_cameras`) to an image/disparity element."""

  def __init__(self, ranges: cameras.CameraRanges):
    self.ranges = ranges

  def random_map(self, element: dict[str, np.ndarray], rng: np.random.Generator):
    return {**element, **cameras.sample_cameras(rng, element["disparity"], self.ranges)}


def init_worker(worker_index: int, worker_count: int) -> None:
  """Marks absl flags parsed (defaults) if no `app.run` did: Grain reads its flags in the main
  process when it starts workers and again in each worker."""
  del worker_index, worker_count
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
