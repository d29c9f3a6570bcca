"""Moving between a photo's size and the model's working size: scale, resample, pad."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def working_size(height: int, width: int, max_side: int) -> tuple[int, int]:
  """The photo's size scaled so that its longer side is at most `max_side` (never enlarged)."""
  scale = min(1.0, max_side / max(height, width))
  return max(1, round(height * scale)), max(1, round(width * scale))


@functools.lru_cache(maxsize=64)
def _resizer(shape: tuple[int, ...], method: str):
  return jax.jit(lambda x: jax.image.resize(x, shape, method, antialias=method != "nearest"))


def downscale(x: np.ndarray, hw: tuple[int, int], method: str = "linear") -> np.ndarray:
  """`[N, H, W, ...]` -> `[N, h, w, ...]`, antialiased (the model's input; `nearest` for depth)."""
  shape = (x.shape[0], *hw, *x.shape[3:])
  if tuple(x.shape) == shape:
    return np.asarray(x)
  return np.asarray(_resizer(shape, method)(jnp.asarray(x, jnp.float32)))


def upscale(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  """`[N, h, w, ...]` -> `[N, H, W, ...]` by cubic interpolation."""
  shape = (x.shape[0], *hw, *x.shape[3:])
  if tuple(x.shape) == shape:
    return np.asarray(x)
  return np.asarray(_resizer(shape, "cubic")(jnp.asarray(x, jnp.float32)))


def pad_to(x: np.ndarray, multiple: int) -> np.ndarray:
  """Pads axes 1, 2 (H, W) at the bottom/right to a multiple (reflect where it fits, else edge)."""
  h, w = x.shape[1:3]
  ph, pw = -h % multiple, -w % multiple
  pad = [(0, 0), (0, ph), (0, pw)] + [(0, 0)] * (x.ndim - 3)
  mode = "reflect" if ph < h and pw < w else "edge"
  return np.pad(x, pad, mode=mode)


__all__ = ["downscale", "pad_to", "upscale", "working_size"]
