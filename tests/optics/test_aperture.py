"""Aperture coverage kernels against brute-force sub-pixel coverage."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax import optics
from diffcamera_jax.optics import aperture as aperture_lib
from diffcamera_jax.testing import scatter_reference as ref


@pytest.mark.parametrize("radius", [0.8, 1.3, 4.0, 9.7])
@pytest.mark.parametrize("blades,rotation", [(0, 0.0), (3, 0.2), (6, 1.1), (9, -0.4)])
def test_kernel_is_normalised_area_coverage(radius, blades, rotation):
  size = aperture_lib.kernel_size(radius)
  kernel = np.asarray(aperture_lib.coverage_kernel(optics.Aperture(blades, rotation), radius, size))
  expected = ref.coverage(radius, blades, rotation, supersample=64)
  pad = (size - expected.shape[0]) // 2
  expected = np.pad(expected, pad) if pad > 0 else expected[-pad:expected.shape[0] + pad, -pad:expected.shape[0] + pad]
  assert abs(kernel.sum() - 1.0) < 1e-5
  assert np.abs(kernel - expected).max() < 0.05 * expected.max()  # 4x4 sub-pixels with ramps


def test_radius_zero_is_the_identity():
  kernel = np.asarray(aperture_lib.coverage_kernel(optics.Aperture(), 0.0, 5))
  expected = np.zeros((5, 5))
  expected[2, 2] = 1.0
  np.testing.assert_allclose(kernel, expected, atol=1e-6)


def test_polygon_is_invariant_under_rotation_by_one_sector():
  a = aperture_lib.coverage_kernel(optics.Aperture(5, 0.3), 6.0, 15)
  b = aperture_lib.coverage_kernel(optics.Aperture(5, 0.3 + 2 * np.pi / 5), 6.0, 15)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_traced_per_example_apertures_match_static_ones():
  blades = jnp.array([0, 3, 6], jnp.int32)
  rotation = jnp.array([0.0, 0.4, 1.0], jnp.float32)
  radius = jnp.array([3.0, 4.5, 2.0])
  batched = jax.jit(lambda b, r, rad: aperture_lib.coverage_kernel(optics.Aperture(b, r), rad, 11))(
      blades, rotation, radius)
  for i in range(3):
    single = aperture_lib.coverage_kernel(
        optics.Aperture(int(blades[i]), float(rotation[i])), float(radius[i]), 11)
    np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(single), atol=1e-6)


def test_kernel_size_must_be_odd():
  with pytest.raises(ValueError, match="size"):
    aperture_lib.coverage_kernel(optics.Aperture(), 2.0, 6)


def test_aperture_is_a_pytree():
  leaves, treedef = jax.tree_util.tree_flatten(optics.Aperture(6, 0.5))
  assert leaves == [6, 0.5]
  assert jax.tree_util.tree_unflatten(treedef, leaves) == optics.Aperture(6, 0.5)


@pytest.mark.parametrize("edge", [1.375, 2.375, 4.5, 8.0])
@pytest.mark.parametrize("blades,rotation", [(0, 0.0), (3, 0.0), (3, 0.7), (5, 1.1), (6, 0.3)])
def test_coverage_is_zero_outside_the_support_size(edge, blades, rotation):
  """Kernels of radii below ``edge`` fit in `support_size(edge)`: the cropped kernel is exact."""
  support = aperture_lib.support_size(edge)
  big = aperture_lib.kernel_size(edge) + 4
  radii = jnp.asarray([edge * (1 - 1e-6), edge * 0.9, edge * 0.75], jnp.float32)
  kernel = np.asarray(aperture_lib.coverage_kernel(optics.Aperture(blades, rotation), radii, big))
  border = (big - support) // 2
  outside = kernel.copy()
  outside[:, border:big - border, border:big - border] = 0.0
  assert support < big and np.all(outside == 0.0)
