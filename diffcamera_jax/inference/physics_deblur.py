"""Deblurring a photo before refocusing it: find how it was blurred, invert the renderer.

With a disparity map the optics fix how a photo was blurred up to two numbers, its focus
disparity d and blur K. `deblur_with_depth` finds them (`optics.invert.estimate_camera`: the
camera whose renders explain the photo), and, where one explains
the photo clearly better than leaving it as it is, returns the sharp image whose render is the
photo (`optics.invert_render`); a photo no camera explains (already sharp) comes back unchanged.
The search needs the photo's own pixels: a downscaled copy of a defocused photo is not a render
of the downscaled scene closely enough for the search's test, which then finds wrong cameras or
none (`tools/camera_search_study.py`, docs/model.md), so `Deblurrer` searches only photos that fit
the working size and leaves larger ones to the model. The refocusing model then starts from an
all-in-focus photo, the case where its physics prior is exact (README, Results).

Without a disparity map, `deblur_uniform` handles the one case the optics fix without depth: a
photo defocused as a whole (focus missed, one depth plane). The disk radius is identified from
the photo's spectrum (`optics.identify`), checked on the photo's quadrants (a blur that varies
across the photo, as depth makes it, is left to the model), and the renderer is inverted at
constant depth.
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
from diffcamera_jax.inference.resize import downscale, working_size
from diffcamera_jax.optics.identify import identify_uniform_blur
from diffcamera_jax.optics.invert import estimate_camera, invert_render


@dataclasses.dataclass(frozen=True)
class CameraSearch:
  """Settings of `deblur_with_depth`."""
  max_blur: float  # largest blur searched, pixels at the size searched
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


def deblur_with_depth(photos: np.ndarray, disparity: np.ndarray, search_hw: tuple[int, int],
                      search: CameraSearch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """All-in-focus estimates `[N, H, W, 3]` of photos `[N, H, W, 3]` with disparity `[N, H, W]`,
  and what was found per photo: `focus_disparity`, `blur` (pixels at the photo's size),
  `explained` (the residual ratio) and `deblurred` (whether it was below the threshold).

  The camera is searched on copies resized to `search_hw` (`search.max_blur` is in pixels at
  that size); the inversion runs at the photo's size.
  """
  photos = np.asarray(photos, np.float32)
  disparity = np.asarray(disparity, np.float32)
  height, width = photos.shape[1:3]
  if (height, width) != tuple(search_hw):
    small = downscale(photos, tuple(search_hw))
    small_d = downscale(disparity, tuple(search_hw), "nearest")
  else:
    small, small_d = photos, disparity
  d, k, explained = (np.asarray(a) for a in _estimate(jnp.asarray(small), jnp.asarray(small_d),
                                                      search))
  scale = max(height, width) / max(search_hw)
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


@dataclasses.dataclass(frozen=True)
class UniformSearch:
  """Settings of `deblur_uniform`; blurs in pixels at the photo's size."""
  max_blur: float = 16.0  # largest disk radius considered
  min_blur: float = 1.2  # smaller radii are left alone (too little to restore, easily misread)
  min_gain: float = 0.65  # log-likelihood gain per frequency over "sharp" needed to act
  tile_tolerance: float = 1.3  # quadrants must agree with the whole photo within this factor
  min_tile_side: int = 64  # quadrants smaller than this are not checked (too few frequencies)
  max_side: int = 1024  # larger photos are left as they are (the inversion's cost)
  levels: int = 48  # candidate radii, geometric from 0.8 px to max_blur, plus 0
  invert_iterations: int = 50
  tv_weight: float = 3e-4
  gamma: float = 2.2  # linear light; the encoded values (gamma 1) are tried too

  @property
  def radii(self) -> tuple[float, ...]:
    return (0.0,) + tuple(float(r) for r in np.geomspace(0.8, self.max_blur, self.levels))


@functools.partial(jax.jit, static_argnames=("search", "gamma"))
def _identify(photos, search: UniformSearch, gamma: float):
  return identify_uniform_blur(photos, search.radii, gamma=gamma)


@functools.partial(jax.jit, static_argnames=("search", "gamma"))
def _invert_uniform(photos, blur, search: UniformSearch, gamma: float):
  flat = jnp.zeros(photos.shape[:3], jnp.float32)
  return invert_render(photos, flat, jnp.ones_like(blur), blur,
                       iterations=search.invert_iterations, tv_weight=search.tv_weight,
                       gamma=gamma, max_radius=float(np.ceil(search.max_blur)))


def _quadrants(photos: np.ndarray) -> list[np.ndarray]:
  h, w = photos.shape[1] // 2, photos.shape[2] // 2
  return [photos[:, :h, :w], photos[:, :h, w:2 * w], photos[:, h:2 * h, :w],
          photos[:, h:2 * h, w:2 * w]]


def deblur_uniform(photos: np.ndarray, search: UniformSearch
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """All-in-focus estimates `[N, H, W, 3]` of photos `[N, H, W, 3]` that are defocused as a
  whole, and what was found per photo: `blur` (the identified disk radius, pixels), `gain` (its
  log-likelihood gain per frequency over a sharp photo), `gamma` (the encoding it was found in),
  `tiles_agree` and `deblurred`.

  The blur is looked for both in linear light (`search.gamma`: a lens blurs light) and on the
  encoded values (gamma 1: how software blurs a saved image); each photo keeps the encoding
  whose radius has the larger gain (the disk model fits the right one; the other smears its
  zeros). A photo is inverted, in that encoding, when its radius is at least `min_blur`, the
  evidence at least `min_gain`, and at least three of its quadrants (when each has
  `min_tile_side` pixels) identify a radius within `tile_tolerance` of it: a blur that varies
  across the photo is not one disk. Others come back unchanged.
  """
  photos = np.asarray(photos, np.float32)
  height, width = photos.shape[1:3]
  count = len(photos)
  gammas = (float(search.gamma), 1.0)
  if max(height, width) > search.max_side:
    nothing = np.zeros((count,), np.float32)
    return photos, {"blur": nothing, "gain": nothing, "gamma": nothing + gammas[0],
                    "tiles_agree": nothing.astype(bool), "deblurred": nothing.astype(bool)}
  found = [tuple(np.asarray(a) for a in _identify(jnp.asarray(photos), search, g))
           for g in gammas]
  pick = np.argmax(np.stack([gain for _, gain in found]), 0)  # [N]: the encoding per photo
  blur = np.choose(pick, [b for b, _ in found]).astype(np.float32)
  gain = np.choose(pick, [g for _, g in found]).astype(np.float32)
  agree = np.ones((count,), bool)
  if min(height, width) >= 2 * search.min_tile_side:
    tiles = np.stack([np.choose(pick, [np.asarray(_identify(jnp.asarray(q), search, g)[0])
                                       for g in gammas]) for q in _quadrants(photos)], 1)
    ratio = np.maximum(tiles, 1e-3) / np.maximum(blur, 1e-3)[:, None]  # [N, 4]
    agree = np.sum((ratio <= search.tile_tolerance) & (ratio >= 1 / search.tile_tolerance),
                   1) >= 3
  deblurred = (blur >= search.min_blur) & (gain >= search.min_gain) & agree
  out = photos
  for i, g in enumerate(gammas):
    chosen = deblurred & (pick == i)
    if chosen.any():  # the whole batch, so that the program's shape does not vary
      sharp = np.asarray(_invert_uniform(jnp.asarray(photos),
                                         jnp.asarray(np.where(chosen, blur, 0.0), jnp.float32),
                                         search, g))
      out = np.where(chosen[:, None, None, None], sharp, out)
  return out, {"blur": blur, "gain": gain, "gamma": np.asarray(gammas, np.float32)[pick],
               "tiles_agree": agree, "deblurred": deblurred}


CACHE_BYTES = 256 * 2 ** 20  # deblurred photos kept for repeated calls on the same photo


class Deblurrer:
  """The optics pre-pass of a loaded model: `deblur_with_depth` (photos with disparity) or
  `deblur_uniform` (photos without), searched for blurs of the model's training range, with a
  cache: each distinct photo (and disparity) is searched once; the most recently used results
  are kept up to CACHE_BYTES."""

  def __init__(self, data: ml_collections.ConfigDict, max_side: int, *, threshold: float,
               min_gain: float):
    self.data, self.max_side = data, int(max_side)
    self.threshold, self.min_gain = float(threshold), float(min_gain)
    self._cache: collections.OrderedDict[bytes, np.ndarray] = collections.OrderedDict()

  @property
  def settings(self) -> tuple:
    """All its results depend on besides the photos: Deblurrers with equal settings (the
    refocusers of several models trained on the same data, say) can share one."""
    d = self.data
    return (float(d.gamma), float(d.blur_range[1]), int(d.blur_reference_size), self.max_side,
            self.threshold, self.min_gain)

  def searches(self, height: int, width: int) -> bool:
    """Whether the camera of an H x W photo with disparity is searched: only where the photo
    fits the working size, so that the search sees the photo's own pixels."""
    return working_size(height, width, self.max_side) == (height, width)

  def search_for(self, search_hw: tuple[int, int]) -> CameraSearch:
    """The search at this size: blurs up to 1.2x the training range (`data`)."""
    d = self.data
    return CameraSearch(
        max_blur=max(1.0, 1.2 * blur_pixels(float(d.blur_range[1]), search_hw,
                                            int(d.blur_reference_size))),
        threshold=self.threshold, gamma=float(d.gamma))

  def uniform_search(self) -> UniformSearch:
    """The no-depth search with its evidence threshold."""
    return UniformSearch(min_gain=self.min_gain, gamma=float(self.data.gamma))

  def __call__(self, photos: np.ndarray, disparity: np.ndarray | None) -> np.ndarray:
    """Photos `[N, H, W, 3]` with disparity `[N, H, W]` (or None), deblurred where a camera
    (with disparity, photos that fit the working size) or one disk (without) explains them."""
    if disparity is not None and not self.searches(*photos.shape[1:3]):
      return np.asarray(photos)
    depth = [b"none"] * len(photos) if disparity is None else [d.tobytes() for d in disparity]
    keys = [hashlib.sha1(p.tobytes() + d + str(p.shape).encode()).digest()
            for p, d in zip(photos, depth)]
    todo = [i for i, k in enumerate(keys) if k not in self._cache]
    if todo and disparity is None:
      sharp, _ = deblur_uniform(photos[todo], self.uniform_search())
    elif todo:
      hw = tuple(photos.shape[1:3])
      sharp, _ = deblur_with_depth(photos[todo], disparity[todo], hw, self.search_for(hw))
    if todo:
      for i, image in zip(todo, sharp):
        self._cache[keys[i]] = image
    out = np.stack([self._cache[k] for k in keys])
    for k in keys:
      self._cache.move_to_end(k)
    while sum(v.nbytes for v in self._cache.values()) > CACHE_BYTES:
      self._cache.popitem(last=False)
    return out


__all__ = ["CameraSearch", "Deblurrer", "UniformSearch", "deblur_uniform", "deblur_with_depth"]
