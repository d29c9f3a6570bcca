"""The first stage of a refocusing call: check everything on the host and find the depth.

Every problem is a `ValueError` naming the argument, raised before any device work. The depth
source is settled here: the disparity the caller gives, else the depth model's estimate, else
none (the model's no-depth path).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import ml_collections
import numpy as np

from diffcamera_jax import optics
from diffcamera_jax.cli import MAX_BLUR, MAX_FRAMES
from diffcamera_jax.inference.memory import check_host


def check_cameras(focus: np.ndarray, blur: np.ndarray) -> None:
  """Raises ValueError naming the argument unless focus `[N, 2]` is in [0, 1]^2 and blur `[N]` in
  [0, `cli.MAX_BLUR`]."""
  if focus.ndim != 2 or focus.shape[-1] != 2 or len(focus) == 0:
    raise ValueError(f"focus must be (x, y) or a list of (x, y), got shape {focus.shape}")
  if not np.all(np.isfinite(focus)) or focus.min() < 0 or focus.max() > 1:
    raise ValueError(f"focus must lie in [0, 1]^2 (x right, y down), got {focus.tolist()}")
  if blur.ndim != 1 or len(blur) == 0:
    raise ValueError(f"blur must be a number or a list of numbers, got shape {blur.shape}")
  if not np.all(np.isfinite(blur)) or blur.min() < 0 or blur.max() > MAX_BLUR:
    raise ValueError(f"blur must lie in [0, {MAX_BLUR:g}] (pixels), got {blur.tolist()[:8]}")


def camera_grid(focus, blur) -> tuple[np.ndarray, np.ndarray]:
  """All (focus, blur) combinations, focus-major: `[N, 2]`, `[N]` (validated; at most
  `cli.MAX_FRAMES` of them)."""
  f = np.asarray(focus, np.float32)
  f = f[None] if f.ndim == 1 else f
  k = np.atleast_1d(np.asarray(blur, np.float32))
  check_cameras(f, k)
  if len(f) * len(k) > MAX_FRAMES:
    raise ValueError(f"{len(f)} focus points x {len(k)} blur levels: over {MAX_FRAMES} frames")
  return np.repeat(f, len(k), axis=0), np.tile(k, len(f))


def trained_size(config: ml_collections.ConfigDict) -> tuple[int, int]:
  """The model config's `data.image_size` as (height, width), or ValueError naming the field."""
  size = config.data.image_size
  try:
    hw = tuple(int(v) for v in size)
  except (TypeError, ValueError):
    hw = ()
  if len(hw) != 2 or min(hw) < 1 or any(isinstance(v, (bool, float)) and v != int(v)
                                          for v in size):
    raise ValueError(f"model config: data.image_size {size!r} must be two positive integers")
  return hw


def depth_estimator(depth_model: Any) -> Any:
  """A `DepthEstimator` given as itself, as its weights' path (loaded here), or None."""
  if isinstance(depth_model, (str, os.PathLike)):
    from diffcamera_jax.depth import DepthEstimator
    return DepthEstimator.load(depth_model)
  return depth_model


def one_photo(image: np.ndarray, disparity: np.ndarray | None, focus, blur
              ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
  """`refocus`'s one photo `[H, W, 3]` (and disparity `[H, W]` or None) with its focus x blur
  grid, as the batched arguments of `sample`: `[1, H, W, 3]`, `[1, H, W]` or None, `[N, 2]`,
  `[N]`."""
  image = np.asarray(image, np.float32)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
  points, levels = camera_grid(focus, blur)
  return (image[None], None if disparity is None else np.asarray(disparity)[None], points,
          levels)


@dataclasses.dataclass(frozen=True)
class Request:
  """A checked call: photos `[1 or N, H, W, 3]`, their disparity (same leading size) or None,
  whether the caller gave it, and N cameras."""

  photos: np.ndarray
  disparity: np.ndarray | None
  depth_given: bool
  focus: np.ndarray
  blur: np.ndarray
  blades: int
  rotation: float
  num_steps: int
  seed: int

  @property
  def frames(self) -> int:
    return len(self.focus)

  @property
  def image_hw(self) -> tuple[int, int]:
    return tuple(self.photos.shape[1:3])


def prepare(reference: np.ndarray, disparity: np.ndarray | None, focus: np.ndarray,
            blur: np.ndarray, *, blades: int, rotation: float, num_steps: int, seed: int,
            host_budget: int, depth_model: Any = None) -> Request:
  """The checked `Request` of a call (see the module docstring). `depth_model` (a
  `DepthEstimator`) supplies disparity for photos given none."""
  reference = np.asarray(reference, np.float32)
  focus, blur = np.asarray(focus, np.float32), np.asarray(blur, np.float32)
  n = len(focus)
  if reference.ndim != 4 or reference.shape[0] not in (1, n):
    raise ValueError(f"reference must be [1 or {n}, H, W, 3], got shape {reference.shape}")
  if disparity is not None and np.shape(disparity) != reference.shape[:-1]:
    raise ValueError(f"disparity must have shape {reference.shape[:-1]} to match the image, got "
                     f"{np.shape(disparity)}")
  check_host(reference.shape[1:3], n, host_budget)
  optics.validate(reference, np.zeros(reference.shape[:-1]) if disparity is None else disparity,
                  aperture=optics.Aperture(blades, rotation))
  check_cameras(focus, blur)
  if len(blur) != n:
    raise ValueError(f"blur must be [{n}] like focus, got shape {blur.shape}")
  if int(num_steps) < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}")
  depth_given = disparity is not None
  if depth_given:
    disparity = np.asarray(disparity, np.float32)
  elif depth_model is not None:
    disparity = np.stack(depth_model.estimate_many(list(reference)))
  return Request(reference, disparity, depth_given, focus, blur, int(blades), float(rotation),
                 int(num_steps), int(seed))


__all__ = ["Request", "camera_grid", "check_cameras", "depth_estimator", "one_photo", "prepare", "trained_size"]
