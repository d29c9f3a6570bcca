"""Flow and stacking losses: exact values, mask pooling, oracle ~0 and wrong mask not."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax.objective.losses import flow_loss, log_error, pool_mask, stack_blend, stacking_loss


def _scene(seed=0, b=2, h=8, w=8, c=3):
  rs = np.random.RandomState(seed)
  first, second = rs.normal(size=(2, b, h, w, c)).astype(np.float32)
  mask = (rs.uniform(size=(b, h, w)) > 0.5).astype(np.float32)
  multifocus = mask[..., None] * first + (1 - mask[..., None]) * second
  return first, second, mask, multifocus


def test_flow_loss_is_the_mean_squared_error():
  a, b, _, _ = _scene()
  np.testing.assert_allclose(flow_loss(a, b), np.mean((a - b) ** 2), rtol=1e-6)
  with pytest.raises(ValueError, match="v_hat"):
    flow_loss(a, b[..., :2])


def test_log_flow_loss_weighs_each_example_by_its_own_error():
  target = jnp.zeros((2, 4, 4, 3))
  errors = jnp.asarray([1e-1, 1e-3])  # per-example RMS: a badly and a nearly right example
  pred = target + errors[:, None, None, None]
  np.testing.assert_allclose(float(flow_loss(pred, target, mse_floor=1e-6, typical_mse=4e-3)),
                             4e-3 * float(jnp.mean(jnp.log(errors ** 2 + 1e-6))), rtol=1e-6)
  np.testing.assert_allclose(float(log_error(errors ** 2, 1e-6, 4e-3)),
                             float(flow_loss(pred, target, mse_floor=1e-6, typical_mse=4e-3)))
  # The gradient per unit of squared error is `typical / (MSE_i + floor)`: the nearly right example
  # pulls ~5000x harder than under plain MSE relative to the bad one, where the two are equal.
  per_unit = jax.grad(lambda m: log_error(m, 1e-6, 4e-3))(errors ** 2)
  plain = jax.grad(lambda m: jnp.mean(m))(errors ** 2)
  np.testing.assert_allclose(per_unit / plain, 4e-3 / (errors ** 2 + 1e-6), rtol=1e-5)
  assert per_unit[1] / per_unit[0] > 4000


def test_pool_mask_averages_blocks():
  mask = jnp.array([[[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]], jnp.float32)
  np.testing.assert_allclose(pool_mask(mask, (2, 2))[0], [[0.75, 0.0], [0.0, 1.0]])
  np.testing.assert_array_equal(pool_mask(mask, (4, 4)), mask)
  with pytest.raises(ValueError, match="latent"):
    pool_mask(mask, (3, 3))


def test_oracle_estimates_give_zero_and_a_wrong_mask_does_not():
  first, second, mask, multifocus = _scene()
  assert float(stacking_loss(first, second, mask, multifocus)) < 1e-12
  assert float(stacking_loss(first, second, 1 - mask, multifocus)) > 0.5
  assert float(stacking_loss(second, first, mask, multifocus)) > 0.5  # swapped pair


def test_stacking_loss_value_with_latent_pooling():
  first, second, _, _ = _scene(1, h=4, w=4)
  mask = (np.random.RandomState(2).uniform(size=(2, 8, 8)) > 0.5).astype(np.float32)
  target = np.random.RandomState(3).normal(size=first.shape).astype(np.float32)
  m = mask.reshape(2, 4, 2, 4, 2).mean(axis=(2, 4))[..., None]
  want = np.mean((m * first + (1 - m) * second - target) ** 2)
  np.testing.assert_allclose(stacking_loss(first, second, mask, target), want, rtol=1e-5)
  np.testing.assert_allclose(stack_blend(first, second, jnp.asarray(m[..., 0])),
                             m * first + (1 - m) * second, rtol=1e-6)


def test_stacking_loss_gradient_reaches_both_estimates():
  first, second, mask, multifocus = _scene()
  g1, g2 = jax.grad(stacking_loss, argnums=(0, 1))(first + 0.1, second + 0.1, mask, multifocus)
  m = mask[..., None]
  np.testing.assert_allclose(np.asarray(g1) == 0, np.broadcast_to(m == 0, g1.shape))
  np.testing.assert_allclose(np.asarray(g2) == 0, np.broadcast_to(m == 1, g2.shape))


def test_shape_errors():
  first, second, mask, multifocus = _scene()
  with pytest.raises(ValueError, match="multifocus_latent"):
    stacking_loss(first, second, mask, multifocus[..., :2])
  with pytest.raises(ValueError, match="mask"):
    stacking_loss(first, second, mask[:1], multifocus)
