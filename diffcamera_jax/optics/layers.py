"""The static layer plan: the signed-CoC bins the renderer splits a scene into.

Pixels with ``|s| < IN_FOCUS`` form the in-focus layer (rendered unblurred: the aperture covers only
the source pixel). The blurred bins' ``|s|`` edges are ``LEVEL0_EDGES`` up to ``FINE_RADIUS``, then
``BINS_PER_OCTAVE`` per doubling of the radius. Each sign of ``s`` gets its own bins. Every bin is
blurred at full resolution with the exact aperture kernel of its pixels' mean ``|s|``, so the bins
only decide which depths share a kernel (and do not occlude each other).
"""
from __future__ import annotations

import functools

IN_FOCUS = 0.5  # |s| below this: the aperture covers only the source pixel
FINE_RADIUS = 8.0  # beyond this radius the bins are spaced geometrically
# |s| edges up to FINE_RADIUS; below 1.375 and 2.375 every aperture's coverage kernel fits in 3x3
# and 5x5 pixels (`aperture.support_size`), so those bins are blurred by direct sums of taps.
LEVEL0_EDGES = (IN_FOCUS, 1.375, 2.375, 4.5, FINE_RADIUS)
BINS_PER_OCTAVE = 2  # |s| bins per doubling beyond FINE_RADIUS


@functools.lru_cache(maxsize=None)
def edges(max_radius: float) -> tuple[float, ...]:
  """Ascending ``|s|`` bin edges from ``IN_FOCUS`` past ``max_radius``; empty if no blur is needed.

  The outermost edge is nudged past ``max_radius`` so that CoCs clipped to it fall inside.
  """
  if not max_radius > 0:
    raise ValueError(f"max_radius must be positive, got {max_radius}")
  top = max_radius * (1 + 1e-6) + 1e-6
  out = [e for e in _canonical_edges(top) if e < max_radius * (1 - 1e-6)] + [top]
  return tuple(out) if len(out) >= 2 else ()


def _canonical_edges(top: float) -> list[float]:
  out, step = list(LEVEL0_EDGES), 1
  while out[-1] < top:
    out.append(FINE_RADIUS * 2 ** (step / BINS_PER_OCTAVE))
    step += 1
  return out
