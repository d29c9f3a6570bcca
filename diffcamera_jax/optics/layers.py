"""The static layer plan: which signed-CoC bins exist and at which pyramid level each is blurred.

A layer with CoC radius ``r`` is blurred at a resolution reduced by ``f = 2**level`` such that the
reduced radius ``r / f`` lies in ``(FINE_RADIUS / 2, FINE_RADIUS]``: the cost of a layer's blur then
does not grow with ``r``, while the kernel keeps enough samples (> 4 px radius) for the
resampling error to stay small (see docs/optics.md). Level 0 (full resolution) holds the in-focus
layer (``|s| < IN_FOCUS``, rendered unblurred: its coverage kernel is a single pixel) and the bins
up to ``FINE_RADIUS``.
"""
from __future__ import annotations

import dataclasses
import functools
import math

IN_FOCUS = 0.5  # |s| below this: the aperture covers only the source pixel
FINE_RADIUS = 8.0  # the largest radius blurred at full resolution
# |s| bins at full resolution; below 1.375 and 2.375 every aperture's coverage kernel fits in 3x3
# and 5x5 pixels (`aperture.support_size`), so those bins are blurred by direct sums of taps.
LEVEL0_EDGES = (IN_FOCUS, 1.375, 2.375, 4.5, FINE_RADIUS)
BINS_PER_OCTAVE = 2  # |s| bins per coarser level


@dataclasses.dataclass(frozen=True)
class Level:
  """Bins blurred at resolution ``1 / 2**index``; ``edges`` are the |s| bin edges (ascending)."""

  index: int
  edges: tuple[float, ...]

  @property
  def factor(self) -> int:
    return 2 ** self.index

  @property
  def num_bins(self) -> int:
    return len(self.edges) - 1


@functools.lru_cache(maxsize=None)
def plan(max_radius: float) -> tuple[Level, ...]:
  """Levels (fine to coarse) whose |s| bins tile ``[IN_FOCUS, max_radius]``; empty if none needed.

  The outermost edge is nudged past ``max_radius`` so that CoCs clipped to it fall inside.
  """
  if not max_radius > 0:
    raise ValueError(f"max_radius must be positive, got {max_radius}")
  top = max_radius * (1 + 1e-6) + 1e-6
  edges = [e for e in _canonical_edges(top) if e < max_radius * (1 - 1e-6)] + [top]
  if len(edges) < 2:
    return ()
  by_level: dict[int, list[tuple[float, float]]] = {}
  for lo, hi in zip(edges[:-1], edges[1:]):
    by_level.setdefault(_level_of(lo), []).append((lo, hi))
  return tuple(
      Level(index, tuple(lo for lo, _ in bins) + (bins[-1][1],))
      for index, bins in sorted(by_level.items()))


def _canonical_edges(top: float) -> list[float]:
  edges, step = list(LEVEL0_EDGES), 1
  while edges[-1] < top:
    edges.append(FINE_RADIUS * 2 ** (step / BINS_PER_OCTAVE))
    step += 1
  return edges


def _level_of(lo: float) -> int:
  if lo < FINE_RADIUS * (1 - 1e-6):
    return 0
  return int(math.floor(math.log2(lo / FINE_RADIUS) + 1e-6)) + 1


def padded_size(size: int, levels: tuple[Level, ...]) -> int:
  """``size`` rounded up to a multiple of the coarsest level's factor."""
  factor = levels[-1].factor if levels else 1
  return int(math.ceil(size / factor) * factor)
