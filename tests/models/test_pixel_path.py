"""The DiT's convolutional stem and head (`model.pixel_widths`) and adaLN camera conditioning:
zero output at initialisation, every pixel input and the camera reaching the output, the stem's
inputs at the latent grid, clear errors."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax.configs.default import get_config
from diffcamera_jax.models import build_model
from diffcamera_jax.models.dit import DiT
from diffcamera_jax.models.pixel_path import camera_maps, disparity_at, num_levels
from diffcamera_jax.models.sizes import get_size

MODEL = DiT(get_size("tiny"), patch_size=4, pixel_widths=(8, 16), camera_adaln=True)


def _inputs(seed=0, batch=2, hw=(16, 16)):
  k = jax.random.split(jax.random.key(seed), 5)
  x = jax.random.normal(k[0], (batch, *hw, 3))
  return (x, jax.random.uniform(k[1], (batch,)), jax.random.normal(k[2], x.shape),
          jax.random.uniform(k[3], (batch, *hw)), jax.random.uniform(k[4], (batch, 6)),
          jnp.ones((batch,), bool))


@pytest.fixture(scope="module")
def init_params():
  return nn.unbox(jax.jit(MODEL.init)(jax.random.key(0), *_inputs())["params"])


def test_zero_at_initialisation_and_parameters_present(init_params):
  out = jax.jit(MODEL.apply)({"params": init_params}, *_inputs(1))
  assert out.shape == (2, 16, 16, 3)
  np.testing.assert_array_equal(out, 0.0)
  assert {"pixel_stem", "pixel_head", "camera_adaln"} <= set(init_params)


def test_every_input_reaches_the_output(init_params):
  # Every leaf perturbed, so the zero-initialised gates and outputs are live.
  leaves, tree = jax.tree.flatten(init_params)
  keys = jax.random.split(jax.random.key(3), len(leaves))
  params = tree.unflatten([p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
  apply = jax.jit(MODEL.apply)
  inputs = _inputs(1)
  base = apply({"params": params}, *inputs)
  for index in range(5):  # x_t, t, reference, disparity, camera
    changed = list(inputs)
    changed[index] = inputs[index] + 0.5
    assert float(jnp.max(jnp.abs(apply({"params": params}, *changed) - base))) > 1e-5, index
  dropped = list(inputs)
  dropped[5] = jnp.zeros((2,), bool)
  assert float(jnp.max(jnp.abs(apply({"params": params}, *dropped) - base))) > 1e-5


def test_gradient_reaches_the_stem(init_params):
  def loss(p):
    return jnp.sum(jnp.square(MODEL.apply({"params": p}, *_inputs(1)) - 1.0))
  grads = jax.jit(jax.grad(loss))(init_params)
  assert float(jnp.max(jnp.abs(grads["pixel_head"]["out"]["Conv_0"]["kernel"]))) > 0


def test_camera_maps_and_disparity_at_the_latent_grid():
  camera = jnp.asarray([[0.25, 0.75, 0.1, 0.0, 0.0, 0.0]])
  maps = camera_maps(camera, (8, 8))
  assert maps.shape == (1, 8, 8, 7)
  np.testing.assert_allclose(maps[0, 3, 3, :6], camera[0])
  bump = np.asarray(maps[0, ..., 6])
  assert np.unravel_index(np.argmax(bump), bump.shape) in {(5, 1), (6, 1), (5, 2), (6, 2)}
  d = jnp.arange(64, dtype=jnp.float32).reshape(1, 8, 8)
  np.testing.assert_allclose(disparity_at(d, (4, 4))[0, 0, 0], np.mean([0, 1, 8, 9]))
  assert disparity_at(d, (8, 8)) is d


def test_bad_settings_are_named():
  with pytest.raises(ValueError, match="power of two"):
    num_levels(6)
  model = DiT(get_size("tiny"), patch_size=4, pixel_widths=(8,))
  with pytest.raises(ValueError, match="pixel_widths needs 2 entries"):
    model.init(jax.random.key(0), *_inputs())


def test_defocus_map_is_the_requested_circle_of_confusion():
  from diffcamera_jax.optics import focus_disparity, signed_coc
  model = DiT(get_size("tiny"), patch_size=4, pixel_widths=(8, 16), defocus_map=True)
  x, t, reference, disparity, camera, keep = _inputs(2)
  keep = jnp.asarray([True, False])
  stem = model.bind({})._pixel_inputs(x, reference, None, disparity, keep, camera)
  assert stem.shape[-1] == 3 + 3 + 3 + 7  # x_t, reference, depth + flag + CoC, camera maps
  blur = camera[:, 2] * 16  # camera features hold K / max(H, W)
  coc = signed_coc(disparity, focus_disparity(disparity, camera[:, :2]), blur) / 4  # / patch
  np.testing.assert_allclose(stem[0, ..., 8], coc[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(stem[1, ..., 8], 0.0)  # depth dropped: no map
  with pytest.raises(Exception, match="defocus_map"):
    from diffcamera_jax.configs.validation import validate_config
    config = get_config()
    config.model.defocus_map = True
    validate_config(config)


def test_paper_config_builds_the_pixel_path():
  config = get_config("paper")
  assert config.objective.prior == "none"
  model, _ = build_model(config)
  assert model.pixel_widths == tuple(config.model.pixel_widths) and not model.use_prior
  assert model.defocus_map and model.camera_adaln
  assert num_levels(config.model.patch_size) == len(config.model.pixel_widths)


