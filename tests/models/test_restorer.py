"""The restoration stage: shapes, identity at initialisation, depth estimated at the training size,
and its place in the DiT's parameters."""
import jax
import jax.numpy as jnp
import numpy as np

from diffcamera_jax.models import build_model, example_inputs
from diffcamera_jax.models.restorer import Restorer, fit_blur_map
from diffcamera_jax.testing.batches import tiny_config


def _inputs(b=2, h=20, w=28, seed=0):
  rs = np.random.RandomState(seed)
  return (jnp.asarray(rs.uniform(0, 1, (b, h, w, 3)), jnp.float32),
          jnp.asarray(rs.uniform(0, 1, (b, h, w)), jnp.float32), jnp.array([True, False][:b]))


def test_shapes_and_identity_at_initialisation():
  net = Restorer(widths=(4, 8, 8), depth_size=32)
  image, disparity, keep = _inputs()
  params = net.init(jax.random.key(0), image, disparity, keep)
  sharp, disparity_hat, blur_hat = net.apply(params, image, disparity, keep)
  assert sharp.shape == image.shape and disparity_hat.shape == blur_hat.shape == image.shape[:3]
  np.testing.assert_allclose(sharp, image, atol=1e-6)  # zero-initialised correction
  assert float(disparity_hat.min()) >= 0 and float(disparity_hat.max()) <= 1
  assert float(blur_hat.min()) >= 0
  sharp_nodepth, _, _ = net.apply(params, image, None, keep)
  np.testing.assert_allclose(sharp_nodepth, image, atol=1e-6)


def test_depth_of_a_large_photo_is_estimated_at_the_training_size():
  net = Restorer(widths=(4, 8, 8), depth_size=16)
  image, disparity, keep = _inputs(b=1, h=40, w=64)
  params = net.init(jax.random.key(0), image, disparity, keep)
  _, disparity_hat, _ = net.apply(params, image, None, keep)
  assert disparity_hat.shape == (1, 40, 64)
  # Estimated on a 10 x 16 copy and resized back: smooth at the 4-pixel scale.
  small = jax.image.resize(disparity_hat, (1, 10, 16), "linear", antialias=True)
  back = jax.image.resize(small, (1, 40, 64), "linear")
  assert float(jnp.abs(back - disparity_hat).mean()) < 0.05


def test_fitted_blur_map_recovers_the_layered_coc_from_a_noisy_estimate():
  rs = np.random.RandomState(0)
  disparity = rs.uniform(0, 1, (2, 16, 16)).astype(np.float32)
  true = np.stack([3.0 * np.abs(disparity[0] - 0.4), 1.5 * np.abs(disparity[1] - 0.8)])
  noisy = (true + rs.normal(0, 0.3, true.shape)).astype(np.float32)
  fitted = np.asarray(fit_blur_map(jnp.asarray(noisy), jnp.asarray(disparity)))
  assert np.abs(fitted - true).mean() < 0.25 * np.abs(noisy - true).mean()


def test_dit_creates_and_runs_the_stage_from_a_plain_init():
  config = tiny_config()
  assert config.objective.prior == "restore"
  model, codec = build_model(config)
  params = model.init(jax.random.key(0), *example_inputs(codec, (16, 16)))["params"]
  assert "restorer" in params
  image, disparity, keep = _inputs(b=2, h=16, w=16)
  sharp, _, _ = model.apply({"params": params}, image, disparity, keep, method="restore")
  np.testing.assert_allclose(sharp, image, atol=1e-6)
  config.objective.prior = "none"
  plain, _ = build_model(config)
  assert "restorer" not in plain.init(jax.random.key(0), *example_inputs(codec, (16, 16)))["params"]


def test_refining_stage_starts_as_the_given_map_at_full_resolution():
  net = Restorer(widths=(4, 8, 8), depth_widths=(4, 8, 8), refine_widths=(4, 8, 8),
                 depth_size=16, refine_depth=True)
  image, disparity, keep = _inputs(b=2, h=40, w=64)  # estimated at 10 x 16, map kept at 40 x 64
  disparity = jnp.clip(disparity, 0.01, 0.99)
  params = net.init(jax.random.key(0), image, disparity, keep)
  (_, disparity_hat, _), sown = net.apply(params, image, disparity, keep,
                                          mutable=["intermediates"])
  alone = sown["intermediates"]["monocular_disparity"][0]
  np.testing.assert_allclose(disparity_hat[0], disparity[0], atol=1e-5)  # kept: the map itself
  np.testing.assert_allclose(disparity_hat[1], alone[1], atol=1e-6)  # dropped: the photo's estimate
  assert float(jnp.std(alone)) > 0  # the photo-only estimate is a trained head's, not a constant
  _, without, _ = net.apply(params, image, None, keep)
  np.testing.assert_allclose(without, alone, atol=1e-6)
  # Same photo-only estimate (and parameter names) as a stage that does not refine.
  plain = Restorer(widths=(4, 8, 8), depth_widths=(4, 8, 8), depth_size=16)
  shared = {"params": {k: v for k, v in params["params"].items() if not k.startswith("refine")}}
  np.testing.assert_allclose(plain.apply(shared, image, None, keep)[1], alone, atol=1e-6)
  # The correction is learned: the correcting head's gradient is not zero.
  grads = jax.grad(lambda p: jnp.sum(net.apply(p, image, disparity, keep)[1] ** 2))(params)
  head = jax.tree.leaves(grads["params"]["refine_head"])
  assert max(float(jnp.abs(g).max()) for g in head) > 0
