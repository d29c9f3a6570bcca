"""Deblurring a photo of known depth before refocusing it: find its camera, invert the renderer.

With a disparity map the optics fix how a photo was blurred up to two numbers, its focus
disparity d and blur K. `deblur_with_depth` finds them (`optics.invert.estimate_camera`: the
camera whose renders explain the photo, searched at the working size), and, where one explains
the photo clearly better than leaving it as it is, returns the sharp image whose render is the
photo (`optics.invert_render`, at the photo's own size with the blur rescaled to it); a photo no
camera explains (already sharp) comes back unchanged. The refocusing model then starts from an
all-in-focus photo, the case where its physics prior is exact (README, Results).
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from data_pipeline.cameras import blur_pixels
from diffcamera_jax.inference import full_resolution as fullres
from diffcamera_jax.optics.invert import estimate_camera, invert_render


@dataclasses.dataclass(frozen=True)
class CameraSearch:
  """Settings of `deblur_with_depth` (`config.objective.camera_search_*`)."""
  max_blur: float  # largest blur searched, pixels at the working size
  threshold: float = 0.04  # explained-residual ratio below which the photo counts as blurred
  search_iterations: int = 25
  focus_levels: int = 7
  blur_levels: int = 5
  refinements: int = 2
  invert_iterations: int = 50
  tv_weight: float = 3e-4
  gamma: float = 2.2


@functools.partial(jax.jit, static_argnames=("search",))
def _estimate(photo, disparity, search: CameraSearch):
  return estimate_camera(photo, disparity, blur_range=(0.5, search.max_blur),
                         focus_levels=search.focus_levels, blur_levels=search.blur_levels,
                         refinements=search.refinements, iterations=search.search_iterations,
                         gamma=search.gamma, max_radius=search.max_blur)


@functools.partial(jax.jit, static_argnames=("search", "max_radius"))
def _invert(photo, disparity, focus_disparity, blur, search: CameraSearch, max_radius: float):
  return invert_render(photo, disparity, focus_disparity, blur,
                       iterations=search.invert_iterations, tv_weight=search.tv_weight,
                       gamma=search.gamma, max_radius=max_radius)


def deblur_with_depth(photos: np.ndarray, disparity: np.ndarray, work_hw: tuple[int, int],
                      search: CameraSearch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """All-in-focus estimates `[N, H, W, 3]` of photos `[N, H, W, 3]` with disparity `[N, H, W]`,
  and what was found per photo: `focus_disparity`, `blur` (pixels at the photo's size),
  `explained` (the residual ratio) and `deblurred` (whether it was below the threshold).

  The camera is searched on copies resized to `work_hw` (the size the model works at); the
  inversion runs at the photo's size.
  """
  photos = np.asarray(photos, np.float32)
  disparity = np.asarray(disparity, np.float32)
  height, width = photos.shape[1:3]
  if (height, width) != tuple(work_hw):
    small = fullres.downscale(photos, tuple(work_hw))
    small_d = fullres.downscale(disparity, tuple(work_hw), "nearest")
  else:
    small, small_d = photos, disparity
  d, k, explained = (np.asarray(a) for a in _estimate(jnp.asarray(small), jnp.asarray(small_d),
                                                      search))
  scale = max(height, width) / max(work_hw)
  blur = (k * scale).astype(np.float32)
  deblurred = explained < search.threshold
  out = photos
  if deblurred.any():  # the whole batch, so that the program's shape does not vary
    max_radius = float(np.ceil(search.max_blur * scale))
    sharp = np.asarray(_invert(jnp.asarray(photos), jnp.asarray(disparity), jnp.asarray(d),
                               jnp.asarray(blur), search, max_radius))
    out = np.where(deblurred[:, None, None, None], sharp, photos)
  return out, {"focus_disparity": d, "blur": blur, "explained": explained,
               "deblurred": deblurred}


CACHE_BYTES = 256 * 2 ** 20  # deblurred photos kept for repeated calls on the same photo


class Deblurrer:
  """`deblur_with_depth` with the settings of a model's config and a cache: each distinct photo
  (and disparity) is searched once; the most recently used results are kept up to CACHE_BYTES."""

  def __init__(self, config: ml_collections.ConfigDict, max_side: int):
    self.config, self.max_side = config, int(max_side)
    self._cache: collections.OrderedDict[bytes, np.ndarray] = collections.OrderedDict()

  def search_for(self, work_hw: tuple[int, int]) -> CameraSearch:
    """The search at this working size: blurs up to 1.2x the training range."""
    d = self.config.data
    return CameraSearch(
        max_blur=max(1.0, 1.2 * blur_pixels(float(d.blur_range[1]), work_hw,
                                            int(d.blur_reference_size))),
        threshold=float(self.config.objective.get("camera_search_threshold",
                                                  CameraSearch.threshold)),
        gamma=float(d.gamma))

  def __call__(self, photos: np.ndarray, disparity: np.ndarray) -> np.ndarray:
    """Photos `[N, H, W, 3]` with disparity `[N, H, W]`, deblurred where a camera explains them."""
    keys = [hashlib.sha1(p.tobytes() + d.tobytes() + str(p.shape).encode()).digest()
            for p, d in zip(photos, disparity)]
    todo = [i for i, k in enumerate(keys) if k not in self._cache]
    if todo:
      work_hw = fullres.working_size(*photos.shape[1:3], self.max_side)
      sharp, _ = deblur_with_depth(photos[todo], disparity[todo], work_hw,
                                   self.search_for(work_hw))
      for i, image in zip(todo, sharp):
        self._cache[keys[i]] = image
    out = np.stack([self._cache[k] for k in keys])
    for k in keys:
      self._cache.move_to_end(k)
    while sum(v.nbytes for v in self._cache.values()) > CACHE_BYTES:
      self._cache.popitem(last=False)
    return out


__all__ = ["CameraSearch", "Deblurrer", "deblur_with_depth"]
