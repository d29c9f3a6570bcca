"""Inaccurate depth maps for training: each kind does what it says, the fraction replaced follows
the probability, the maps stay in [0, 1], and the draw is a pure function of the key."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax.objective import depth_errors


def _layered(b=8, h=32, w=40, seed=0):
  """Maps of a few constant layers (the procedural scenes' kind), sharp edges."""
  rs = np.random.RandomState(seed)
  out = np.full((b, h, w), 0.2, np.float32)
  for i in range(b):
    for _ in range(3):
      y, x = rs.randint(0, h - 8), rs.randint(0, w - 8)
      out[i, y:y + rs.randint(6, h - y + 1), x:x + rs.randint(6, w - x + 1)] = rs.uniform(0.3, 1)
  return jnp.asarray(out)


def test_probability_zero_keeps_every_map_and_one_replaces_every_map():
  d = _layered()
  kept, flags = depth_errors.corrupt(jax.random.key(0), d, 0.0)
  np.testing.assert_array_equal(np.asarray(kept), np.asarray(d))
  assert not np.asarray(flags).any()
  wrong, flags = depth_errors.corrupt(jax.random.key(0), d, 1.0)
  assert np.asarray(flags).all()
  changed = np.abs(np.asarray(wrong) - np.asarray(d)).max(axis=(1, 2))
  assert (changed > 1e-3).all(), changed
  assert float(wrong.min()) >= 0.0 and float(wrong.max()) <= 1.0 and wrong.shape == d.shape


def test_the_draw_is_a_function_of_the_key_and_the_fraction_follows_the_probability():
  d = _layered(b=64)
  a, fa = depth_errors.corrupt(jax.random.key(3), d, 0.5)
  b, fb = depth_errors.corrupt(jax.random.key(3), d, 0.5)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  np.testing.assert_array_equal(np.asarray(fa), np.asarray(fb))
  assert 16 <= int(np.asarray(fa).sum()) <= 48
  untouched = ~np.asarray(fa)
  np.testing.assert_array_equal(np.asarray(a)[untouched], np.asarray(d)[untouched])


def test_each_kind():
  d = _layered()
  key = jax.random.key(1)
  grad = lambda x: float(jnp.square(jnp.diff(x, axis=-1)).mean())  # edge energy
  blurred = depth_errors._blur(key, d)
  assert grad(blurred) < 0.5 * grad(d)
  np.testing.assert_allclose(np.asarray(blurred).mean(), np.asarray(d).mean(), atol=0.02)
  warped = np.asarray(depth_errors._warp(key, d))
  order = lambda x: np.argsort(x.reshape(-1), kind="stable")
  for i in range(d.shape[0]):  # monotone: the order of the disparities is kept
    ranks_in = np.asarray(d[i]).reshape(-1)[order(warped[i])]
    assert (np.diff(ranks_in) >= -1e-6).all()
  noisy = np.asarray(depth_errors._noise(key, d))
  for i in range(d.shape[0]):  # quantised to one of the level counts
    assert any(np.allclose(noisy[i] * (n - 1), np.round(noisy[i] * (n - 1)), atol=1e-4)
               for n in depth_errors.NOISE_LEVELS)
  cells = np.asarray(depth_errors._cell_means(d, 8))  # 40 // 8 = 5-pixel cells
  assert np.allclose(cells[:, :5, :5], cells[:, :1, :1])
  np.testing.assert_allclose(cells[:, :5, :5].mean(axis=(1, 2)),
                             np.asarray(d)[:, :5, :5].mean(axis=(1, 2)), atol=1e-6)
  holes = np.asarray(depth_errors._holes(key, d))
  zeroed = (holes == 0) & (np.asarray(d) > 0)
  assert zeroed.any(axis=(1, 2)).all()
  np.testing.assert_array_equal(holes[~zeroed], np.asarray(d)[~zeroed])


def test_a_map_that_is_not_b_h_w_is_rejected():
  with pytest.raises(ValueError, match=r"\[B, H, W\]"):
    depth_errors.corrupt(jax.random.key(0), jnp.zeros((4, 4)), 0.5)
