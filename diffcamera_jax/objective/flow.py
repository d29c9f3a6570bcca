"""Rectified flow: timesteps, interpolation, velocity target and the Euler sampler.

Convention (docs/design.md, "Objective"): `x_t = (1 - t) x0 + t eps`, so t = 0 is data and t = 1
is noise; the velocity is `v = eps - x0` and `x0_hat = x_t - t v_hat` (a network predicting x0
instead gives `v_hat = (x_t - x0_hat) / t`, `objective.Objective.velocity`). Timesteps
are logit-normal and shifted towards noise for larger images, as in SD3/FLUX:
`t' = e^mu / (e^mu + 1/t - 1)` with `mu` linear in the number of target tokens (`shift_base` at
256 tokens, `shift_max` at 4096).
"""
from typing import Callable

import jax
import jax.numpy as jnp

BASE_TOKENS, MAX_TOKENS = 256, 4096


def resolution_shift(num_tokens: int, shift_base: float, shift_max: float) -> float:
  """The shift `mu` for a target of `num_tokens` tokens (FLUX's linear rule, extrapolated)."""
  if num_tokens <= 0:
    raise ValueError(f"resolution_shift: num_tokens must be positive, got {num_tokens}")
  slope = (shift_max - shift_base) / (MAX_TOKENS - BASE_TOKENS)
  return shift_base + slope * (num_tokens - BASE_TOKENS)


def shift_timesteps(t: jnp.ndarray, mu: float) -> jnp.ndarray:
  """`e^mu / (e^mu + 1/t - 1)`, written as a sigmoid so t = 0 and t = 1 are fixed points."""
  t = jnp.asarray(t, jnp.float32)
  return jnp.where((t <= 0) | (t >= 1), t,
                   jax.nn.sigmoid(mu + jnp.log(t) - jnp.log1p(-jnp.clip(t, 0.0, 1.0 - 1e-7))))


def sample_timesteps(rng: jax.Array, batch_size: int, mu: float, mean: float = 0.0,
                     std: float = 1.0) -> jnp.ndarray:
  """Training timesteps `[batch_size]` in (0, 1): `shift(sigmoid(N(mean, std^2)), mu)`."""
  logits = mean + std * jax.random.normal(rng, (batch_size,), jnp.float32)
  return jax.nn.sigmoid(logits + mu)  # == shift_timesteps(sigmoid(logits), mu)


def _expand(t: jnp.ndarray, like: jnp.ndarray) -> jnp.ndarray:
  return jnp.reshape(t, t.shape + (1,) * (like.ndim - t.ndim))


def interpolate(x0: jnp.ndarray, noise: jnp.ndarray, t: jnp.ndarray) -> jnp.ndarray:
  """`x_t = (1 - t) x0 + t noise`, t `[B]` broadcast over the remaining axes."""
  t = _expand(t, x0)
  return (1.0 - t) * x0 + t * noise


def velocity_target(x0: jnp.ndarray, noise: jnp.ndarray) -> jnp.ndarray:
  """`v = noise - x0`, the time derivative of `x_t`."""
  return noise - x0


def denoised_estimate(x_t: jnp.ndarray, t: jnp.ndarray, v_hat: jnp.ndarray) -> jnp.ndarray:
  """`x0_hat = x_t - t v_hat`."""
  return x_t - _expand(t, x_t) * v_hat


def euler_sample(velocity_fn: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray],
                 noise: jnp.ndarray, num_steps, mu: float) -> jnp.ndarray:
  """Integrates `dx/dt = v(x, t)` from t = 1 (`noise`) to t = 0 in `num_steps` Euler steps.

  The grid is uniform in t before the resolution shift `mu`. `num_steps` may be a traced integer
  (a `fori_loop` with dynamic bounds), so one compiled sampler serves every step count.
  `velocity_fn(x, t)` takes `t` as `[B]`.
  """
  batch = noise.shape[0]
  n = jnp.asarray(num_steps, jnp.int32)

  def step(i, x):
    t_now = shift_timesteps(1.0 - i / n, mu)
    t_next = shift_timesteps(1.0 - (i + 1) / n, mu)
    v = velocity_fn(x, jnp.full((batch,), t_now, jnp.float32))
    return x + (t_next - t_now) * v

  return jax.lax.fori_loop(0, n, step, noise)
