"""The device stage: outputs obey the optics, mirroring, per-example apertures, batch sharding."""
import functools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax.configs import default
from data_pipeline import procedural
from diffcamera_jax.objective import example as simulate_lib
from diffcamera_jax import optics

SIZE = 24
MAX_RADIUS = 4.0


def _batch():
  scenes = [procedural.make_scene(0, i, SIZE, SIZE) for i in range(4)]
  return {
      "image": np.stack([s[0] for s in scenes]),
      "disparity": np.stack([s[1] for s in scenes]),
      "source_focus": np.array([[0.5, 0.5], [0.2, 0.7], [0.9, 0.1], [0.4, 0.3]], np.float32),
      "source_blur": np.array([0.0, 2.0, 3.5, 1.0], np.float32),  # example 0: all in focus
      "target_focus": np.array([[0.1, 0.1], [0.6, 0.4], [0.3, 0.8], [0.7, 0.7]], np.float32),
      "target_focus_2": np.array([[0.8, 0.9], [0.1, 0.2], [0.6, 0.2], [0.2, 0.5]], np.float32),
      "target_blur": np.array([3.0, 0.0, 4.0, 2.5], np.float32),  # example 1: deblur target
      "aperture_blades": np.array([0, 0, 6, 5], np.int32),  # per-example apertures
      "aperture_rotation": np.array([0.0, 0.0, 0.3, 1.0], np.float32),
  }


@functools.lru_cache(maxsize=None)
def _simulator(gamma):
  """The device stage at `gamma`, its `Example` returned as a dict of fields."""
  fn = jax.jit(functools.partial(simulate_lib.simulate, gamma=gamma, max_radius=MAX_RADIUS))
  return lambda *args: fn(*args).to_dict()


@pytest.fixture(scope="module")
def batch():
  return _batch()


@pytest.fixture(scope="module")
def out(batch):
  return jax.tree.map(np.asarray, _simulator(2.2)(batch))


def _render(batch, focus_key, blur_key, gamma=2.2):
  d_f = optics.focus_disparity(batch["disparity"], batch[focus_key])
  aperture = optics.Aperture(jnp.asarray(batch["aperture_blades"]),
                             jnp.asarray(batch["aperture_rotation"]))
  return np.asarray(jax.jit(functools.partial(optics.render, gamma=gamma, max_radius=MAX_RADIUS))(
      batch["image"], batch["disparity"], d_f, batch[blur_key], aperture=aperture))


def test_outputs_follow_the_device_example_table(batch, out):
  b = batch["image"].shape[0]
  shapes = {"reference": (b, SIZE, SIZE, 3), "target": (b, SIZE, SIZE, 3),
            "target_2": (b, SIZE, SIZE, 3), "multifocus": (b, SIZE, SIZE, 3),
            "stack_mask": (b, SIZE, SIZE), "target_focus_disparity": (b,),
            "target_focus_disparity_2": (b,)}
  assert set(out) == set(batch) | set(shapes)
  for key, shape in shapes.items():
    assert out[key].shape == shape and out[key].dtype == np.float32, key
  for key in batch:  # host keys pass through unchanged without an rng
    np.testing.assert_array_equal(out[key], batch[key])


@pytest.mark.parametrize("key,focus,blur", [("reference", "source_focus", "source_blur"),
                                            ("target", "target_focus", "target_blur"),
                                            ("target_2", "target_focus_2", "target_blur")])
def test_renders_equal_optics_render_of_the_same_inputs(batch, out, key, focus, blur):
  # Linear light: only float rounding differs (the three renders share one 3B-batch call).
  linear = jax.tree.map(np.asarray, _simulator(1.0)(batch))
  np.testing.assert_allclose(linear[key], _render(batch, focus, blur, gamma=1.0), atol=1e-5)
  # sRGB: x ** (1 / 2.2) magnifies that rounding in the darkest values.
  np.testing.assert_allclose(out[key], _render(batch, focus, blur), atol=2e-3)


def test_focus_disparities_mask_and_multifocus_obey_the_optics(batch, out):
  d_1 = np.asarray(optics.focus_disparity(batch["disparity"], batch["target_focus"]))
  d_2 = np.asarray(optics.focus_disparity(batch["disparity"], batch["target_focus_2"]))
  np.testing.assert_array_equal(out["target_focus_disparity"], d_1)
  np.testing.assert_array_equal(out["target_focus_disparity_2"], d_2)
  disparity = batch["disparity"]
  mask = np.abs(disparity - d_1[:, None, None]) <= np.abs(disparity - d_2[:, None, None])
  np.testing.assert_array_equal(out["stack_mask"], mask.astype(np.float32))
  aperture = optics.Aperture(jnp.asarray(batch["aperture_blades"]),
                             jnp.asarray(batch["aperture_rotation"]))
  expected = jax.jit(functools.partial(optics.render_multifocus, max_radius=MAX_RADIUS))(
      batch["image"], disparity, d_1, d_2, batch["target_blur"], aperture=aperture)
  np.testing.assert_allclose(out["multifocus"], np.asarray(expected), atol=1e-5)


def test_zero_blur_renders_the_all_in_focus_image(batch, out):
  np.testing.assert_allclose(out["reference"][0], batch["image"][0], atol=2e-3)
  np.testing.assert_allclose(out["target"][1], batch["image"][1], atol=2e-3)
  np.testing.assert_allclose(out["target_2"][1], batch["image"][1], atol=2e-3)


def test_each_example_uses_its_own_aperture(batch, out):
  disk = dict(batch, aperture_blades=np.zeros(4, np.int32))
  as_disk = jax.tree.map(np.asarray, _simulator(2.2)(disk))
  np.testing.assert_array_equal(as_disk["target"][:2], out["target"][:2])  # disks already
  for b in (2, 3):  # hexagon, pentagon
    assert np.abs(as_disk["target"][b] - out["target"][b]).max() > 1e-2


def test_mirrored_cameras_render_the_mirrored_image(batch, out):
  flipped = simulate_lib.mirror(jax.tree.map(jnp.asarray, batch), jnp.ones(4, bool))
  mirrored = jax.tree.map(np.asarray, _simulator(2.2)(flipped))
  for key in ("reference", "target", "target_2", "multifocus", "stack_mask"):
    np.testing.assert_allclose(mirrored[key], out[key][:, :, ::-1], atol=2e-3, err_msg=key)


def test_rng_mirrors_a_random_subset_of_examples(batch, out):
  rng = jax.random.key(3)
  flip = np.asarray(jax.random.bernoulli(rng, 0.5, (4,)))
  augmented = jax.tree.map(np.asarray, _simulator(2.2)(batch, rng))
  for b in range(4):
    expected = out["target"][b, :, ::-1] if flip[b] else out["target"][b]
    np.testing.assert_allclose(augmented["target"][b], expected, atol=2e-3)
    x = batch["target_focus"][b, 0]
    assert np.isclose(augmented["target_focus"][b, 0], 1 - x if flip[b] else x)


def test_max_blur_radius_covers_the_config_blur_range():
  data = default.get_config().data
  expected = data.blur_range[1] * max(data.image_size) / data.blur_reference_size
  assert simulate_lib.max_blur_radius(data) == pytest.approx(expected)


def test_missing_keys_are_named(batch):
  with pytest.raises(KeyError, match="target_blur"):
    simulate_lib.simulate({k: v for k, v in batch.items() if k != "target_blur"})


_SHARDED = textwrap.dedent("""
    import functools, sys, jax, numpy as np
    from diffcamera_jax.configs import default
    from data_pipeline import pipeline
    from diffcamera_jax.objective import example as simulate
    batch_file, SIZE, MAX_RADIUS = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    mesh = jax.sharding.Mesh(np.array(jax.devices()).reshape(2, 2, 1), ("data", "fsdp", "tensor"))
    with np.load(batch_file) as f:  # the test's `_batch()`
      host = {key: f[key] for key in f.files}
    sim = jax.jit(functools.partial(simulate.simulate, max_radius=MAX_RADIUS))
    out = sim(pipeline.to_global_batch(host, mesh)).to_dict()
    single = sim(jax.device_put(host, jax.devices()[0])).to_dict()
    config = default.get_config("tiny")
    config.data.image_size, config.data.blur_reference_size = (SIZE, SIZE), SIZE
    config.data.blur_range = (0.0, MAX_RADIUS)  # so max_blur_radius(config) == MAX_RADIUS
    from_config = simulate.make_simulate_fn(config, mesh)(host, None).to_dict()  # numpy input
    for key, value in from_config.items():
      assert value.sharding.spec[0] == ("data", "fsdp"), (key, value.sharding)
      np.testing.assert_allclose(np.asarray(value), np.asarray(out[key]), atol=2e-3)
    for key, value in out.items():
      assert value.sharding.spec[0] == ("data", "fsdp"), (key, value.sharding)
      assert len(value.addressable_shards) == 4 and value.addressable_shards[0].data.shape[0] == 1
      np.testing.assert_allclose(np.asarray(value), np.asarray(single[key]), atol=2e-3)
    print("ok")
""")


def test_sharded_batches_give_sharded_outputs_equal_to_one_device(tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  batch_file = tmp_path / "batch.npz"
  np.savez(batch_file, **_batch())
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu", PYTHONPATH=root)
  result = subprocess.run([sys.executable, "-c", _SHARDED, str(batch_file), str(SIZE),
                           str(MAX_RADIUS)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
