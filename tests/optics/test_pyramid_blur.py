"""Resampling and FFT convolution primitives."""
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax.optics import blur, pyramid
from diffcamera_jax.testing import scatter_reference as ref


def test_decimate_keeps_light_and_the_centroid_of_a_point():
  x = np.zeros((1, 16, 16), np.float32)
  x[0, 6, 9] = 1.0
  y = np.asarray(pyramid.decimate(jnp.asarray(x), 4))[0]
  assert y.sum() * 16 == pytest.approx(1.0, abs=1e-6)
  rows, cols = np.mgrid[:4, :4] * 4 + 1.5  # low-res pixel centres in full-resolution units
  assert (y * rows).sum() / y.sum() == pytest.approx(6.0, abs=1e-5)
  assert (y * cols).sum() / y.sum() == pytest.approx(9.0, abs=1e-5)


def test_upsample_reproduces_linear_ramps_away_from_the_edges():
  ramp = np.add.outer(np.arange(8.0), 2 * np.arange(8.0))[None].astype(np.float32)
  up = np.asarray(pyramid.upsample2(jnp.asarray(ramp)))[0]
  fine = (np.arange(16) - 0.5) / 2  # fine pixel centres in coarse units
  expected = np.add.outer(fine, 2 * fine)
  np.testing.assert_allclose(up[4:-4, 4:-4], expected[4:-4, 4:-4], atol=1e-5)


def test_decimate_rejects_non_powers_of_two():
  with pytest.raises(ValueError, match="factor"):
    pyramid.decimate(jnp.zeros((1, 6, 6)), 3)


def test_fft_convolution_matches_direct_convolution_inside():
  rng = np.random.default_rng(0)
  planes = rng.random((2, 20, 24, 1, 3)).astype(np.float32)
  kernel = rng.random((2, 1, 7, 7)).astype(np.float32)
  out = np.asarray(blur.convolve(jnp.asarray(planes), jnp.asarray(kernel)))
  for b in range(2):
    expected = ref.convolve(planes[b, :, :, 0], kernel[b, 0])
    np.testing.assert_allclose(out[b, 3:-3, 3:-3, 0], expected[3:-3, 3:-3], atol=1e-5)


def test_fft_convolution_reflects_at_borders():
  planes = np.zeros((1, 16, 16, 1, 1), np.float32)
  planes[0, :, 0] = 1.0  # a line on the left edge
  kernel = np.full((1, 1, 5, 5), 1 / 25, np.float32)
  out = np.asarray(blur.convolve(jnp.asarray(planes), jnp.asarray(kernel)))[0, :, :, 0, 0]
  np.testing.assert_allclose(out[:, 0], 2 / 5, atol=1e-6)  # mirrored line counts twice
  assert np.abs(out[:, 3:]).max() < 1e-6  # nothing wraps to the right edge


@pytest.mark.parametrize("n", [1, 7, 97, 522, 1025])
def test_fast_length_is_smooth_and_not_smaller(n):
  m = blur.fast_length(n)
  assert m >= n
  for p in (2, 3, 5):
    while m % p == 0:
      m //= p
  assert m == 1


@pytest.mark.parametrize("size", [3, 5])
def test_direct_convolution_equals_fft_convolution(size):
  rng = np.random.default_rng(1)
  planes = jnp.asarray(rng.random((2, 3, 4, 17, 20)).astype(np.float32))
  kernel = jnp.asarray(rng.random((2, 3, size, size)).astype(np.float32))
  np.testing.assert_allclose(np.asarray(blur.direct_convolve(planes, kernel)),
                             np.asarray(blur.fft_convolve(planes, kernel)), atol=1e-5)


def test_channel_last_convolve_equals_channel_first():
  rng = np.random.default_rng(2)
  planes = rng.random((2, 12, 14, 3, 4)).astype(np.float32)
  kernel = jnp.asarray(rng.random((2, 3, 5, 5)).astype(np.float32))
  out = np.asarray(blur.convolve(jnp.asarray(planes), kernel))
  expected = np.asarray(blur.fft_convolve(jnp.asarray(planes.transpose(0, 3, 4, 1, 2)), kernel))
  np.testing.assert_allclose(out, expected.transpose(0, 3, 4, 1, 2), atol=1e-6)


def test_decimate_window_of_a_symmetric_padding_equals_decimate():
  rng = np.random.default_rng(3)
  x = rng.random((2, 3, 12, 16)).astype(np.float32)
  padded = np.pad(x, ((0, 0), (0, 0), (3, 5), (2, 4)), mode="symmetric")
  out = pyramid.decimate_window(jnp.asarray(padded), (3, 2), (12, 16))
  np.testing.assert_allclose(np.asarray(out), np.asarray(pyramid.decimate(jnp.asarray(x), 2)),
                             atol=1e-6)
  with pytest.raises(ValueError, match="border"):
    pyramid.decimate_window(jnp.asarray(x), (0, 0), (12, 16))
