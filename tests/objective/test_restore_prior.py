"""The restoration prior (`objective.prior="restore"`, the default): the restoration stage's
losses in the train step, the prior as the render of its sharp estimate with the given or the
estimated depth, and the sampler starting from that prior."""
import jax
import jax.numpy as jnp
import numpy as np

from diffcamera_jax import optics
from diffcamera_jax.objective import depth_errors, prior
from diffcamera_jax.models import build_model, example_inputs
from diffcamera_jax.models.camera import camera_features
from diffcamera_jax.inference.sampler import make_sampler
from diffcamera_jax.testing.batches import random_batch, random_example, tiny_config
from diffcamera_jax.testing.objective_calls import refocus_losses


def test_restored_prior_uses_the_given_depth_where_kept_and_the_estimate_elsewhere():
  rs = np.random.RandomState(0)
  sharp = jnp.asarray(rs.uniform(0, 1, (2, 16, 16, 3)), jnp.float32)
  given = jnp.asarray(np.repeat(np.linspace(0, 1, 16, dtype=np.float32)[None], 16, 0)[None]
                      .repeat(2, 0))
  estimate = 1.0 - given
  camera = camera_features(jnp.array([[0.1, 0.5], [0.1, 0.5]]), jnp.array([3.0, 3.0]), (16, 16),
                           jnp.array([0, 0]), jnp.array([0.0, 0.0]))
  keep = jnp.array([True, False])
  out = prior.restored_prior(sharp, given, estimate, camera, keep, gamma=2.2, max_radius=8.0)
  render = lambda d: optics.render(sharp, d, optics.focus_disparity(d, jnp.array([[0.1, 0.5]] * 2)),
                                   jnp.array([3.0, 3.0]), gamma=2.2, max_radius=8.0)
  np.testing.assert_allclose(out[0], render(given)[0], atol=1e-5)
  np.testing.assert_allclose(out[1], render(estimate)[1], atol=1e-5)
  no_depth = prior.restored_prior(sharp, None, estimate, camera, keep, gamma=2.2, max_radius=8.0)
  np.testing.assert_allclose(no_depth, render(estimate), atol=1e-5)


def test_train_step_losses_include_the_restoration_terms():
  config = tiny_config()
  model, codec = build_model(config)
  params = model.init(jax.random.key(0), *example_inputs(codec, (16, 16)))["params"]
  batch = jax.tree.map(jnp.asarray, random_batch(0, 4, (16, 16)))
  loss, metrics = refocus_losses(model.apply, params, codec, batch, jax.random.key(1), config, 4)
  for key in ("restore_loss", "depth_loss", "blur_map_loss"):
    assert np.isfinite(float(metrics[key]))
  assert float(metrics["depth_loss"]) > 0 and float(metrics["blur_map_loss"]) > 0
  o = config.objective
  expected = (metrics["flow_loss"] + o.stack_weight * metrics["stack_loss"] + o.restore_weight * (
      metrics["restore_loss"] + o.depth_weight * metrics["depth_loss"]
      + o.blur_map_weight * metrics["blur_map_loss"]))
  np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)
  # An untrained stage returns the reference: its loss is the reference's log error to the image.
  per_example = jnp.mean((batch["reference"] - batch["image"]) ** 2, axis=(1, 2, 3))
  np.testing.assert_allclose(float(metrics["restore_loss"]),
                             4e-3 * float(jnp.mean(jnp.log(per_example + o.restore_mse_floor))),
                             rtol=1e-5)


def test_untrained_sampler_returns_the_render_of_the_reference_with_the_estimated_depth():
  config = tiny_config()
  model, codec = build_model(config)
  params = model.init(jax.random.key(0), *example_inputs(codec, (16, 16)))["params"]
  rs = np.random.RandomState(1)
  image = rs.uniform(0, 1, (16, 16, 3)).astype(np.float32)
  camera = camera_features(jnp.array([[0.2, 0.5], [0.8, 0.5]]), jnp.array([2.0, 2.0]), (16, 16),
                           jnp.array([0, 0]), jnp.array([0.0, 0.0]))
  sample = make_sampler(model, codec, config)
  out = sample(params, image, None, camera, jax.random.key(0), num_steps=1)
  _, estimate, _ = model.apply({"params": params}, jnp.asarray(image[None]), None,
                               jnp.array([False]), method="restore")
  expected = prior.restored_prior(jnp.asarray(image[None]).repeat(2, 0), None,
                                  estimate.repeat(2, 0), camera, jnp.array([False, False]),
                                  gamma=config.data.gamma,
                                  max_radius=prior.prior_max_radius((16, 16), 40.0, 512))
  # The DiT's final layer starts at zero: the sample is the prior.
  np.testing.assert_allclose(out, expected, atol=1e-5)


def test_training_with_the_restoration_prior_overfits_one_batch():
  from diffcamera_jax.sharding import logical_rules, make_mesh, shard_batch
  from diffcamera_jax.training.state import create_train_state
  from diffcamera_jax.training.step import make_train_step
  config = tiny_config(batch_size=4, image_size=(32, 32))
  config.optim.learning_rate, config.optim.warmup_steps = 3e-3, 5
  config.train.num_steps = 1000
  model, codec = build_model(config)
  mesh = make_mesh(config)
  state, sharding = create_train_state(config, model, codec, mesh, jax.random.key(0))
  step = make_train_step(config, model, codec, mesh, sharding)
  batch = shard_batch(random_example(0, 4, (32, 32)), mesh, logical_rules(config))
  first = last = None
  for _ in range(60):
    state, metrics = step(state, batch, jax.random.key(7))
    first = first or {k: float(v) for k, v in metrics.items()}
    last = {k: float(v) for k, v in metrics.items()}
  # The image and flow terms are per-example log errors (4e-3 · mean log MSE): their change over
  # 4e-3 is the log of the ratio of geometric-mean squared errors.
  mse_ratio = lambda key: np.exp((last[key] - first[key]) / 4e-3)
  assert mse_ratio("restore_loss") < 0.6, (first, last)  # measured 0.45
  assert mse_ratio("flow_loss") < 0.7, (first, last)  # measured 0.54
  assert last["depth_loss"] < 0.5 * first["depth_loss"], (first, last)  # measured 0.30x
  assert last["stack_loss"] < 0.2 * first["stack_loss"], (first, last)  # measured 0.04x


def test_log_error_weighs_each_example_by_its_own_scale():
  """With a floor the image term is the mean log error: a nearly sharp example's small error
  counts as it does in a per-scene mean PSNR, not drowned by a blurred example's large one."""
  from diffcamera_jax.objective.objective import restoration_losses
  image = jnp.zeros((2, 8, 8, 3))
  sharp = image.at[0].add(0.1).at[1].add(0.001)  # MSE 1e-2 and 1e-6
  zeros = jnp.zeros((2, 8, 8))
  term = lambda s, floor: restoration_losses(s, zeros, zeros, image, zeros, zeros,
                                             mse_floor=floor)["restore_loss"]
  np.testing.assert_allclose(term(sharp, 0.0), 4.0 * (1e-2 + 1e-6) / 2, rtol=1e-5)
  np.testing.assert_allclose(term(sharp, 1e-5),
                             4e-3 * np.mean(np.log([1e-2 + 1e-5, 1e-6 + 1e-5])), rtol=1e-5)
  # Removing the sharp example's error against halving the blurred one's: the log term values
  # the first hundreds of times more than plain squared error does.
  ratio = lambda floor: ((term(sharp, floor) - term(sharp.at[1].multiply(0.0), floor))
                         / (term(sharp, floor) - term(sharp.at[0].multiply(0.5), floor)))
  assert ratio(1e-5) > 100 * ratio(0.0)


def test_training_with_inaccurate_maps_gives_the_stage_the_wrong_map_and_scores_the_true_one():
  config = tiny_config()
  config.model.restorer.refine_depth, config.objective.p_depth_corrupt = True, 1.0
  config.objective.p_depth_drop = 0.0
  model, codec = build_model(config)
  params = model.init(jax.random.key(0), *example_inputs(codec, (16, 16)))["params"]
  batch = jax.tree.map(jnp.asarray, random_batch(0, 4, (16, 16)))
  loss, metrics = refocus_losses(model.apply, params, codec, batch, jax.random.key(1), config, 4)
  # The untrained refining stage returns the map it is given: its error is that map's squared
  # error against the true disparity, which every corruption makes non-zero.
  wrong, _ = depth_errors.corrupt(jax.random.split(jax.random.key(1))[1], batch["disparity"], 1.0)
  np.testing.assert_allclose(float(metrics["refine_loss"]),
                             float(jnp.mean(jnp.square(wrong - batch["disparity"]))),
                             rtol=1e-4, atol=1e-7)
  assert float(metrics["refine_loss"]) > 1e-4 and np.isfinite(float(loss))
  # The photo-only estimate is scored on every example, as without refining.
  alone = model.apply({"params": params}, batch["reference"], None, jnp.zeros((4,), bool),
                      method="restore")[1]
  np.testing.assert_allclose(float(metrics["depth_loss"]),
                             float(jnp.mean(jnp.abs(alone - batch["disparity"]))),
                             rtol=1e-4, atol=1e-6)
  assert float(metrics["depth_loss"]) > 1e-3


def test_depth_term_is_absolute_or_squared():
  from diffcamera_jax.objective.objective import restoration_losses
  image = jnp.zeros((2, 4, 4, 3))
  hat, true = jnp.full((2, 4, 4), 0.5), jnp.full((2, 4, 4), 0.2)
  term = lambda kind: float(restoration_losses(image, hat, true, image, true, true,
                                               depth_error=kind)["depth_loss"])
  np.testing.assert_allclose(term("abs"), 0.3, rtol=1e-6)
  np.testing.assert_allclose(term("squared"), 0.09, rtol=1e-5)
