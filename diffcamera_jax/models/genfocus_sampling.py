"""Genfocus's sampler and tiling: FLUX.1-dev's shifted flow-matching Euler schedule, and
overlapping 32 x 32-token tiles blended with Gaussian weights (see docs/genfocus.md)."""
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffcamera_jax.models.flux_diffcamera import image_ids

TILE_TOKENS = 32  # tile side in packed tokens (512 pixels)
MIN_TILED_SIDE = 512  # pixels: their scripts never tile an image with a shorter side
# FLUX.1-dev's FlowMatchEulerDiscreteScheduler (dynamic, exponential shift).
BASE_SEQ_LEN, MAX_SEQ_LEN, BASE_SHIFT, MAX_SHIFT = 256, 4096, 0.5, 1.15
NUM_TRAIN_TIMESTEPS = 1000

# ----------------------------------------------------------------------------- sampler


def calculate_shift(image_tokens: int) -> float:
  """FLUX.1-dev's `mu`: linear in the number of image tokens (0.5 at 256, 1.15 at 4096)."""
  m = (MAX_SHIFT - BASE_SHIFT) / (MAX_SEQ_LEN - BASE_SEQ_LEN)
  return image_tokens * m + (BASE_SHIFT - m * BASE_SEQ_LEN)


def sigma_schedule(num_steps: int, image_tokens: int) -> tuple[np.ndarray, np.ndarray]:
  """(sigmas `[num_steps + 1]` ending at 0, model timesteps `[num_steps]` in [0, 1]), float32.

  `linspace(1, 1/N, N)` shifted by `e^mu / (e^mu + 1/s - 1)`, computed in float32 like diffusers'
  scheduler; the model sees `(1000 s) / 1000` as Genfocus passes it.
  """
  if num_steps < 1:
    raise ValueError(f"sigma_schedule: num_steps must be >= 1, got {num_steps}")
  s = np.linspace(1.0, 1 / num_steps, num_steps).astype(np.float32)
  e = math.exp(calculate_shift(image_tokens))
  s = (e / (e + (1 / s - 1) ** 1.0)).astype(np.float32)
  t = (s * np.float32(NUM_TRAIN_TIMESTEPS)).astype(np.float32) / np.float32(NUM_TRAIN_TIMESTEPS)
  return np.append(s, np.float32(0.0)).astype(np.float32), t.astype(np.float32)


def euler_sample(velocity_fn: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray],
                 noise: jnp.ndarray, sigmas: np.ndarray, timesteps: np.ndarray) -> jnp.ndarray:
  """`x <- x + (s_{i+1} - s_i) v(x, t_i)` from `noise` over the schedule (one traced step)."""
  def step(x, i):
    v = velocity_fn(x, jnp.asarray(timesteps)[i])
    return (x.astype(jnp.float32) + (jnp.asarray(sigmas)[i + 1] - jnp.asarray(sigmas)[i])
            * v.astype(jnp.float32)), None

  return jax.lax.scan(step, noise.astype(jnp.float32), jnp.arange(len(timesteps)))[0]


# ----------------------------------------------------------------------------- tiling


def use_tiling(image_hw: tuple[int, int], tile: int = TILE_TOKENS) -> bool:
  """Whether Genfocus's scripts tile an `image_hw` photo: short side >= 512 pixels (and, at the
  FLUX VAE's 16 pixels per token, at least one tile's worth of tokens)."""
  grid_h, grid_w = image_hw[0] // 16, image_hw[1] // 16
  return min(image_hw) >= MIN_TILED_SIDE and grid_h * grid_w >= tile * tile


def tile_origins(grid_h: int, grid_w: int, tile: int = TILE_TOKENS) -> list[tuple[int, int]]:
  """(row, col) token origins of the tiles, in Genfocus's order: stride `tile - tile/8`, the last
  tile flush with the far edge."""
  if grid_h < tile or grid_w < tile:
    raise ValueError(f"tile_origins: grid {grid_h}x{grid_w} is smaller than a {tile}-token tile")
  stride = tile - tile // 8

  def axis(n):
    starts = list(range(0, max(1, n - tile + 1), stride))
    return starts + [n - tile] if starts[-1] + tile < n else starts

  rows, cols = np.meshgrid(axis(grid_h), axis(grid_w))  # 'xy': columns outer, rows inner
  return list(zip(rows.ravel().tolist(), cols.ravel().tolist()))


def tile_weights(tile: int = TILE_TOKENS) -> np.ndarray:
  """Blend weights `[tile·tile]`: `exp(-(u² + v²))` over u, v in linspace(-2, 2, tile)."""
  d = np.linspace(-2.0, 2.0, tile, dtype=np.float32)
  return np.exp(-(d[:, None] ** 2 + d[None] ** 2)).reshape(-1).astype(np.float32)


def tiled_velocity(velocity_fn: Callable, img: jnp.ndarray, conditions: Sequence[jnp.ndarray],
                   grid_hw: tuple[int, int], tile: int = TILE_TOKENS) -> jnp.ndarray:
  """Velocity of all image tokens from overlapping tiles, Genfocus's tiled denoising.

  Each tile takes the same token window of the image and of every condition, with the position
  ids of a tile at the origin (`image_ids(2 tile, 2 tile)`, condition offsets dropped), and calls
  `velocity_fn(img_tile, cond_tiles, ids)`; predictions are averaged with `tile_weights`.
  """
  grid_h, grid_w = grid_hw
  origins = tile_origins(grid_h, grid_w, tile)
  index = np.arange(grid_h * grid_w).reshape(grid_h, grid_w)
  tiles = jnp.asarray(np.stack([index[r:r + tile, c:c + tile].reshape(-1) for r, c in origins]))
  weights = jnp.asarray(tile_weights(tile))
  ids = image_ids(2 * tile, 2 * tile)

  window = lambda idx: velocity_fn(img[:, idx], [c[:, idx] for c in conditions], ids)

  def one(carry, idx):
    acc, total = carry
    v = window(idx).astype(jnp.float32)
    return (acc.at[:, idx].add(v * weights[None, :, None]), total.at[idx].add(weights)), None

  channels = jax.eval_shape(window, tiles[0]).shape[-1]
  acc = jnp.zeros((*img.shape[:2], channels), jnp.float32)
  (acc, total), _ = jax.lax.scan(one, (acc, jnp.zeros(img.shape[1], jnp.float32)), tiles)
  return acc / total[None, :, None]
