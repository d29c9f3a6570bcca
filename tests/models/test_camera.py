"""Camera features: resolution-independent blur, aperture symmetry, clear shape errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax.models.camera import CAMERA_FEATURES, CameraEmbedder, camera_features


def _features(focus=((0.25, 0.75),), blur=(8.0,), hw=(64, 64), blades=(0,), rotation=(0.3,)):
  return camera_features(jnp.array(focus), jnp.array(blur), hw, jnp.array(blades),
                         jnp.array(rotation))


def test_layout_and_blur_normalised_by_longer_side():
  f = np.asarray(_features(blur=(16.0,), hw=(48, 80)))
  assert f.shape == (1, CAMERA_FEATURES)
  np.testing.assert_allclose(f[0, :3], [0.25, 0.75, 16.0 / 80.0])
  # The same relative blur at twice the resolution gives the same condition.
  np.testing.assert_allclose(_features(blur=(8.0,), hw=(64, 64)),
                             _features(blur=(16.0,), hw=(128, 128)))


def test_polygon_rotation_is_taken_modulo_its_symmetry():
  n = 6
  a = _features(blades=(n,), rotation=(0.2,))
  b = _features(blades=(n,), rotation=(0.2 + 2 * np.pi / n,))
  c = _features(blades=(n,), rotation=(0.2 + np.pi / n,))
  np.testing.assert_allclose(a, b, atol=1e-5)
  assert not np.allclose(a, c, atol=1e-3)
  np.testing.assert_allclose(a[0, 3], 3.0 / n)


def test_disk_ignores_rotation():
  a, b = _features(blades=(0,), rotation=(0.0,)), _features(blades=(0,), rotation=(1.1,))
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(np.asarray(a)[0, 3:], 0.0)


@pytest.mark.parametrize("kwargs, name", [
    (dict(focus=((0.5,),)), "focus"),
    (dict(blur=(1.0, 2.0)), "blur"),
    (dict(blades=(0, 0)), "blades"),
    (dict(rotation=()), "rotation"),
    (dict(hw=(0, 64)), "image_hw"),
])
def test_bad_shapes_name_the_argument(kwargs, name):
  with pytest.raises(ValueError, match=name):
    _features(**kwargs)


def test_embedder_makes_distinct_tokens_for_distinct_blur():
  embedder = CameraEmbedder(num_tokens=3, width=16)
  cams = jnp.concatenate([_features(blur=(0.0,)), _features(blur=(4.0,))])
  params = embedder.init(jax.random.key(0), cams)
  tokens = embedder.apply(params, cams)
  assert tokens.shape == (2, 3, 16)
  assert float(jnp.abs(tokens[0] - tokens[1]).max()) > 1e-3
