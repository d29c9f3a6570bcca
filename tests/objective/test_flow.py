"""Rectified flow: interpolation path, velocity, shift, timestep distribution, Euler sampler."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax.objective import flow


def _pair(seed=0, shape=(3, 4, 4, 2)):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return jax.random.normal(k1, shape), jax.random.normal(k2, shape)


def test_path_endpoints_velocity_and_denoised_estimate():
  x0, eps = _pair()
  t = jnp.array([0.0, 0.3, 1.0])
  x_t = flow.interpolate(x0, eps, t)
  np.testing.assert_allclose(x_t[0], x0[0])
  np.testing.assert_allclose(x_t[2], eps[2])
  # v is d x_t / dt.
  v_fd = (flow.interpolate(x0, eps, t + 1e-3) - flow.interpolate(x0, eps, t - 1e-3)) / 2e-3
  np.testing.assert_allclose(flow.velocity_target(x0, eps), v_fd, rtol=1e-2, atol=1e-2)
  # The true velocity recovers the data exactly.
  np.testing.assert_allclose(flow.denoised_estimate(x_t, t, flow.velocity_target(x0, eps)), x0,
                             atol=1e-5)


def test_resolution_shift_matches_flux_rule():
  assert flow.resolution_shift(256, 0.5, 1.15) == pytest.approx(0.5)
  assert flow.resolution_shift(4096, 0.5, 1.15) == pytest.approx(1.15)
  assert flow.resolution_shift(1024, 0.5, 1.15) == pytest.approx(0.5 + 0.65 * 768 / 3840)
  with pytest.raises(ValueError, match="num_tokens"):
    flow.resolution_shift(0, 0.5, 1.15)


def test_shift_fixes_endpoints_and_moves_towards_noise():
  t = jnp.linspace(0, 1, 11)
  shifted = flow.shift_timesteps(t, 0.7)
  np.testing.assert_allclose(shifted[jnp.array([0, -1])], [0.0, 1.0])
  assert bool(jnp.all(shifted[1:-1] > t[1:-1])) and bool(jnp.all(jnp.diff(shifted) > 0))
  np.testing.assert_allclose(flow.shift_timesteps(t, 0.0), t, atol=1e-6)
  mid = np.exp(0.7) / (np.exp(0.7) + 1 / 0.3 - 1)
  np.testing.assert_allclose(flow.shift_timesteps(jnp.array([0.3]), 0.7), [mid], rtol=1e-5)


def test_timesteps_are_shifted_logit_normal():
  t = flow.sample_timesteps(jax.random.key(0), 20_000, mu=0.5, mean=-0.2, std=0.8)
  logits = np.log(t) - np.log1p(-t)
  assert float(t.min()) > 0 and float(t.max()) < 1
  np.testing.assert_allclose(logits.mean(), -0.2 + 0.5, atol=0.03)
  np.testing.assert_allclose(logits.std(), 0.8, atol=0.03)


def test_euler_is_exact_on_straight_paths_for_any_step_count():
  x0, eps = _pair(1)
  velocity = lambda x, t: eps - x0  # the straight-line flow from x0 to eps
  sample = jax.jit(lambda n: flow.euler_sample(velocity, eps, n, mu=0.6))
  for n in (1, 3, 7):
    np.testing.assert_allclose(sample(n), x0, atol=1e-5)


def test_euler_visits_the_shifted_grid():
  seen = []
  velocity = lambda x, t: (jax.debug.callback(lambda v: seen.append(float(v[0])), t), x * 0)[1]
  flow.euler_sample(velocity, jnp.zeros((1, 2)), 4, mu=0.5)
  expected = flow.shift_timesteps(1.0 - jnp.arange(4) / 4, 0.5)
  np.testing.assert_allclose(seen, expected, rtol=1e-6)
