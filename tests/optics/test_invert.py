"""Deblurring by inverting the renderer: restores with the true camera, bad input."""
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipeline import procedural
from diffcamera_jax import optics
from diffcamera_jax.optics.invert import estimate_camera, explained_residual, invert_render


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


def _scenes(indices, quantiles, blurs):
  scenes = [procedural.make_scene(7, i, 64, 64) for i in indices]
  sharp = np.stack([s[0] for s in scenes])
  disparity = np.stack([s[1] for s in scenes])
  focus = np.asarray([np.quantile(d, q) for d, q in zip(disparity, quantiles)], np.float32)
  blur = np.asarray(blurs, np.float32)
  return sharp, disparity, focus, blur, optics.render(sharp, disparity, focus, blur, max_radius=6.0)


def test_the_true_camera_explains_the_photo_best():
  _, disparity, focus, blur, photo = _scenes(range(4), (0.3, 0.7, 0.5, 0.9), (3.0, 2.0, 2.5, 3.5))
  ratio = lambda d, k: np.log(np.asarray(explained_residual(
      photo, disparity, jnp.asarray(d), jnp.asarray(k), iterations=25, max_radius=8.0)))
  true = ratio(focus, blur)
  for d, k in ((focus, 1.4 * blur), (np.clip(focus + 0.15, 0, 1), blur)):
    assert np.mean(ratio(d, k) - true) > np.log(3.0)


def test_estimating_the_camera_of_a_clear_case():
  _, disparity, focus, blur, photo = _scenes((0, 3), (0.3, 0.9), (3.0, 3.5))
  d, k, explained = (np.asarray(a) for a in estimate_camera(
      photo, disparity, blur_range=(0.5, 6.0), max_radius=6.0, iterations=25, focus_levels=7,
      blur_levels=5))
  np.testing.assert_allclose(d, focus, atol=0.06)
  np.testing.assert_allclose(k, blur, rtol=0.15)
  assert np.all((explained > 0) & (explained < 0.06))
  with pytest.raises(ValueError, match="blur_range"):
    estimate_camera(photo, disparity, blur_range=(0.0, 5.0))


def test_the_search_in_chunks_picks_the_grid_argmin():
  """Candidates are scored nine at a time; with no refinement the winner is the argmin of every
  grid camera's score (7 x 2 = 14 candidates: two chunks, the second padded)."""
  _, disparity, focus, blur, photo = _scenes((1,), (0.6,), (2.5,))
  photo, disparity = photo[:, ::2, ::2], disparity[:, ::2, ::2]
  d, k, s = (np.asarray(a) for a in estimate_camera(
      photo, disparity, blur_range=(0.5, 2.0), focus_levels=7, blur_levels=2, refinements=0,
      iterations=5, max_radius=2.0))
  levels = np.linspace(0.0, 1.0, 7)
  grid_d = np.repeat(np.quantile(np.asarray(disparity[0]), levels), 2).astype(np.float32)
  grid_k = np.tile(np.geomspace(0.5, 2.0, 2), 7).astype(np.float32)
  every = np.asarray(explained_residual(
      jnp.repeat(photo, 14, 0), jnp.repeat(disparity, 14, 0), jnp.asarray(grid_d),
      jnp.asarray(grid_k), iterations=5, max_radius=2.0))
  i = int(np.argmin(every))
  np.testing.assert_allclose(d, grid_d[i], atol=1e-6)
  np.testing.assert_allclose(k, grid_k[i], rtol=1e-6)
  np.testing.assert_allclose(s, every[i], rtol=1e-4)
