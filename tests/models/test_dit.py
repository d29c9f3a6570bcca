"""The in-context DiT: shapes, adaLN-zero init, depth dropout, any resolution, scan/remat parity,
logical axis names on every parameter, clear input errors."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax.models import build_model, example_inputs
from diffcamera_jax.models.dit import DiT, patchify, unpatchify
from diffcamera_jax.models.sizes import get_size
from diffcamera_jax.configs.default import get_config

SIZE = get_size("tiny")


def _inputs(seed=0, batch=2, hw=(16, 16), keep=True):
  k = jax.random.split(jax.random.key(seed), 5)
  x = jax.random.normal(k[0], (batch, *hw, 3))
  return (x, jax.random.uniform(k[1], (batch,)), jax.random.normal(k[2], x.shape),
          jax.random.uniform(k[3], (batch, *hw)), jax.random.uniform(k[4], (batch, 6)),
          jnp.full((batch,), keep))


def _init(model, inputs):
  return nn.unbox(jax.jit(model.init)(jax.random.key(0), *inputs)["params"])


@jax.jit
def _perturb(params, seed=1):
  """Params with every leaf perturbed, so the zero-initialised gates and outputs are active."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return tree.unflatten([p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


MODEL = DiT(SIZE, patch_size=4)
APPLY = jax.jit(MODEL.apply)  # one compiled program per input shape, shared by the tests


def _apply(model, params, *inputs):
  apply = APPLY if model is MODEL else jax.jit(model.apply)
  return apply({"params": params}, *inputs)


@pytest.fixture(scope="module")
def init_params():
  return _init(MODEL, _inputs())


@pytest.fixture(scope="module")
def params(init_params):
  return _perturb(init_params)


def test_patchify_roundtrip():
  x = jax.random.normal(jax.random.key(0), (2, 8, 12, 3))
  tokens = patchify(x, 4)
  assert tokens.shape == (2, 6, 48)
  np.testing.assert_array_equal(tokens[0, 1], x[0, :4, 4:8].reshape(-1))
  np.testing.assert_array_equal(unpatchify(tokens, (2, 3), 4), x)


def test_adaln_zero_init_predicts_zero_velocity(init_params):
  inputs = _inputs()
  out = _apply(MODEL, init_params, *inputs)
  assert out.shape == inputs[0].shape and out.dtype == jnp.float32
  np.testing.assert_array_equal(out, 0.0)


def test_depth_dropout_replaces_depth_by_null_embedding(params):
  x, t, ref, disp, cam, _ = _inputs()
  run = lambda d, keep: _apply(MODEL, params, x, t, ref, d, cam, jnp.full((2,), keep))
  other = jnp.flip(disp, axis=1)
  assert float(jnp.abs(run(disp, True) - run(other, True)).max()) > 1e-4
  np.testing.assert_allclose(run(disp, False), run(other, False), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(run(None, True), run(disp, False), rtol=1e-6, atol=1e-6)


def test_output_depends_on_camera_reference_and_time(params):
  inputs = _inputs()
  base = _apply(MODEL, params, *inputs)
  for i in (1, 2, 4):
    changed = list(inputs)
    changed[i] = changed[i] + 0.5
    assert float(jnp.abs(_apply(MODEL, params, *changed) - base).max()) > 1e-4, i


def test_any_resolution_and_aspect_ratio(params):
  out = _apply(MODEL, params, *_inputs(hw=(12, 20)))
  assert out.shape == (2, 12, 20, 3) and bool(jnp.isfinite(out).all())


def test_depth_as_separate_tokens():
  model = DiT(SIZE, patch_size=4, depth_mode="tokens")
  x, t, ref, disp, cam, keep = _inputs()
  boxed = jax.eval_shape(model.init, jax.random.key(0), x, t, ref, disp, cam, keep)["params"]
  params = _perturb(jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), nn.unbox(boxed)))
  pair = lambda a, b: jnp.concatenate([a, b])
  out = jax.jit(model.apply)({"params": params}, pair(x, x), pair(t, t), pair(ref, ref),
                             pair(disp, jnp.flip(disp, 1)), pair(cam, cam), pair(keep, keep))
  assert out.shape == (4, 16, 16, 3)
  assert float(jnp.abs(out[:2] - out[2:]).max()) > 1e-4  # the depth tokens are attended to


def test_disparity_at_a_multiple_of_the_latent_resolution():
  model = DiT(SIZE, patch_size=2, latent_channels=4)
  x, t, ref, _, cam, keep = _inputs()
  x, ref = x[..., :2].repeat(2, -1)[:, :8, :8], ref[..., :2].repeat(2, -1)[:, :8, :8]
  disp = jnp.zeros((2, 64, 64))  # image resolution = 8 x latent resolution
  boxed = jax.eval_shape(model.init, jax.random.key(0), x, t, ref, disp, cam, keep)["params"]
  out = jax.eval_shape(model.apply, {"params": nn.unbox(boxed)}, x, t, ref, disp, cam, keep)
  assert out.shape == x.shape


def test_scan_over_layers_equals_the_loop(params):
  inputs = _inputs()
  params = dict(params)
  blocks = [params.pop(f"block_{i}") for i in range(SIZE.depth)]
  scanned_params = dict(params, blocks=jax.tree.map(lambda *xs: jnp.stack(xs), *blocks))
  for i, block in enumerate(blocks):
    params[f"block_{i}"] = block
  scanned = DiT(SIZE, patch_size=4, scan_layers=True, remat="dots")
  np.testing.assert_allclose(_apply(scanned, scanned_params, *inputs),
                             _apply(MODEL, params, *inputs), rtol=1e-5, atol=1e-5)


def test_remat_keeps_gradients(params):
  inputs = _inputs()
  plain = MODEL
  grad = lambda m: jax.jit(jax.grad(
      lambda p: jnp.sum(m.apply({"params": p}, *inputs) ** 2)))(params)
  for a, b in zip(jax.tree.leaves(grad(plain)),
                  jax.tree.leaves(grad(DiT(SIZE, patch_size=4, remat="full")))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("scan", [False, True])
def test_every_parameter_has_logical_axis_names(scan):
  model = DiT(SIZE, patch_size=4, scan_layers=scan)
  boxed = jax.eval_shape(model.init, jax.random.key(0), *_inputs())["params"]
  leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  assert leaves
  for leaf in leaves:
    assert isinstance(leaf, nn.Partitioned), leaf
    assert len(leaf.names) == leaf.value.ndim, (leaf.names, leaf.value.shape)
  if scan:
    assert all(leaf.names[0] == "layers" for leaf in
               jax.tree.leaves(boxed["blocks"], is_leaf=lambda x: isinstance(x, nn.Partitioned)))


def test_bf16_compute_keeps_f32_params_and_output(params):
  model = DiT(SIZE, patch_size=4, dtype=jnp.bfloat16)
  inputs = _inputs()
  boxed = jax.eval_shape(model.init, jax.random.key(0), *inputs)["params"]
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nn.unbox(boxed)))
  out = _apply(model, params, *inputs)
  ref = _apply(MODEL, params, *inputs)
  assert out.dtype == jnp.float32
  assert float(jnp.abs(out - ref).max()) < 0.1 * float(jnp.abs(ref).max())


@pytest.mark.parametrize("index, value, match", [
    (0, jnp.zeros((2, 16, 16, 4)), "x_t"),
    (0, jnp.zeros((2, 18, 16, 3)), "patch_size"),
    (2, jnp.zeros((2, 8, 8, 3)), "reference"),
    (1, jnp.zeros((3,)), "t must"),
    (3, jnp.zeros((2, 24, 16)), "disparity"),
    (4, jnp.zeros((1, 6)), "camera"),
    (5, jnp.ones((3,), bool), "depth_keep"),
])
def test_bad_inputs_name_the_argument(index, value, match):
  model = DiT(SIZE, patch_size=4)
  inputs = list(_inputs())
  inputs[index] = value
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(model.init, jax.random.key(0), *inputs)


def test_build_model_from_config():
  config = get_config("tiny")
  model, codec = build_model(config)
  assert model.size == get_size("tiny") and model.patch_size == config.model.patch_size
  params = jax.eval_shape(model.init, jax.random.key(0),
                          *example_inputs(codec, config.data.image_size))
  assert "null_depth" in params["params"]
  config.model.size = "XXL"
  with pytest.raises(ValueError, match="XXL"):
    build_model(config)
  config.model.size, config.model.dtype = "tiny", "float16"
  with pytest.raises(ValueError, match="config.model.dtype"):
    build_model(config)
