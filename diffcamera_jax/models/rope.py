"""2-D rotary position embeddings (RoPE) for token grids of any size and aspect ratio.

Half of each head's channels rotate with the token's row, the other half with its column. The
reference, depth and target grids are spatially aligned and share positions, so attention between
them depends only on their relative offset; a model trained at one resolution runs at any other.
"""
import jax.numpy as jnp


def grid_positions(height: int, width: int) -> jnp.ndarray:
  """(row, col) patch positions of an `height x width` grid in raster order: `[height*width, 2]`."""
  if height <= 0 or width <= 0:
    raise ValueError(f"grid_positions: height and width must be positive, got {height}x{width}")
  rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
  return jnp.stack([rows.reshape(-1), cols.reshape(-1)], axis=-1).astype(jnp.float32)


def rope_tables(positions: jnp.ndarray, head_dim: int,
                theta: float = 10_000.0) -> tuple[jnp.ndarray, jnp.ndarray]:
  """cos/sin tables `[L, head_dim // 2]` for 2-D positions `[L, 2]`.

  The first `head_dim // 4` rotation frequencies use the row, the rest the column.
  """
  if head_dim % 4:
    raise ValueError(f"rope_tables: head_dim must be a multiple of 4, got {head_dim}")
  if positions.ndim != 2 or positions.shape[-1] != 2:
    raise ValueError(f"rope_tables: positions must be [L, 2], got {positions.shape}")
  quarter = head_dim // 4
  freqs = theta ** (-jnp.arange(quarter, dtype=jnp.float32) / quarter)
  angles = jnp.concatenate(
      [positions[:, :1] * freqs, positions[:, 1:] * freqs], axis=-1)
  return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jnp.ndarray, cos: jnp.ndarray, sin: jnp.ndarray) -> jnp.ndarray:
  """Rotates `x` `[B, L, heads, head_dim]` by the tables `[L, head_dim // 2]` (split-half pairs)."""
  half = x.shape[-1] // 2
  x1, x2 = x[..., :half], x[..., half:]
  cos = cos[:, None, :].astype(x.dtype)
  sin = sin[:, None, :].astype(x.dtype)
  return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
