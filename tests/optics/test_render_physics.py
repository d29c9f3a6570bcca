"""The physics `optics.render` must get right, each checked against an independent reference."""
import functools

import jax
import numpy as np
import pytest

from diffcamera_jax import optics
from diffcamera_jax.testing import scatter_reference as ref

SIZE = 64


@functools.partial(jax.jit, static_argnames=("gamma", "max_radius"))
def _render(image, disparity, focus, blur, blades=0, rotation=0.0, gamma=1.0, max_radius=16.0):
  aperture = optics.Aperture(blades, rotation)
  return optics.render(image, disparity, focus, blur, aperture=aperture, gamma=gamma,
                       max_radius=max_radius)


def _texture(seed: int, size: int = SIZE) -> np.ndarray:
  """Textured linear image: smooth colour noise plus hard-edged blocks."""
  rng = np.random.default_rng(seed)
  coarse = rng.random((size // 8, size // 8, 3))
  smooth = np.kron(coarse, np.ones((8, 8, 1)))
  blocks = np.kron(rng.random((size // 4, size // 4, 1)) > 0.5, np.ones((4, 4, 1)))
  return (0.6 * smooth + 0.4 * blocks).astype(np.float32)


@pytest.mark.parametrize("gamma", [1.0, 2.2])
def test_in_focus_everywhere_is_identity(gamma):
  image = _texture(0)
  disparity = np.full((SIZE, SIZE), 0.4, np.float32)
  out = np.asarray(_render(image, disparity, 0.4, 30.0, gamma=gamma))
  np.testing.assert_allclose(out, image, atol=1e-5)


@pytest.mark.parametrize("radius", [0.5, 1.0, 2.5, 5.0, 9.0, 17.0, 40.0])
def test_constant_depth_is_convolution_with_coverage_kernel(radius):
  size = 128
  image = _texture(1, size)
  disparity = np.full((size, size), 0.25, np.float32)
  out = np.asarray(_render(image, disparity, 0.75, radius / 0.5, max_radius=64.0))
  expected = ref.convolve(image, ref.coverage(radius))
  assert ref.psnr(out, expected, margin=int(radius) + 2) >= 40.0


@pytest.mark.parametrize("blades,rotation", [(0, 0.0), (5, 0.4)])
def test_constant_depth_preserves_mean_intensity(blades, rotation):
  image = _texture(2)
  disparity = np.full((SIZE, SIZE), 0.9, np.float32)
  out = np.asarray(_render(image, disparity, 0.1, 12.0, blades, rotation))
  assert abs(out.mean() - image.mean()) < 1e-3 * image.mean()


def test_no_light_wraps_around_the_borders():
  image = np.zeros((SIZE, SIZE, 3), np.float32)
  image[:, :3] = 1.0  # a bright strip on the left edge
  image[:3, :] = 1.0  # and along the top
  disparity = np.zeros((SIZE, SIZE), np.float32)
  out = np.asarray(_render(image, disparity, 1.0, 12.0))
  # CoC radius 12: the strips' light reaches ~15 px; with wrap-around it would also light the
  # right and bottom edges, which lie beyond that reach.
  assert out[32:, 32:].max() < 1e-5
  assert out[:, :3].min() > 0.3  # the light stays where it was


def test_linear_in_the_image_when_gamma_is_one():
  a, b = _texture(3), _texture(4)
  disparity = np.tile(np.linspace(0, 1, SIZE, dtype=np.float32), (SIZE, 1))
  mix = _render(2.0 * a - 0.5 * b, disparity, 0.3, 9.0)
  parts = 2.0 * _render(a, disparity, 0.3, 9.0) - 0.5 * _render(b, disparity, 0.3, 9.0)
  np.testing.assert_allclose(np.asarray(mix), np.asarray(parts), atol=1e-5)


def _disk_scene(fg_disparity: float, bg_disparity: float):
  """A red disk (radius 14) over a green-blue textured background with no red in it."""
  yy, xx = np.mgrid[:SIZE, :SIZE]
  dist = np.hypot(yy - SIZE / 2 + 0.5, xx - SIZE / 2 + 0.5)
  foreground = dist <= 14
  image = _texture(5)
  image[..., 0] = 0.0
  image[foreground] = (1.0, 0.0, 0.0)
  disparity = np.where(foreground, fg_disparity, bg_disparity).astype(np.float32)
  return image, disparity, dist


def test_blurred_foreground_spreads_over_sharp_background():
  image, disparity, dist = _disk_scene(0.9, 0.2)
  out = np.asarray(_render(image, disparity, 0.2, 10.0))  # background in focus, fg radius 7
  ring = (dist > 15) & (dist < 19)
  assert out[..., 0][ring].mean() > 0.1  # red light lands on the background around the disk
  # beyond its reach (radius 7, plus 2 px of resampling at the half-resolution level): untouched
  far = dist > 14 + 7 + 2
  np.testing.assert_allclose(out[far], image[far], atol=1e-3)


def test_sharp_foreground_keeps_its_edge_against_blurred_background():
  image, disparity, dist = _disk_scene(0.9, 0.2)
  out = np.asarray(_render(image, disparity, 0.9, 12.0))  # fg in focus, background radius 8.4
  foreground = dist <= 14
  # the background does not leak through the opaque in-focus foreground
  np.testing.assert_allclose(out[foreground], image[foreground], atol=1e-4)
  # no red halo: beyond one pixel from the disk's edge the background holds no red light
  assert out[..., 0][dist > 15].max() < 1e-4
  # and the background itself is blurred
  background = dist > 20
  assert np.abs(out[background] - image[background]).mean() > 0.02


@pytest.mark.parametrize("radius", [6.0, 11.0])
@pytest.mark.parametrize("blades,rotation", [(0, 0.0), (6, np.pi / 6), (5, np.pi / 5)])
def test_point_light_renders_the_aperture_shape(blades, rotation, radius):
  image = np.zeros((SIZE, SIZE, 3), np.float32)
  image[32, 32] = 1.0
  disparity = np.full((SIZE, SIZE), 0.5, np.float32)
  out = np.asarray(_render(image, disparity, 0.0, radius / 0.5, blades, rotation))[..., 0]
  expected = ref.coverage(radius, blades, rotation)
  half = expected.shape[0] // 2
  spot = out[32 - half:32 + half + 1, 32 - half:32 + half + 1]
  assert abs(out.sum() - 1.0) < 1e-3
  if radius <= 8:  # blurred at full resolution: the exact coverage kernel
    assert np.abs(spot - expected).sum() < 0.01
  # Radii > 8 are blurred at half resolution, which softens the edge by ~1 px: compare shapes.
  assert _iou(spot, expected) > 0.85
  if blades:  # the rotation is honoured: of four rotations spanning the symmetry, it fits best
    candidates = rotation + np.arange(4) * (2 * np.pi / blades) / 4
    errors = [np.abs(spot - ref.coverage(radius, blades, c)).sum() for c in candidates]
    assert int(np.argmin(errors)) == 0, errors


def _iou(a: np.ndarray, b: np.ndarray) -> float:
  a, b = a > 0.5 * a.max(), b > 0.5 * b.max()
  return float((a & b).sum() / (a | b).sum())


def test_more_blur_gives_less_laplacian_variance():
  image = _texture(6)
  disparity = np.full((SIZE, SIZE), 0.3, np.float32)
  variances = []
  for blur in [0.0, 2.0, 4.0, 8.0, 16.0, 32.0]:
    out = np.asarray(_render(image, disparity, 0.6, blur)).mean(-1)[8:-8, 8:-8]
    lap = out[1:-1, 1:-1] * 4 - out[2:, 1:-1] - out[:-2, 1:-1] - out[1:-1, 2:] - out[1:-1, :-2]
    variances.append(lap.var())
  assert all(a > b for a, b in zip(variances, variances[1:])), variances


def _layered_scene(seed: int):
  """A background plane and three textured rectangles, each at its own random disparity."""
  rng = np.random.default_rng(seed)
  image = _texture(10 + seed)
  depths = np.sort(rng.uniform(0.0, 1.0, 4))
  disparity = np.full((SIZE, SIZE), depths[0], np.float32)
  for depth in depths[1:]:
    y, x = rng.integers(8, SIZE - 24, 2)
    h, w = rng.integers(8, 24, 2)
    disparity[y:y + h, x:x + w] = depth
  focus = float(rng.choice(depths))
  blur = float(rng.uniform(6.0, 14.0))
  return image, disparity, focus, blur


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_agrees_with_exact_scatter_on_layered_scenes(seed):
  image, disparity, focus, blur = _layered_scene(seed)
  expected = ref.scatter(image, disparity, focus, blur)
  out = np.asarray(_render(image, disparity, focus, blur))
  assert ref.psnr(out, expected, margin=int(blur) + 2) >= 35.0
