"""Inaccurate depth for evaluation: the kinds of error real disparity maps carry.

Depth dropout trains the model to refocus without a depth map; the question it leaves is how the
model and the classical renderer fare with a map that is there but wrong. Each corruption is a
pure function of one disparity map `[H, W]` in [0, 1] and a seed, deterministic per map, so every
method scored on a scene sees the same corrupted map. Scoring still uses the true depth (the focus
accuracy's in-focus region, the ground-truth renders); only what the methods are given changes.

Kinds (sizes relative to the map's longer side, so they mean the same at any resolution):
- `blur`: Gaussian blur, sigma 4 % of the side (edges of a stereo or monocular estimate).
- `warp`: the monotone warp `d**2` (order kept, scale and spacing wrong).
- `noise`: Gaussian noise, sigma 0.05, then quantised to 16 levels (a cheap sensor).
- `coarse`: averaged over 1/8-of-the-side cells and enlarged by nearest neighbour.
- `holes`: four rectangles of 10-25 % of each side set to 0 (missing returns read as far).
"""
from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np

BLUR_SIGMA = 0.04
NOISE_SIGMA, NOISE_LEVELS = 0.05, 16
COARSE_CELLS = 8
NUM_HOLES, HOLE_SIZE = 4, (0.10, 0.25)


def _gaussian_blur(d: np.ndarray, sigma: float) -> np.ndarray:
  """Separable Gaussian blur with mirrored edges."""
  radius = max(1, int(np.ceil(3 * sigma)))
  x = np.arange(-radius, radius + 1, dtype=np.float64)
  kernel = np.exp(-0.5 * (x / sigma) ** 2)
  kernel /= kernel.sum()
  out = np.pad(d.astype(np.float64), radius, mode="reflect")
  out = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="valid"), 1, out)
  out = np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="valid"), 0, out)
  return out


def blur(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  del rng
  return _gaussian_blur(d, max(0.5, BLUR_SIGMA * max(d.shape)))


def warp(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  del rng
  return np.square(d)


def noise(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  noisy = np.clip(d + NOISE_SIGMA * rng.standard_normal(d.shape), 0.0, 1.0)
  return np.round(noisy * (NOISE_LEVELS - 1)) / (NOISE_LEVELS - 1)


def coarse(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  del rng
  h, w = d.shape
  cell = max(1, max(h, w) // COARSE_CELLS)
  rows, cols = np.arange(h) // cell, np.arange(w) // cell
  sums = np.zeros((rows[-1] + 1, cols[-1] + 1))
  counts = np.zeros_like(sums)
  np.add.at(sums, (rows[:, None], cols[None, :]), d)
  np.add.at(counts, (rows[:, None], cols[None, :]), 1.0)
  return (sums / counts)[rows[:, None], cols[None, :]]


def holes(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  h, w = d.shape
  out = d.copy()
  for _ in range(NUM_HOLES):
    hh = max(1, int(round(rng.uniform(*HOLE_SIZE) * h)))
    ww = max(1, int(round(rng.uniform(*HOLE_SIZE) * w)))
    top, left = rng.integers(0, h - hh + 1), rng.integers(0, w - ww + 1)
    out[top:top + hh, left:left + ww] = 0.0
  return out


CORRUPTIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "blur": blur, "warp": warp, "noise": noise, "coarse": coarse, "holes": holes}


def parse_kinds(text: str) -> tuple[str, ...]:
  """`"blur,warp"` -> ("blur", "warp"); `"all"` -> every kind. A bad list: ValueError naming it."""
  kinds = tuple(k.strip() for k in text.split(",") if k.strip())
  if kinds == ("all",):
    return tuple(CORRUPTIONS)
  unknown = [k for k in kinds if k not in CORRUPTIONS]
  if unknown or not kinds:
    raise ValueError(f"--depth-corruption {text!r}: expected 'all' or a comma-separated list of "
                     f"{sorted(CORRUPTIONS)}")
  if len(set(kinds)) != len(kinds):
    raise ValueError(f"--depth-corruption {text!r}: a kind is named twice")
  return kinds


def corrupt(disparity: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
  """`kind` applied to each map of `disparity` `[B, H, W]` (or one `[H, W]`), float32 in [0, 1].

  The randomness of each map is seeded by its content, the kind and `seed`: the same scene gets
  the same corrupted map whichever method asks and in whichever batch it comes."""
  if kind not in CORRUPTIONS:
    raise ValueError(f"unknown depth corruption {kind!r}; expected one of {sorted(CORRUPTIONS)}")
  d = np.asarray(disparity, np.float32)
  single = d.ndim == 2
  maps = d[None] if single else d
  out = []
  for m in maps:
    digest = hashlib.blake2b(np.ascontiguousarray(m).tobytes() + kind.encode(), digest_size=8)
    rng = np.random.default_rng([seed, int.from_bytes(digest.digest(), "little")])
    out.append(np.clip(CORRUPTIONS[kind](m, rng), 0.0, 1.0).astype(np.float32))
  out = np.stack(out)
  return out[0] if single else out


def wrap(method: Callable, kind: str, seed: int = 0) -> Callable:
  """A benchmark method that is handed the `kind`-corrupted map instead of the true one."""
  return lambda reference, disparity, focus, blur_k: method(
      reference, corrupt(disparity, kind, seed), focus, blur_k)
