"""Deblurring by inverting the renderer: restores with the true camera, bad input."""
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipeline import procedural
from diffcamera_jax import optics
from diffcamera_jax.optics.invert import invert_render


def _psnr(a, b):
  return float(-10 * np.log10(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def test_inverting_a_layered_render_with_its_camera_restores():
  scenes = [procedural.make_scene(7, i, 48, 48) for i in range(2)]
  sharp = np.stack([s[0] for s in scenes])
  disparity = np.stack([s[1] for s in scenes])
  focus = jnp.asarray([0.2, 0.8])
  blur = jnp.asarray([3.0, 2.5])
  photo = optics.render(sharp, disparity, focus, blur, max_radius=8.0)
  restored = invert_render(photo, disparity, focus, blur, iterations=40)
  for i in range(2):
    assert _psnr(restored[i], sharp[i]) > _psnr(photo[i], sharp[i]) + 2.0
  # a camera far from the truth does worse than the true one
  wrong = invert_render(photo, disparity, 1.0 - focus, blur * 1.5, iterations=40)
  assert _psnr(wrong, sharp) < _psnr(restored, sharp) - 2.0


def test_no_iterations_return_the_start_and_bad_input_is_named():
  photo = jnp.full((1, 8, 8, 3), 0.5)
  start = jnp.full((1, 8, 8, 3), 0.25)
  out = invert_render(photo, jnp.zeros((1, 8, 8)), jnp.zeros(1), jnp.ones(1), init=start,
                      iterations=0)
  np.testing.assert_allclose(out, start)
  with pytest.raises(ValueError, match="photo must be"):
    invert_render(jnp.zeros((8, 8, 3)), jnp.zeros((8, 8)), 0.0, 1.0)
  with pytest.raises(ValueError, match="iterations must be"):
    invert_render(photo, jnp.zeros((1, 8, 8)), jnp.zeros(1), jnp.ones(1), iterations=-1)
