"""The train step on one device: overfitting, metrics, donation, the objective's plumbing, the
schedule and EMA, and refocusing at a resolution the model was not trained at."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax.testing.batches import random_batch, random_example, tiny_config
from diffcamera_jax.testing.objective_calls import refocus_losses
from diffcamera_jax.models import build_model, camera_features
from diffcamera_jax.inference.sampler import make_sampler
from diffcamera_jax.sharding import logical_rules, make_mesh, shard_batch
from diffcamera_jax.training.state import create_train_state, make_optimizer, make_schedule
from diffcamera_jax.training.state import update_ema
from diffcamera_jax.objective.objective import pair as _pair
from diffcamera_jax.training.step import make_train_step

TRAIN_HW = (32, 32)
STEPS = 90


@pytest.fixture(scope="module")
def setup():
  config = tiny_config(batch_size=4, image_size=TRAIN_HW)
  config.optim.learning_rate, config.optim.warmup_steps = 3e-3, 5
  config.objective.p_depth_drop = 0.5  # the fixed rng then drops some depth maps
  config.train.num_steps = 1000  # keeps the learning rate near its peak for the STEPS we run
  # The paper's objective with t centred at 0.5 (the setting this bar was measured on); the
  # default objective (prior, t centred high) is checked in tests/objective/test_prior.py.
  config.objective.prior = "none"
  config.objective.timestep_mean = 0.0
  config.objective.flow_mse_floor = 0.0  # plain squared error, as in the paper
  model, codec = build_model(config)
  mesh = make_mesh(config)
  return config, model, codec, mesh


@pytest.fixture(scope="module")
def trained(setup):
  """Fits one fixed batch with fixed noise and timesteps for STEPS steps."""
  config, model, codec, mesh = setup
  state, state_sharding = create_train_state(config, model, codec, mesh, jax.random.key(0))
  initial = jax.tree.map(lambda x: np.array(x, copy=True), state)
  step = make_train_step(config, model, codec, mesh, state_sharding)
  batch = shard_batch(random_example(0, 4, TRAIN_HW), mesh, logical_rules(config))
  first_state, history = state, []
  for _ in range(STEPS):
    state, metrics = step(state, batch, jax.random.key(7))
    history.append(jax.device_get(metrics))
  return dict(state=state, initial=initial, first_state=first_state, history=history)


def test_overfits_one_batch(trained):
  flow_losses = [m["flow_loss"] for m in trained["history"]]
  assert flow_losses[0] / flow_losses[-1] >= 10.0, flow_losses[::10]
  assert trained["history"][-1]["stack_loss"] < trained["history"][0]["stack_loss"]


def test_metrics_step_and_donation(trained, setup):
  config = setup[0]
  metrics = trained["history"][0]
  for key in ("loss", "flow_loss", "stack_loss", "grad_norm", "param_norm", "learning_rate"):
    assert np.isfinite(metrics[key]), key
  np.testing.assert_allclose(metrics["loss"], metrics["flow_loss"] + config.objective.stack_weight
                             * metrics["stack_loss"], rtol=1e-5)
  schedule = make_schedule(config)
  lrs = [m["learning_rate"] for m in trained["history"]]
  np.testing.assert_allclose(lrs, [schedule(i) for i in range(STEPS)], rtol=1e-6)
  assert int(trained["state"].step) == STEPS
  assert all(leaf.is_deleted() for leaf in jax.tree.leaves(trained["first_state"].params))
  still = jax.tree_util.tree_map_with_path(
      lambda path, a, b: jax.tree_util.keystr(path) if np.allclose(a, b) else None,
      trained["initial"].params, jax.device_get(trained["state"].params))
  assert not jax.tree.leaves(still), f"parameters that did not train: {jax.tree.leaves(still)}"


def test_trained_at_32_runs_at_48x80(trained, setup):
  config, model, codec, _ = setup
  sample = make_sampler(model, codec, config)
  image = jax.random.uniform(jax.random.key(1), (48, 80, 3))
  disparity = jax.random.uniform(jax.random.key(2), (48, 80))
  camera = camera_features(jnp.array([[0.2, 0.5], [0.8, 0.5], [0.5, 0.5]]),
                           jnp.array([0.0, 3.0, 6.0]), (48, 80), jnp.array([0, 0, 6]),
                           jnp.zeros(3))
  params = trained["state"].ema_params
  out = sample(params, image, disparity, camera, jax.random.key(3), num_steps=2)
  assert out.shape == (3, 48, 80, 3)
  assert bool(jnp.isfinite(out).all()) and float(out.min()) >= 0 and float(out.max()) <= 1
  assert float(jnp.abs(out[0] - out[2]).max()) > 1e-3  # the camera changes the result
  no_depth = sample(params, image[None], None, camera[:1], jax.random.key(3), num_steps=1)
  assert no_depth.shape == (1, 48, 80, 3)
  with pytest.raises(ValueError, match="reference_image"):
    sample(params, jnp.stack([image] * 2), None, camera, jax.random.key(3), num_steps=1)


def _oracle_losses(batch, codec, config):
  """refocus_losses with a model that predicts the exact velocity of the true targets."""
  x0 = codec.encode(_pair(batch["target"], batch["target_2"]))
  if config.objective.residual:  # the flow's data end is enc(target) - enc(reference)
    x0 = x0 - _pair(*[codec.encode(batch["reference"])] * 2)
  seen = {}

  def apply_fn(variables, x_t, t, reference, disparity, camera, keep, train, rngs):
    del variables, reference, disparity, train, rngs
    seen.update(t=t, camera=camera, keep=keep)
    if config.objective.prediction == "x0":
      return x0
    return (x_t - x0) / t[:, None, None, None]

  loss, metrics = refocus_losses(apply_fn, None, codec, batch, jax.random.key(0), config,
                                 patch_size=4)
  return loss, metrics, seen


def test_oracle_predictions_zero_the_objective_and_a_wrong_mask_does_not(setup):
  config, _, codec, _ = setup
  batch = jax.tree.map(jnp.asarray, random_batch(3, 4, (16, 16)))
  _, metrics, seen = _oracle_losses(batch, codec, config)
  assert float(metrics["flow_loss"]) < 1e-8 and float(metrics["stack_loss"]) < 1e-8
  # The pair is batched as adjacent rows sharing t and depth dropout, one camera per target.
  np.testing.assert_array_equal(seen["t"][0::2], seen["t"][1::2])
  np.testing.assert_array_equal(seen["keep"][0::2], seen["keep"][1::2])
  np.testing.assert_allclose(seen["camera"][0::2, :2], batch["target_focus"])
  np.testing.assert_allclose(seen["camera"][1::2, :2], batch["target_focus_2"])
  wrong = dict(batch, stack_mask=1.0 - batch["stack_mask"])
  _, metrics, _ = _oracle_losses(wrong, codec, config)
  assert float(metrics["stack_loss"]) > 0.05


def test_missing_batch_keys_are_named(setup):
  config, model, codec, _ = setup
  batch = random_batch(0, 2, (16, 16))
  del batch["stack_mask"]
  with pytest.raises(KeyError, match="stack_mask"):
    refocus_losses(model.apply, None, codec, batch, jax.random.key(0), config, 4)


def test_schedule_warmup_then_cosine():
  config = tiny_config()
  config.optim.learning_rate, config.optim.warmup_steps = 1.0, 4
  config.optim.end_lr_fraction, config.train.num_steps = 0.1, 14
  schedule = make_schedule(config)
  np.testing.assert_allclose([schedule(i) for i in range(4)], [0.25, 0.5, 0.75, 1.0])
  np.testing.assert_allclose(schedule(9), 0.1 + 0.9 * 0.5, rtol=1e-6)  # half way down
  np.testing.assert_allclose([schedule(14), schedule(100)], [0.1, 0.1], rtol=1e-6)
  config.optim.learning_rate = 0.0
  with pytest.raises(ValueError, match="learning_rate"):
    make_schedule(config)


def test_weight_decay_only_on_matrices():
  config = tiny_config()
  config.optim.learning_rate, config.optim.warmup_steps, config.optim.weight_decay = 0.1, 0, 0.5
  tx = make_optimizer(config)
  params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  np.testing.assert_allclose(updates["kernel"], -0.1 * 0.5 * params["kernel"], rtol=1e-6)
  np.testing.assert_array_equal(updates["bias"], 0.0)


def test_ema_warmup():
  ema, params = {"w": jnp.zeros(3)}, {"w": jnp.ones(3)}
  np.testing.assert_allclose(update_ema(ema, params, 0.999, jnp.array(0))["w"], 0.9)
  np.testing.assert_allclose(update_ema(ema, params, 0.999, jnp.array(10**6))["w"], 0.001,
                             rtol=1e-4)
