"""Deblurring without depth: a photo defocused as a whole is inverted; one whose blur varies
across it (depth), or a sharp one, is left to the model."""
import numpy as np

from data_pipeline import procedural
from diffcamera_jax import optics
from diffcamera_jax.inference.physics_deblur import UniformSearch, deblur_uniform


def _psnr(a, b):
  return -10 * np.log10(np.mean((a - b) ** 2, axis=(1, 2, 3)))


def test_a_uniformly_defocused_photo_is_restored_and_others_left_alone():
  scenes = [procedural.make_scene(11, i, 128, 128) for i in range(2)]
  sharp = np.stack([s[0] for s in scenes])
  disparity = np.stack([s[1] for s in scenes])
  flat = np.zeros(disparity.shape, np.float32)
  uniform = np.asarray(optics.render(sharp, flat, np.ones(2, np.float32),
                                     np.asarray([2.0, 3.5], np.float32), max_radius=5.0))
  out, info = deblur_uniform(uniform, UniformSearch())
  assert info["deblurred"].all()
  np.testing.assert_allclose(info["blur"], [2.0, 3.5], rtol=0.06)
  assert np.all(_psnr(out, sharp) > _psnr(uniform, sharp) + 2.0)
  # a blur that varies with depth (near in focus, far 6 px) is not one disk: the quadrants
  # disagree, and the photo comes back as it was
  varying = np.asarray(optics.render(sharp, disparity, np.ones(2, np.float32),
                                     np.full(2, 6.0, np.float32), max_radius=7.0))
  # blurred on the encoded values (as software blurs a saved image), found in that encoding
  encoded = np.asarray(optics.render(sharp, flat, np.ones(2, np.float32),
                                     np.full(2, 3.0, np.float32), gamma=1.0, max_radius=5.0))
  out, info = deblur_uniform(encoded, UniformSearch())
  assert info["deblurred"].all() and np.all(info["gamma"] == 1.0)
  np.testing.assert_allclose(info["blur"], 3.0, rtol=0.06)
  assert np.all(_psnr(out, sharp) > _psnr(encoded, sharp) + 2.0)
  out, info = deblur_uniform(varying, UniformSearch())
  assert not info["tiles_agree"].any() and not info["deblurred"].any()
  np.testing.assert_array_equal(out, varying)
  out, info = deblur_uniform(sharp, UniformSearch())
  assert not info["deblurred"].any()
  np.testing.assert_array_equal(out, sharp)
  # photos over max_side are not searched
  out, info = deblur_uniform(uniform, UniformSearch(max_side=100))
  assert not info["deblurred"].any()
  np.testing.assert_array_equal(out, uniform)
