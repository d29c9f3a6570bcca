"""The physics prior (`objective.prior="render"`): the camera read back from its features, the
prior as the classical render of the reference (the reference without depth), and the prior as
the anchor of the residual flow in the losses and the sampler."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax import optics
from diffcamera_jax.objective import prior
from diffcamera_jax.configs.validation import ConfigError, validate_config
from diffcamera_jax.models import build_model, example_inputs
from diffcamera_jax.models.camera import camera_features
from diffcamera_jax.models.latents import LatentCodec
from diffcamera_jax.inference.sampler import make_sampler
from diffcamera_jax.objective.objective import pair as _pair
from diffcamera_jax.testing.batches import random_batch, random_example, tiny_config
from diffcamera_jax.testing.objective_calls import prior_fn, refocus_losses


def _render_config(**kwargs):
  """The tiny config with the reference's re-render as the prior (the default is "restore")."""
  config = tiny_config(**kwargs)
  config.objective.prior = "render"
  return config


def _scene(seed=0, size=16):
  rs = np.random.RandomState(seed)
  image = rs.uniform(0.05, 0.95, (size, size, 3)).astype(np.float32)
  disparity = np.repeat(np.linspace(0.0, 1.0, size, dtype=np.float32)[None], size, 0)
  return image, disparity


def test_camera_features_round_trip():
  focus = jnp.array([[0.2, 0.7], [0.9, 0.1], [0.5, 0.5]])
  blur = jnp.array([3.0, 0.0, 7.5])
  blades = jnp.array([0, 5, 6])
  rotation = jnp.array([1.0, 0.3, -0.4])
  cam = prior.camera_from_features(camera_features(focus, blur, (48, 64), blades, rotation),
                                   (48, 64))
  np.testing.assert_allclose(cam["focus"], focus, atol=1e-6)
  np.testing.assert_allclose(cam["blur"], blur, atol=1e-5)
  np.testing.assert_array_equal(cam["blades"], [0, 5, 6])
  assert float(cam["rotation"][0]) == 0.0  # a disk has no rotation
  # n-gons come back modulo their symmetry: the same polygon
  for i, n in ((1, 5), (2, 6)):
    diff = (float(cam["rotation"][i]) - float(rotation[i])) % (2 * np.pi / n)
    assert min(diff, 2 * np.pi / n - diff) < 1e-5


def test_prior_is_the_classical_render_with_depth_and_the_reference_without():
  image, disparity = _scene()
  images, disparities = np.stack([image, image]), np.stack([disparity, disparity])
  focus, blur = jnp.array([[0.25, 0.5], [0.8, 0.5]]), jnp.array([2.0, 3.0])
  blades, rotation = jnp.array([0, 6]), jnp.array([0.0, 0.2])
  camera = camera_features(focus, blur, (16, 16), blades, rotation)
  keep = jnp.array([True, False])
  out = prior.render_prior(images, disparities, camera, keep, gamma=2.2, max_radius=8.0)
  expected = optics.render(images[:1], disparities[:1],
                           optics.focus_disparity(disparities[:1], focus[:1]), blur[:1],
                           gamma=2.2, max_radius=8.0)
  np.testing.assert_allclose(out[0], expected[0], atol=1e-5)
  assert np.abs(np.asarray(out[0]) - image).max() > 0.05  # it did blur
  np.testing.assert_array_equal(out[1], image)  # depth dropped: the reference
  assert prior.render_prior(images, None, camera, keep, gamma=2.2, max_radius=8.0) is images


def test_losses_anchor_the_residual_at_the_prior():
  config = _render_config()
  config.objective.prediction = "x0"
  config.objective.flow_mse_floor = 0.0  # plain squared error: the oracle's loss is 0
  config.objective.p_depth_drop = 0.5
  codec = LatentCodec(params=None)
  batch = jax.tree.map(jnp.asarray, random_batch(0, 4, (16, 16)))
  make_prior = prior_fn(config)
  seen = {}

  def oracle(variables, x_t, t, reference, disparity, camera, keep, train, rngs, prior=None):
    # x0 = enc(target) - enc(prior) recomputed independently from the same camera and keep
    seen["prior"] = prior
    expected_prior = make_prior(_pair(batch["reference"], batch["reference"]), disparity, camera,
                              keep)
    seen["expected"] = codec.encode(expected_prior)
    seen["keep"] = keep
    return codec.encode(_pair(batch["target"], batch["target_2"])) - seen["expected"]

  _, metrics = refocus_losses(oracle, None, codec, batch, jax.random.key(3), config, 4)
  np.testing.assert_allclose(seen["prior"], seen["expected"], atol=1e-6)
  assert float(metrics["flow_loss"]) < 1e-10 and float(metrics["stack_loss"]) < 1e-10
  keep = np.asarray(seen["keep"])
  assert keep.any() and not keep.all()  # both branches of the prior ran
  ref2 = np.asarray(codec.encode(_pair(batch["reference"], batch["reference"])))
  np.testing.assert_allclose(np.asarray(seen["prior"])[~keep], ref2[~keep], atol=1e-6)
  assert np.abs(np.asarray(seen["prior"])[keep] - ref2[keep]).max() > 0.01

  # the reference-anchored oracle is wrong once the prior is the anchor
  ref_oracle = lambda v, x_t, t, reference, *a, **k: (
      codec.encode(_pair(batch["target"], batch["target_2"])) - reference)
  _, wrong = refocus_losses(ref_oracle, None, codec, batch, jax.random.key(3), config, 4)
  assert float(wrong["flow_loss"]) > 1e-3


class _ZeroX0Model:
  patch_size = 4

  def apply(self, variables, x, t, reference, disparity, camera, keep, train, prior=None):
    return jnp.zeros_like(x)


def test_sampler_of_an_untrained_change_returns_the_prior():
  config = _render_config()
  config.objective.prediction = "x0"
  image, disparity = _scene(1)
  camera = camera_features(jnp.array([[0.1, 0.5], [0.9, 0.5]]), jnp.array([2.5, 2.5]), (16, 16),
                           jnp.array([0, 0]), jnp.array([0.0, 0.0]))
  sample = make_sampler(_ZeroX0Model(), LatentCodec(params=None), config)
  out = sample(None, image, disparity, camera, jax.random.key(0), num_steps=2)
  expected = prior.render_prior(np.stack([image] * 2), np.stack([disparity] * 2), camera,
                                jnp.array([True, True]), gamma=config.data.gamma,
                                max_radius=prior.prior_max_radius((16, 16), 40.0, 512))
  np.testing.assert_allclose(out, expected, atol=1e-5)
  assert np.abs(np.asarray(out[0]) - np.asarray(out[1])).max() > 0.02  # focus near vs far
  no_depth = sample(None, image, None, camera, jax.random.key(0), num_steps=2)
  np.testing.assert_allclose(no_depth, np.broadcast_to(image, no_depth.shape), atol=1e-5)


def test_dit_takes_the_prior_only_when_built_for_it():
  config = _render_config()
  model, codec = build_model(config)
  assert model.use_prior
  inputs = example_inputs(codec, (16, 16))
  params = model.init(jax.random.key(0), *inputs)["params"]
  assert "prior_embed" in params
  out_none = model.apply({"params": params}, *inputs)
  out_ref = model.apply({"params": params}, *inputs, prior=inputs[2])
  np.testing.assert_allclose(out_none, out_ref)  # no prior given = the reference as prior
  config.objective.prior = "none"
  plain, _ = build_model(config)
  plain_params = plain.init(jax.random.key(0), *inputs)["params"]
  assert "prior_embed" not in plain_params
  with pytest.raises(ValueError, match="use_prior=False"):
    plain.apply({"params": plain_params}, *inputs, prior=inputs[2])


def test_config_rejects_a_bad_prior():
  config = _render_config()
  config.objective.prior = "depth"
  with pytest.raises(ConfigError, match="config.objective.prior"):
    validate_config(config, num_devices=1, check_paths=False)
  config.objective.prior = "render"
  config.objective.residual = False
  with pytest.raises(ConfigError, match="residual"):
    validate_config(config, num_devices=1, check_paths=False)


_LAYOUT_SCRIPT = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from diffcamera_jax.testing.batches import random_batch, tiny_config
from diffcamera_jax.testing.objective_calls import prior_fn
from diffcamera_jax.models.camera import camera_features
config = tiny_config(batch_size=8)
config.objective.prior = "render"
fn = jax.jit(prior_fn(config))
b = random_batch(0, 8, (16, 16))
cam = camera_features(b["target_focus"], b["target_blur"], (16, 16), b["aperture_blades"],
                      b["aperture_rotation"])
args = (jnp.asarray(b["reference"]), jnp.asarray(b["disparity"]), cam,
        jnp.array([True, False] * 4))
mesh = Mesh(np.array(jax.devices()), ("d",))
split = [jax.device_put(a, NamedSharding(mesh, P("d"))) for a in args]
print("DIFF", float(jnp.abs(fn(*args) - fn(*split)).max()), len(jax.devices()))
"""


def test_prior_does_not_depend_on_the_batch_layout():
  """The in-step prior on a batch split over 8 devices equals the one-device render."""
  import os
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=root,
             XLA_FLAGS="--xla_force_host_platform_device_count=8")
  proc = subprocess.run([sys.executable, "-c", _LAYOUT_SCRIPT], env=env, cwd=root,
                        capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  _, diff, devices = next(l for l in proc.stdout.splitlines() if l.startswith("DIFF")).split()
  assert int(devices) == 8
  assert float(diff) <= 1e-6  # float rounding of the FFTs only (measured 2e-7)


def test_training_with_the_prior_overfits_one_batch():
  """The objective with the re-render prior fits one fixed batch: measured 7.4x lower x0 loss in 90
  steps (the prior starts closer to the targets than the reference, so the first loss is lower)."""
  from diffcamera_jax.sharding import logical_rules, make_mesh, shard_batch
  from diffcamera_jax.training.state import create_train_state
  from diffcamera_jax.training.step import make_train_step
  config = _render_config(batch_size=4, image_size=(32, 32))
  config.optim.learning_rate, config.optim.warmup_steps = 3e-3, 5
  config.objective.p_depth_drop = 0.5
  config.train.num_steps = 1000
  config.objective.flow_mse_floor = 0.0  # plain squared error, so the ratio is of MSEs
  assert config.objective.prior == "render"
  model, codec = build_model(config)
  mesh = make_mesh(config)
  state, sharding = create_train_state(config, model, codec, mesh, jax.random.key(0))
  step = make_train_step(config, model, codec, mesh, sharding)
  batch = shard_batch(random_example(0, 4, (32, 32)), mesh, logical_rules(config))
  losses = []
  for _ in range(90):
    state, metrics = step(state, batch, jax.random.key(7))
    losses.append(float(metrics["flow_loss"]))
  assert losses[0] / losses[-1] >= 5.0, losses[::10]
