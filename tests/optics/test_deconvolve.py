"""The Wiener deconvolution bank: shapes, restoration at the right radius, bad input."""
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipeline import procedural
from diffcamera_jax import optics
from diffcamera_jax.optics.deconvolve import mirror_extend, wiener_bank


def _psnr(a, b):
  return float(-10 * np.log10(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def test_shape_and_range():
  image = np.stack([procedural.make_scene(3, i, 48, 48)[0] for i in range(2)])
  out = wiener_bank(jnp.asarray(image), (0.5, 1.5, 3.0))
  assert out.shape == (2, 48, 48, 3, 3)
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("radius,least_gain", [(1.5, 2.0), (2.5, 3.0), (4.0, 1.5)])
def test_deconvolving_by_the_true_disk_restores_and_a_wrong_one_does_less(radius, least_gain):
  sharp, _ = procedural.make_scene(3, 1, 64, 64, layout="layers")  # dense texture
  flat = np.zeros(sharp.shape[:2], np.float32)
  blurred = np.asarray(optics.render(sharp, flat, 1.0, radius, max_radius=radius + 1))
  bank = np.asarray(wiener_bank(jnp.asarray(blurred[None]), (radius, 2 * radius + 1)))[0]
  gain_right = _psnr(bank[:, :, 0], sharp) - _psnr(blurred, sharp)
  gain_wrong = _psnr(bank[:, :, 1], sharp) - _psnr(blurred, sharp)
  assert gain_right > least_gain
  assert gain_wrong < gain_right - 0.5
  # The borders gain too: the FFT sees the mirror extension the renderer blurred, so nothing
  # rings in from the wrap-around.
  strip = np.ones(sharp.shape[:2], bool)
  strip[6:-6, 6:-6] = False
  assert _psnr(bank[strip, 0], sharp[strip]) - _psnr(blurred[strip], sharp[strip]) > least_gain


def test_mirror_extension_is_periodic_and_continuous():
  x = np.arange(12, dtype=np.float32).reshape(3, 4)
  ext = np.asarray(mirror_extend(jnp.asarray(x)))
  assert ext.shape == (6, 8)
  np.testing.assert_array_equal(ext[:3, :4], x)
  np.testing.assert_array_equal(ext[3:, :4], x[::-1])
  np.testing.assert_array_equal(ext[:, 4:], ext[:, :4][:, ::-1])
  # wrapping around repeats the edge pixel (half-sample symmetric), like the interior seams
  np.testing.assert_array_equal(ext[-1], ext[0])
  np.testing.assert_array_equal(ext[:, -1], ext[:, 0])


def test_bad_input():
  with pytest.raises(ValueError, match="image must be"):
    wiener_bank(jnp.zeros((8, 8, 3)), (1.0,))
  with pytest.raises(ValueError, match="radii must be positive"):
    wiener_bank(jnp.zeros((1, 8, 8, 3)), (0.0, 1.0))
