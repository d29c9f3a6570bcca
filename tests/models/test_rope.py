"""2-D RoPE: attention scores depend only on relative grid offsets; rotations preserve norms."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax.models.rope import apply_rope, grid_positions, rope_tables


def _scores(positions, q, k):
  cos, sin = rope_tables(positions, q.shape[-1])
  qr, kr = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
  return jnp.einsum("blhd,bmhd->bhlm", qr, kr)


def test_scores_depend_only_on_relative_offsets():
  q, k = jax.random.normal(jax.random.key(0), (2, 1, 6, 2, 16))
  q = jnp.broadcast_to(q, (1, 6, 2, 16))
  k = jnp.broadcast_to(k, (1, 6, 2, 16))
  base = grid_positions(2, 3)
  shifted = base + jnp.array([5.0, -7.0])
  np.testing.assert_allclose(_scores(base, q, k), _scores(shifted, q, k), rtol=1e-4, atol=1e-4)
  swapped = base[:, ::-1]  # rows and columns use different channel halves
  assert not np.allclose(_scores(base, q, k), _scores(swapped, q, k), atol=1e-3)


def test_rotation_preserves_norm_and_is_identity_at_origin():
  x = jax.random.normal(jax.random.key(1), (2, 12, 3, 8))
  cos, sin = rope_tables(grid_positions(3, 4), 8)
  np.testing.assert_allclose(jnp.linalg.norm(apply_rope(x, cos, sin), axis=-1),
                             jnp.linalg.norm(x, axis=-1), rtol=1e-5)
  cos0, sin0 = rope_tables(jnp.zeros((12, 2)), 8)
  np.testing.assert_allclose(apply_rope(x, cos0, sin0), x)


def test_grid_positions_raster_order():
  pos = np.asarray(grid_positions(2, 3))
  np.testing.assert_array_equal(pos, [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]])


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="head_dim"):
    rope_tables(grid_positions(2, 2), 6)
  with pytest.raises(ValueError, match="positions"):
    rope_tables(jnp.zeros((4, 3)), 8)
  with pytest.raises(ValueError, match="height and width"):
    grid_positions(0, 3)
