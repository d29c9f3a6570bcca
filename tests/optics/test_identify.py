"""Blind identification of a uniform disk defocus from the photo's spectrum."""
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipeline import procedural
from diffcamera_jax import optics
from diffcamera_jax.optics.identify import blur_log_likelihood, identify_uniform_blur

RADII = (0.0,) + tuple(np.geomspace(0.8, 12.0, 40))


def _uniform(sharp, radius):
  flat = np.zeros(sharp.shape[:3], np.float32)
  return np.asarray(optics.render(sharp, flat, np.ones(len(sharp), np.float32),
                                  np.full(len(sharp), radius, np.float32), max_radius=radius + 1))


def _scenes(count, size=96, seed=7):
  return np.stack([procedural.make_scene(seed, i, size, size)[0] for i in range(count)])


@pytest.mark.parametrize("radius", [1.5, 3.0, 5.0])
def test_the_radius_of_a_uniform_defocus_is_found(radius):
  sharp = _scenes(3)
  found, gain = identify_uniform_blur(jnp.asarray(_uniform(sharp, radius)), RADII)
  np.testing.assert_allclose(np.asarray(found), radius, rtol=0.06)
  assert np.all(np.asarray(gain) > 0.5)


def test_a_sharp_photo_is_found_sharp_and_noise_does_not_mislead():
  sharp = _scenes(3)
  found, gain = identify_uniform_blur(jnp.asarray(sharp), RADII)
  assert np.all((np.asarray(found) == 0) | (np.asarray(gain) < 0.2))
  rng = np.random.default_rng(0)
  noisy = _uniform(sharp, 3.0) + rng.normal(0.0, 0.003, sharp.shape)
  noisy = np.round(np.clip(noisy, 0, 1) * 255) / 255  # 8-bit, like a saved photo
  found, _ = identify_uniform_blur(jnp.asarray(noisy, jnp.float32), RADII)
  np.testing.assert_allclose(np.asarray(found), 3.0, rtol=0.1)


def test_the_likelihood_peaks_at_the_true_radius_and_bad_input_is_named():
  photo = jnp.asarray(_uniform(_scenes(1), 2.5))
  ll = np.asarray(blur_log_likelihood(photo, (0.0, 1.25, 2.5, 5.0)))[0]
  assert np.argmax(ll) == 2 and ll[3] < ll[2] and ll[1] < ll[2]
  with pytest.raises(ValueError, match="image must be"):
    blur_log_likelihood(jnp.zeros((8, 8, 3)), (0.0, 1.0))
  with pytest.raises(ValueError, match="radii must be"):
    blur_log_likelihood(photo, (-1.0, 1.0))
  with pytest.raises(ValueError, match="must include 0"):
    identify_uniform_blur(photo, (1.0, 2.0))
