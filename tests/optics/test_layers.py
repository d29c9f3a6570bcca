"""The static layer plan."""
import pytest

from diffcamera_jax.optics import layers


@pytest.mark.parametrize("max_radius", [0.7, 3.0, 8.0, 9.0, 40.0, 64.0, 200.0])
def test_bins_tile_the_range_two_per_octave_beyond_the_fine_radius(max_radius):
  edges = layers.edges(max_radius)
  assert edges[0] == layers.IN_FOCUS and edges[-1] >= max_radius
  assert all(lo < hi for lo, hi in zip(edges, edges[1:]))
  for lo, hi in zip(edges, edges[1:]):
    if lo >= layers.FINE_RADIUS:  # geometric bins, the last one possibly cut at max_radius
      assert hi / lo <= 2 ** (1 / layers.BINS_PER_OCTAVE) * (1 + 1e-5)


def test_tiny_max_radius_needs_no_blurred_layer():
  assert layers.edges(0.5) == ()


def test_max_radius_must_be_positive():
  with pytest.raises(ValueError, match="max_radius"):
    layers.edges(0.0)
