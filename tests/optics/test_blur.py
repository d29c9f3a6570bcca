"""The FFT and direct convolution primitives."""
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax.optics import blur
from diffcamera_jax.testing import scatter_reference as ref


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
