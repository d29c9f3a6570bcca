"""Host-side camera sampling (numpy only: it runs inside Grain workers).

One training example needs a source camera (the reference photo), a target camera, a second target
focus for the stacking pair and an aperture. Focus points are (x, y) in [0, 1]^2 (x right, y down);
blur `K` is a circle-of-confusion radius in pixels at the crop's resolution. Ranges come from
`config.data`: `blur_range` is given at `blur_reference_size` (the longer image side) and rescaled
to the crop, so a given `K / max(H, W)` means the same defocus at every resolution.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

# How many random candidate points are tried for the second focus of the stacking pair.
_SECOND_FOCUS_CANDIDATES = 16


@dataclasses.dataclass(frozen=True)
class CameraRanges:
  """The camera distribution; see `configs/default.py` (`config.data`) for the meaning of each."""
  blur_range: tuple[float, float] = (0.0, 40.0)
  blur_reference_size: int = 512
  p_source_all_in_focus: float = 0.3
  p_target_all_in_focus: float = 0.15
  aperture_blades: tuple[int, ...] = (0,)
  random_aperture_rotation: bool = True
  # The stacking pair's focal planes differ by at least this much disparity when the scene allows.
  min_focus_separation: float = 0.1

  def __post_init__(self):
    lo, hi = (float(b) for b in self.blur_range)
    if not 0.0 <= lo <= hi:
      raise ValueError(f"blur_range must satisfy 0 <= low <= high, got {self.blur_range}")
    if self.blur_reference_size <= 0:
      raise ValueError(f"blur_reference_size must be > 0, got {self.blur_reference_size}")
    for name in ("p_source_all_in_focus", "p_target_all_in_focus"):
      p = getattr(self, name)
      if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    blades = tuple(int(n) for n in self.aperture_blades)
    if not blades or any(n != 0 and n < 3 for n in blades):
      raise ValueError("aperture_blades must be a non-empty tuple of 0 (disk) or n >= 3, "
                       f"got {self.aperture_blades}")
    if not 0.0 <= self.min_focus_separation <= 1.0:
      raise ValueError(f"min_focus_separation must be in [0, 1], got {self.min_focus_separation}")
    object.__setattr__(self, "blur_range", (lo, hi))
    object.__setattr__(self, "aperture_blades", blades)

  @classmethod
  def from_config(cls, data_config: Any) -> "CameraRanges":
    """Reads the ranges from `config.data` (a ConfigDict or any attribute holder)."""
    return cls(
        blur_range=tuple(data_config.blur_range),
        blur_reference_size=int(data_config.blur_reference_size),
        p_source_all_in_focus=float(data_config.p_source_all_in_focus),
        p_target_all_in_focus=float(data_config.p_target_all_in_focus),
        aperture_blades=tuple(data_config.aperture_blades),
        random_aperture_rotation=bool(data_config.random_aperture_rotation),
    )


def blur_pixels(blur: float, image_hw: tuple[int, int], reference_size: int) -> float:
  """A blur (CoC radius) given in pixels at a longer image side of `reference_size`, in pixels
  at an image of `image_hw`: the one rescaling rule of every blur in the project."""
  return float(blur) * max(image_hw) / reference_size


def blur_scale(ranges: CameraRanges, height: int, width: int) -> float:
  """Factor from blur at `blur_reference_size` to blur in pixels at an H x W image."""
  if height <= 0 or width <= 0:
    raise ValueError(f"height and width must be > 0, got {(height, width)}")
  return blur_pixels(1.0, (height, width), ranges.blur_reference_size)


def focus_window(height: int, width: int) -> int:
  """Side of the focus window; the same rule as `diffcamera_jax.optics.focus.focus_window`."""
  return min(2 * max(1, min(height, width) // 64) + 1, height, width)


def point_disparity(disparity: np.ndarray, points: np.ndarray) -> np.ndarray:
  """Focus disparity at points [..., 2] (x, y in [0, 1]): the median of the focus window.

  Mirrors `optics.focus_disparity` (numpy, for workers), so the host judges the stacking pair's
  separation with the same value the device renders with.
  """
  height, width = disparity.shape
  size = focus_window(height, width)
  points = np.asarray(points, np.float32)
  cols = np.clip(np.floor(points[..., 0] * width).astype(np.int64) - size // 2, 0, width - size)
  rows = np.clip(np.floor(points[..., 1] * height).astype(np.int64) - size // 2, 0, height - size)
  offsets = np.arange(size)
  windows = disparity[(rows[..., None, None] + offsets[:, None]),
                      (cols[..., None, None] + offsets[None, :])]
  return np.median(windows.reshape(*windows.shape[:-2], size * size), axis=-1)


def sample_cameras(rng: np.random.Generator, disparity: np.ndarray,
                   ranges: CameraRanges) -> dict[str, np.ndarray]:
  """Samples one example's cameras; keys and dtypes follow the host-batch table.

  Args:
    rng: the example's generator (Grain's `random_map` gives one per element, so sampling is
      deterministic in the pipeline seed and the element's position).
    disparity: [H, W] disparity of the crop, used to separate the stacking pair's focal planes.
    ranges: the camera distribution.

  Returns:
    `source_focus` [2], `source_blur` [], `target_focus` [2], `target_focus_2` [2],
    `target_blur` [], `aperture_blades` [] i32, `aperture_rotation` [] (radians).
  """
  if disparity.ndim != 2:
    raise ValueError(f"disparity must be [H, W], got shape {disparity.shape}")
  scale = blur_scale(ranges, *disparity.shape)

  def blur(p_all_in_focus: float) -> np.float32:
    k = rng.uniform(*ranges.blur_range) * scale
    return np.float32(0.0 if rng.random() < p_all_in_focus else k)

  source_focus = rng.random(2).astype(np.float32)
  source_blur = blur(ranges.p_source_all_in_focus)
  target_focus = rng.random(2).astype(np.float32)
  target_blur = blur(ranges.p_target_all_in_focus)
  target_focus_2 = second_focus(rng, disparity, target_focus, ranges.min_focus_separation)
  blades = np.int32(ranges.aperture_blades[rng.integers(len(ranges.aperture_blades))])
  rotation = rng.uniform(0.0, 2.0 * np.pi / blades) if blades >= 3 else 0.0
  rotation = np.float32(rotation if ranges.random_aperture_rotation else 0.0)
  return {
      "source_focus": source_focus,
      "source_blur": source_blur,
      "target_focus": target_focus,
      "target_focus_2": target_focus_2,
      "target_blur": target_blur,
      "aperture_blades": blades,
      "aperture_rotation": rotation,
  }


def second_focus(rng: np.random.Generator, disparity: np.ndarray, first: np.ndarray,
                 min_separation: float) -> np.ndarray:
  """A focus point whose disparity differs from the one at `first` by >= `min_separation`.

  Draws candidate points at random and picks one of those far enough in disparity; if the scene
  has none (a nearly flat scene), takes the candidate farthest in disparity, so the two focal planes
  of the stacking pair are as different as the scene allows.
  """
  candidates = rng.random((_SECOND_FOCUS_CANDIDATES, 2)).astype(np.float32)
  gap = np.abs(point_disparity(disparity, candidates) - point_disparity(disparity, first))
  far_enough = np.flatnonzero(gap >= min_separation)
  if far_enough.size:
    return candidates[far_enough[rng.integers(far_enough.size)]]
  return candidates[int(np.argmax(gap))]
