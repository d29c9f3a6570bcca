"""Procedural scenes: determinism, conventions, richness, perspective cues, resolution
independence, bad input."""
import numpy as np
import pytest

from data_pipeline import ground_scene
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


def test_layered_scenes_have_depth_layers_texture_and_highlights():
  for index in range(6):
    image, disparity = procedural.make_scene(0, index, 96, 96, layout="layers")
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


@pytest.mark.parametrize("layout", procedural.LAYOUTS)
def test_layout_is_resolution_independent(layout):
  _, small = procedural.make_scene(5, 2, 64, 96, layout=layout)
  _, large = procedural.make_scene(5, 2, 128, 192, layout=layout)
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


def test_scenes_mix_both_layouts_deterministically():
  layouts = [procedural.scene_layout(0, i) for i in range(200)]
  assert 0.35 < layouts.count("ground") / 200 < 0.65
  for index in range(4):
    drawn = procedural.make_scene(0, index, 24, 24)
    forced = procedural.make_scene(0, index, 24, 24, layout=procedural.scene_layout(0, index))
    np.testing.assert_array_equal(drawn[0], forced[0])


def test_ground_scenes_recede_in_perspective():
  near_below = 0
  for index in range(20):
    _, disparity = procedural.make_scene(7, index, 64, 64, layout="ground")
    near_below += disparity[-16:].mean() > disparity[:16].mean()
    assert (disparity[-1] > 0).all()  # the bottom row is ground or objects, never sky
  assert near_below >= 17  # nearer at the bottom, except where a near object fills the top


def test_ground_disparity_is_linear_below_the_horizon():
  rng = np.random.default_rng(0)
  for _ in range(10):
    camera = ground_scene.draw_camera(rng, 0.75, 1.0)
    u = np.linspace(0.0, 1.0, 11)
    r, e = camera.to_horizon(u, np.full_like(u, 0.75))
    assert np.all(e > 0)
    np.testing.assert_allclose(camera.to_image(r, e), (u, np.full_like(u, 0.75)), atol=1e-6)
    # bottom centre has the configured nearest disparity in [0.6, 1]
    _, e_centre = camera.to_horizon(np.array([0.5]), np.array([0.75]))
    assert 0.6 - 1e-6 <= camera.gain * e_centre[0] <= 1.0 + 1e-6


def test_farther_objects_are_smaller_and_higher_in_the_frame():
  rng = np.random.default_rng(1)
  placements = []
  for _ in range(30):
    camera = ground_scene.draw_camera(rng, 1.0, 1.0)
    camera = ground_scene.Camera(camera.centre_u, camera.horizon_v, 0.0, camera.gain)  # no roll
    for p in ground_scene.draw_placements(rng, camera, 1.0, 1.0):
      _, base_v = camera.to_image(np.array(p.r), np.array(p.e))
      placements.append((p.disparity, p.height, float(base_v), camera.horizon_v))
  d, height, base_v, horizon = np.array(placements).T
  ranks = lambda x: np.argsort(np.argsort(x))
  assert np.corrcoef(ranks(d), ranks(height))[0, 1] > 0.5
  assert np.all(base_v > horizon)  # objects stand on the ground, below the horizon
  assert np.corrcoef(ranks(d), ranks(base_v - horizon))[0, 1] > 0.5


def test_ground_texture_fades_towards_the_horizon():
  """Texture gradient and haze: less fine detail far away than near, no aliasing at the horizon."""
  e = np.linspace(0.005, 0.5, 96, dtype=np.float32)[:, None] * np.ones((1, 96), np.float32)
  r = (np.linspace(-0.5, 0.5, 96, dtype=np.float32)[None, :] * np.ones((96, 1), np.float32))
  for seed in range(5):
    colour = ground_scene._ground(np.random.default_rng(seed), r, e, scale=96.0, haze_depth=40.0,
                                  horizon_colour=np.full(3, 0.8, np.float32))
    luma = colour.mean(-1)
    detail = np.abs(np.diff(luma, axis=1))
    assert detail[:12].mean() < detail[-24:].mean()


def test_ground_scenes_have_natural_colours():
  chroma = lambda image: (image.max(-1) - image.min(-1)).mean()
  ground = np.mean([chroma(procedural.make_scene(2, i, 32, 32, layout="ground")[0]) for i in range(10)])
  layers = np.mean([chroma(procedural.make_scene(2, i, 32, 32, layout="layers")[0]) for i in range(10)])
  assert ground < 0.7 * layers  # muted, as natural surfaces are


@pytest.mark.parametrize("kwargs,name,error", [
    (dict(layout="indoor"), "layout", ValueError),
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
