"""`optics.psf`: the point-light measures, checked on an exact disk, and the renderer's point
lights read with them: a lens's disc (radius, a 1-2 px rim, round, no negative light) at small and
large radii, and the polygons' extent ratios."""
import numpy as np
import pytest

from diffcamera_jax import optics
from diffcamera_jax.optics import psf


def exact_disk(radius: float, size: int, supersample: int = 8) -> np.ndarray:
  """The disk's area coverage per pixel, centred on pixel (size // 2, size // 2)."""
  sub = (np.arange(supersample) + 0.5) / supersample - 0.5
  c = (np.arange(size)[:, None] - size // 2 + sub[None, :]).reshape(-1)
  hit = np.hypot(c[None, :], c[:, None]) <= radius
  return hit.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


@pytest.mark.parametrize("radius", [15.0, 60.0])
def test_an_exact_disk_measures_as_one(radius):
  size = 2 * (int(radius * 1.25) + 16)
  m = psf.measure(exact_disk(radius, size), radius)
  assert abs(m.radius_at_half - radius) < 0.01 * radius
  assert m.edge_width_10_90 < 1.5
  assert m.outline_max_over_min < 1.02
  assert m.min_over_peak == 0.0


def test_a_soft_or_ringing_disk_is_caught():
  """The measures see what they are for: a blurred rim is wide, a dark ring is negative."""
  from scipy import ndimage
  disk = exact_disk(20.0, 88)
  soft = ndimage.gaussian_filter(disk, 3.0)
  assert psf.measure(soft, 20.0).edge_width_10_90 > 5.0
  ringing = disk - 0.05 * disk.max() * (np.abs(np.hypot(*np.mgrid[-44:44, -44:44]) - 22) < 1)
  assert psf.measure(ringing, 20.0).min_over_peak < -0.04


def _point_light(radius: float, **aperture) -> np.ndarray:
  image, disparity = psf.point_light_scene(2 * (int(radius * 1.25) + 16))
  return np.asarray(optics.render(image, disparity, -1.0, radius, gamma=1.0, max_radius=radius,
                                  aperture=optics.Aperture(**aperture)))[..., 0]


RADII = (15.0, 30.0, 60.0, 100.0, 150.0)


@pytest.fixture(scope="module")
def disc_lights():
  """Point lights (disk aperture) at each of ``RADII``, rendered as one batch."""
  image, disparity = psf.point_light_scene(2 * (int(max(RADII) * 1.25) + 16))
  batch = len(RADII)
  out = optics.render(np.broadcast_to(image, (batch, *image.shape)),
                      np.broadcast_to(disparity, (batch, *disparity.shape)), -1.0,
                      np.asarray(RADII, np.float32), gamma=1.0, max_radius=max(RADII))
  return dict(zip(RADII, np.asarray(out)[..., 0]))


@pytest.mark.parametrize("radius", RADII)
def test_a_point_light_renders_the_lens_disc(disc_lights, radius):
  out = disc_lights[radius]
  m = psf.measure(out, radius)
  assert abs(m.radius_at_half - radius) <= 0.03 * radius
  assert m.edge_width_10_90 <= 2.0
  assert m.outline_max_over_min <= 1.05
  assert m.min_over_peak >= -1e-5
  np.testing.assert_allclose(out.sum(), 1.0, rtol=1e-4)  # the light is all there


@pytest.mark.parametrize("blades, radius", [(6, 30.0), (5, 100.0)])
def test_a_polygon_point_light_has_the_polygon_extents(blades, radius):
  """The half-level outline runs from the apothem r cos(pi/n) to the vertices at r."""
  m = psf.measure(_point_light(radius, blades=blades, rotation=0.2), radius)
  assert m.outline_max_over_min == pytest.approx(1 / np.cos(np.pi / blades), rel=0.03)
  assert m.min_over_peak >= -1e-5
