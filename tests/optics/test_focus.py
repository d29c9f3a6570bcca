"""focus_disparity (robust window median) and signed_coc."""
import numpy as np
import pytest

from diffcamera_jax import optics


def test_focus_reads_the_window_median_and_ignores_thin_structures():
  disparity = np.full((64, 64), 0.3, np.float32)
  disparity[:, 40:] = 0.8
  disparity[20, :] = 1.0  # a thin line through the focus point
  assert float(optics.focus_disparity(disparity, np.array([0.25, 20.5 / 64]))) == pytest.approx(0.3)
  assert float(optics.focus_disparity(disparity, np.array([0.9, 0.5]))) == pytest.approx(0.8)


def test_focus_is_batched_and_clipped_at_borders():
  disparity = np.stack([np.full((32, 48), v, np.float32) for v in (0.1, 0.6)])
  disparity[1, 0, 0] = 0.9  # an outlier in the corner
  points = np.array([[0.5, 0.5], [0.0, 0.0]], np.float32)
  out = np.asarray(optics.focus_disparity(disparity, points))
  np.testing.assert_allclose(out, [0.1, 0.6])  # the corner window is clipped inside the image
  assert out.shape == (2,)


def test_focus_rejects_bad_shapes():
  with pytest.raises(ValueError, match="point"):
    optics.focus_disparity(np.zeros((8, 8), np.float32), np.zeros(3))
  with pytest.raises(ValueError, match="disparity"):
    optics.focus_disparity(np.zeros((8,), np.float32), np.zeros(2))


def test_signed_coc_is_blur_times_disparity_offset_per_example():
  disparity = np.random.default_rng(0).random((2, 4, 5)).astype(np.float32)
  coc = np.asarray(optics.signed_coc(disparity, np.array([0.2, 0.7]), np.array([10.0, 3.0])))
  np.testing.assert_allclose(coc[0], 10.0 * (disparity[0] - 0.2), rtol=1e-6)
  np.testing.assert_allclose(coc[1], 3.0 * (disparity[1] - 0.7), rtol=1e-6)
  assert float(optics.signed_coc(np.float32(0.9), 0.4, 2.0)) == pytest.approx(1.0)
