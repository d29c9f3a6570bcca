"""The static layer plan."""
import pytest

from diffcamera_jax.optics import layers


@pytest.mark.parametrize("max_radius", [0.7, 3.0, 8.0, 9.0, 40.0, 64.0, 200.0])
def test_bins_tile_the_range_and_keep_reduced_radii_bounded(max_radius):
  levels = layers.plan(max_radius)
  edges = [e for level in levels for e in level.edges]
  assert edges[0] == layers.IN_FOCUS and edges[-1] >= max_radius
  for level, following in zip(levels, levels[1:]):
    assert level.edges[-1] == following.edges[0] and following.index == level.index + 1
  for level in levels:
    assert all(lo < hi for lo, hi in zip(level.edges, level.edges[1:]))
    reduced = [e / level.factor for e in level.edges]
    assert max(reduced) <= layers.FINE_RADIUS * (1 + 1e-5)
    if level.index:  # coarse levels keep kernels of at least half the fine radius
      assert min(reduced) >= layers.FINE_RADIUS / 2 * (1 - 1e-5)


def test_tiny_max_radius_needs_no_blurred_layer():
  assert layers.plan(0.5) == ()


def test_max_radius_must_be_positive():
  with pytest.raises(ValueError, match="max_radius"):
    layers.plan(0.0)


def test_padded_size_is_a_multiple_of_the_coarsest_factor():
  levels = layers.plan(64.0)
  assert layers.padded_size(100, levels) % levels[-1].factor == 0
  assert layers.padded_size(100, levels) - 100 < levels[-1].factor
