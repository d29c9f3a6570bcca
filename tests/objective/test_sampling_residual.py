"""The residual parameterisation (`config.objective.residual`): the flow's data end is
`enc(target) - enc(reference)`, in the losses and in the sampler."""
import jax
import jax.numpy as jnp
import numpy as np

from diffcamera_jax.models.latents import LatentCodec
from diffcamera_jax.inference.sampler import make_sampler
from diffcamera_jax.objective.objective import pair as _pair
from diffcamera_jax.testing.batches import random_batch, tiny_config
from diffcamera_jax.testing.objective_calls import refocus_losses


def _codec():
  return LatentCodec(params=None)


def _oracle_metrics(batch, codec, config, subtract_reference):
  """refocus_losses with a model predicting the exact velocity towards `x0` (with or without
  the reference subtracted)."""
  x0 = codec.encode(_pair(batch["target"], batch["target_2"]))
  if subtract_reference:
    ref = codec.encode(batch["reference"])
    x0 = x0 - _pair(ref, ref)

  def apply_fn(variables, x_t, t, reference, disparity, camera, keep, train, rngs):
    return (x_t - x0) / t[:, None, None, None]

  _, metrics = refocus_losses(apply_fn, None, codec, batch, jax.random.key(0), config, 4)
  return metrics


def test_residual_losses_are_zero_for_the_residual_oracle_only():
  config = tiny_config()
  config.objective.prior = "none"  # the residual anchored at the reference
  config.objective.residual = True
  config.objective.prediction = "velocity"
  batch = jax.tree.map(jnp.asarray, random_batch(0, 4, (16, 16)))
  codec = _codec()
  good = _oracle_metrics(batch, codec, config, subtract_reference=True)
  assert float(good["flow_loss"]) < 1e-8 and float(good["stack_loss"]) < 1e-8
  bad = _oracle_metrics(batch, codec, config, subtract_reference=False)
  assert float(bad["flow_loss"]) > 0.01 and float(bad["stack_loss"]) > 0.01
  config.objective.residual = False
  plain = _oracle_metrics(batch, codec, config, subtract_reference=False)
  assert float(plain["flow_loss"]) < 1e-8 and float(plain["stack_loss"]) < 1e-8


class _ZeroChangeModel:
  """Predicts the velocity whose flow ends at x0 = 0 (`v = x_t / t`)."""
  patch_size = 4

  def apply(self, variables, x, t, reference, disparity, camera, keep, train):
    return x / t[:, None, None, None]


def test_residual_sampler_adds_the_reference_back():
  config = tiny_config()
  config.objective.prior = "none"  # the residual anchored at the reference
  codec = _codec()
  image = np.random.RandomState(0).uniform(0.1, 0.9, (16, 16, 3)).astype(np.float32)
  camera = jnp.zeros((2, 6), jnp.float32)
  config.objective.prediction = "velocity"
  config.objective.residual = True
  out = make_sampler(_ZeroChangeModel(), codec, config)(None, image, None, camera,
                                                        jax.random.key(1), num_steps=3)
  np.testing.assert_allclose(out, np.broadcast_to(image, out.shape), atol=1e-5)
  config.objective.residual = False
  out = make_sampler(_ZeroChangeModel(), codec, config)(None, image, None, camera,
                                                        jax.random.key(1), num_steps=3)
  np.testing.assert_allclose(out, 0.5, atol=1e-5)  # x0 = 0 decodes to mid-grey


def test_x0_prediction_oracle_zeroes_the_losses():
  config = tiny_config()
  config.objective.prior = "none"  # the residual anchored at the reference
  config.objective.residual = True
  config.objective.prediction = "x0"
  batch = jax.tree.map(jnp.asarray, random_batch(0, 4, (16, 16)))
  codec = _codec()
  ref = codec.encode(batch["reference"])
  x0 = codec.encode(_pair(batch["target"], batch["target_2"])) - _pair(ref, ref)
  apply_fn = lambda variables, x_t, t, *args, **kwargs: x0
  config.objective.flow_mse_floor = 0.0  # plain squared error
  _, metrics = refocus_losses(apply_fn, None, codec, batch, jax.random.key(0), config, 4)
  assert float(metrics["flow_loss"]) < 1e-10 and float(metrics["stack_loss"]) < 1e-10
  # The per-example log error is at its minimum, `4e-3 · log(4 · floor)` on the [-1, 1] latents.
  config.objective.flow_mse_floor = 1e-5
  _, metrics = refocus_losses(apply_fn, None, codec, batch, jax.random.key(0), config, 4)
  np.testing.assert_allclose(float(metrics["flow_loss"]), 4e-3 * np.log(4e-5), rtol=1e-6)


class _ZeroX0Model:
  patch_size = 4

  def apply(self, variables, x, t, reference, disparity, camera, keep, train):
    return jnp.zeros_like(x)


def test_x0_prediction_sampler_ends_at_the_prediction():
  config = tiny_config()
  config.objective.prior = "none"  # the residual anchored at the reference
  config.objective.residual = True
  config.objective.prediction = "x0"
  image = np.random.RandomState(0).uniform(0.1, 0.9, (16, 16, 3)).astype(np.float32)
  out = make_sampler(_ZeroX0Model(), _codec(), config)(None, image, None, jnp.zeros((2, 6)),
                                                       jax.random.key(1), num_steps=4)
  np.testing.assert_allclose(out, np.broadcast_to(image, out.shape), atol=1e-5)
