"""Finding, reading and checking the (photo, depth-or-disparity map) pairs of a source folder.

Folder layout (one split):           or (several splits):
  <root>/images/<name>.<jpg|png|...>    <root>/<split>/images/...
  <root>/maps/<name>.<png|npy>          <root>/<split>/maps/...
`<name>` may contain sub-folders. Maps are single-channel 8- or 16-bit PNGs or 2-D `.npy` arrays
(any real dtype) at the photo's size. Every problem raises `BadFileError` naming the file.
"""
from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from data_pipeline import checked_files

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
MAP_SUFFIXES = (".png", ".npy")
MAP_KINDS = ("disparity", "depth")
DISPARITY_LEVELS = 65535  # disparity is stored as uint16: value / DISPARITY_LEVELS in [0, 1]


class SourceError(Exception):
  """A problem with the source folder or one of its files: the user's to fix (CLI: exit 2)."""


class MissingSourceError(SourceError, FileNotFoundError):
  """The source folder, its images/ folder or any photo in it is missing."""


class BadFileError(SourceError, ValueError):
  """A source file (or a whole split) that cannot be used; the message starts with its path."""

  def __init__(self, path: pathlib.Path | str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path = str(path)
    self.reason = reason


@dataclasses.dataclass(frozen=True)
class Pair:
  """One example's files; `key` is the photo's path relative to the split's `images/` folder."""
  key: str
  image_path: pathlib.Path
  map_path: pathlib.Path | None  # None: no map found (reported as bad when read)


def find_splits(root: pathlib.Path | str) -> dict[str, pathlib.Path]:
  """Split name -> split folder: `root` itself is `train`, or each sub-folder with `images/`."""
  root = pathlib.Path(root)
  if not root.is_dir():
    raise MissingSourceError(f"source folder {root} does not exist or is not a folder")
  if (root / "images").is_dir():
    return {"train": root}
  splits = {p.name: p for p in sorted(root.iterdir()) if (p / "images").is_dir()}
  if not splits:
    raise MissingSourceError(
        f"{root}: expected an images/ folder, or split folders (train/, validation/, ...) "
        "holding one")
  return splits


def find_pairs(split_dir: pathlib.Path | str) -> list[Pair]:
  """All photos under `split_dir/images` with their map under `split_dir/maps`, sorted by key."""
  split_dir = pathlib.Path(split_dir)
  images_dir, maps_dir = split_dir / "images", split_dir / "maps"
  pairs = []
  for path in sorted(images_dir.rglob("*")):
    if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
      continue
    rel = path.relative_to(images_dir)
    maps = [m for m in (maps_dir / rel.with_suffix(s) for s in MAP_SUFFIXES) if m.is_file()]
    if len(maps) > 1:
      raise BadFileError(path, f"ambiguous map: both {maps[0]} and {maps[1]} exist")
    pairs.append(Pair(key=rel.as_posix(), image_path=path, map_path=maps[0] if maps else None))
  if not pairs:
    raise MissingSourceError(f"{images_dir}: no images with suffix {IMAGE_SUFFIXES}")
  return pairs


def _checked(path: pathlib.Path | str, what: str, read):
  """`read()` with the checked readers' ValueError (which names `what` and the file) re-raised as
  `BadFileError`."""
  try:
    return read()
  except ValueError as e:
    prefix = f"{what} file {path}: "
    message = str(e)
    raise BadFileError(path, message[len(prefix):] if message.startswith(prefix) else message
                       ) from None


def read_image(path: pathlib.Path | str) -> np.ndarray:
  """The photo as uint8 RGB [H, W, 3], EXIF orientation applied (as depth estimators see it);
  read by `checked_files.open_image` (regular files only, pixel limit checked from the
  header before decoding)."""
  img = _checked(path, "image", lambda: checked_files.open_image(path, "image"))
  return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_map(path: pathlib.Path | str) -> np.ndarray:
  """A depth or disparity map as float64 [H, W] (PNG: 8/16-bit single channel; or `.npy`, its
  header checked before anything is allocated)."""
  path = pathlib.Path(path)
  if path.suffix.lower() == ".npy":
    values = _checked(path, "map", lambda: checked_files.read_npy(path, "map"))
  else:
    values = np.asarray(_checked(path, "map", lambda: checked_files.open_image(path, "map")))
  if values.ndim == 3 and values.shape[-1] == 1:
    values = values[..., 0]
  if values.ndim != 2:
    raise BadFileError(path, f"map must be single-channel [H, W], got shape {values.shape}")
  if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
    raise BadFileError(path, f"map must hold real numbers, got dtype {values.dtype}")
  return values.astype(np.float64)


def to_disparity(values: np.ndarray, kind: str, path: pathlib.Path | str = "<map>") -> np.ndarray:
  """Normalises a depth or disparity map to disparity in [0, 1] (1 = nearest), float32.

  Depth must be > 0 (disparity = 1 / depth); disparity must be >= 0; both must be finite. The
  result is min-max normalised per map (maps from monocular estimators are relative anyway); a
  constant map becomes all zeros.
  """
  if kind not in MAP_KINDS:
    raise ValueError(f"kind must be one of {MAP_KINDS}, got {kind!r}")
  if not np.all(np.isfinite(values)):
    raise BadFileError(path, f"{kind} map has {int(np.sum(~np.isfinite(values)))} NaN/inf values")
  if kind == "depth":
    if np.any(values <= 0):
      raise BadFileError(path, f"depth map has {int(np.sum(values <= 0))} values <= 0")
    values = 1.0 / values
  elif np.any(values < 0):
    raise BadFileError(path, f"disparity map has {int(np.sum(values < 0))} negative values")
  lo, hi = float(values.min()), float(values.max())
  if hi - lo <= 0:
    return np.zeros(values.shape, np.float32)
  return ((values - lo) / (hi - lo)).astype(np.float32)


def read_pair(pair: Pair, kind: str) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 RGB [H, W, 3], disparity [H, W] f32 in [0, 1]) of `pair`, or `BadFileError`."""
  if pair.map_path is None:
    raise BadFileError(pair.image_path, "no matching map (maps/<name>.png or .npy)")
  image = read_image(pair.image_path)
  disparity = to_disparity(read_map(pair.map_path), kind, pair.map_path)
  if disparity.shape != image.shape[:2]:
    raise BadFileError(pair.map_path,
                       f"map size {disparity.shape} differs from image size {image.shape[:2]} "
                       f"of {pair.image_path}")
  return image, disparity


def quantize_disparity(disparity: np.ndarray) -> np.ndarray:
  """Disparity in [0, 1] -> uint16 storage."""
  return np.round(np.clip(disparity, 0.0, 1.0) * DISPARITY_LEVELS).astype(np.uint16)


def dequantize_disparity(stored: np.ndarray) -> np.ndarray:
  """uint16 storage -> disparity float32 in [0, 1]."""
  return stored.astype(np.float32) / np.float32(DISPARITY_LEVELS)
