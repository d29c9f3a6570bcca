"""Procedural scenes: determinism, conventions, richness, resolution independence, bad input."""
import numpy as np
import pytest

from data_pipeline import procedural


def test_same_seed_and_index_give_identical_scenes():
  a = procedural.make_scene(3, 7, 40, 56)
  b = procedural.make_scene(3, 7, 40, 56)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("other", [(3, 8), (4, 7)])
def test_other_seed_or_index_gives_another_scene(other):
  image, disparity = procedural.make_scene(3, 7, 40, 56)
  image_2, disparity_2 = procedural.make_scene(*other, 40, 56)
  assert np.abs(image - image_2).mean() > 0.05
  assert np.abs(disparity - disparity_2).mean() > 0.01


@pytest.mark.parametrize("height,width", [(1, 1), (17, 33), (64, 64), (48, 20)])
def test_shapes_dtypes_and_ranges(height, width):
  image, disparity = procedural.make_scene(0, 1, height, width)
  assert image.shape == (height, width, 3) and image.dtype == np.float32
  assert disparity.shape == (height, width) and disparity.dtype == np.float32
  for array in (image, disparity):
    assert np.isfinite(array).all() and array.min() >= 0.0 and array.max() <= 1.0


def test_scenes_have_depth_layers_texture_and_highlights():
  for index in range(6):
    image, disparity = procedural.make_scene(0, index, 96, 96)
    foreground = disparity > procedural._BACKGROUND_MAX_DISPARITY
    assert 0.05 < foreground.mean() < 0.98  # occluders in front of a visible background
    # Many distinct depth levels among the foreground shapes (quantised to 0.02).
    assert len(np.unique(np.round(disparity[foreground] / 0.02))) >= 5
    # Real high-frequency content: mean absolute Laplacian of the luminance.
    luma = image.mean(-1)
    laplacian = (4 * luma[1:-1, 1:-1] - luma[:-2, 1:-1] - luma[2:, 1:-1]
                 - luma[1:-1, :-2] - luma[1:-1, 2:])
    assert np.abs(laplacian).mean() > 0.02
    # Small saturated highlights for bokeh.
    assert (image.min(-1) > 0.74).sum() >= 1


def test_layout_is_resolution_independent():
  _, small = procedural.make_scene(5, 2, 64, 96)
  _, large = procedural.make_scene(5, 2, 128, 192)
  # Compare each small pixel with the mean of the 2x2 large pixels it covers: the same objects
  # sit in the same places, so only pixels on object edges may differ.
  pooled = large.reshape(64, 2, 96, 2).mean(axis=(1, 3))
  assert np.mean(np.abs(pooled - small) < 0.02) > 0.9


def test_benchmark_scenes_are_fixed_and_disjoint_from_training():
  image, disparity = procedural.benchmark_scene(4, 32, 32)
  expected = procedural.make_scene(procedural.BENCHMARK_SEED, 4, 32, 32)
  np.testing.assert_array_equal(image, expected[0])
  np.testing.assert_array_equal(disparity, expected[1])
  train_image, _ = procedural.make_scene(0, 4, 32, 32)
  assert np.abs(image - train_image).mean() > 0.05


@pytest.mark.parametrize("kwargs,name,error", [
    (dict(seed=-1), "seed", ValueError),
    (dict(index=-3), "index", ValueError),
    (dict(height=0), "height", ValueError),
    (dict(width=2.5), "width", TypeError),
    (dict(index=True), "index", TypeError),
])
def test_bad_arguments_name_the_argument(kwargs, name, error):
  args = dict(seed=0, index=0, height=8, width=8) | kwargs
  with pytest.raises(error, match=name):
    procedural.make_scene(**args)
