"""Host camera sampling: ranges, probabilities, stacking-pair separation, parity with optics."""
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax.configs import default
from data_pipeline import cameras
from diffcamera_jax import optics

KEYS = {"source_focus": ((2,), np.float32), "source_blur": ((), np.float32),
        "target_focus": ((2,), np.float32), "target_focus_2": ((2,), np.float32),
        "target_blur": ((), np.float32), "aperture_blades": ((), np.int32),
        "aperture_rotation": ((), np.float32)}


def _sample_many(ranges, disparity, n=600, seed=0):
  rng = np.random.default_rng(seed)
  samples = [cameras.sample_cameras(rng, disparity, ranges) for _ in range(n)]
  return {k: np.stack([s[k] for s in samples]) for k in samples[0]}


def _two_planes(height=32, width=32):
  disparity = np.full((height, width), 0.2, np.float32)
  disparity[:, width // 2:] = 0.8
  return disparity


def test_keys_shapes_and_dtypes_follow_the_host_batch_table():
  sample = cameras.sample_cameras(np.random.default_rng(0), _two_planes(),
                                  cameras.CameraRanges.from_config(default.get_config().data))
  assert set(sample) == set(KEYS)
  for key, (shape, dtype) in KEYS.items():
    assert np.shape(sample[key]) == shape and np.asarray(sample[key]).dtype == dtype, key


def test_blur_is_rescaled_from_the_reference_size_to_the_crop():
  ranges = cameras.CameraRanges(blur_range=(8.0, 16.0), blur_reference_size=512,
                                p_source_all_in_focus=0.0, p_target_all_in_focus=0.0)
  s = _sample_many(ranges, _two_planes(64, 128), n=300)
  scale = 128 / 512  # the longer side
  for key in ("source_blur", "target_blur"):
    assert s[key].min() >= 8.0 * scale and s[key].max() <= 16.0 * scale
    assert s[key].max() - s[key].min() > 0.8 * 8.0 * scale  # spread over the range


def test_all_in_focus_probabilities():
  ranges = cameras.CameraRanges(blur_range=(1.0, 40.0), p_source_all_in_focus=0.3,
                                p_target_all_in_focus=0.1)
  s = _sample_many(ranges, _two_planes(), n=2000)
  assert abs(np.mean(s["source_blur"] == 0) - 0.3) < 0.05
  assert abs(np.mean(s["target_blur"] == 0) - 0.1) < 0.03
  always = _sample_many(cameras.CameraRanges(p_source_all_in_focus=1.0, p_target_all_in_focus=1.0),
                        _two_planes(), n=50)
  assert np.all(always["source_blur"] == 0) and np.all(always["target_blur"] == 0)


def test_focus_points_lie_in_the_unit_square():
  s = _sample_many(cameras.CameraRanges(), _two_planes(), n=300)
  for key in ("source_focus", "target_focus", "target_focus_2"):
    assert s[key].min() >= 0.0 and s[key].max() < 1.0


def test_stacking_pair_focal_planes_are_separated_when_the_scene_allows():
  disparity = _two_planes()
  s = _sample_many(cameras.CameraRanges(min_focus_separation=0.3), disparity, n=300)
  gap = np.abs(cameras.point_disparity(disparity, s["target_focus"])
               - cameras.point_disparity(disparity, s["target_focus_2"]))
  assert np.all(gap >= 0.3)


def test_second_focus_falls_back_to_the_farthest_candidate_on_a_flat_scene():
  disparity = np.full((16, 16), 0.5, np.float32)
  disparity[0, 0] = 0.6  # nearly flat: nothing reaches the margin
  point = cameras.second_focus(np.random.default_rng(1), disparity, np.array([0.5, 0.5]), 0.5)
  assert point.shape == (2,) and np.all((point >= 0) & (point < 1))


@pytest.mark.parametrize("height,width", [(64, 64), (130, 200), (5, 3)])
def test_point_disparity_matches_optics_focus_disparity(height, width):
  rng = np.random.default_rng(height)
  disparity = rng.random((height, width)).astype(np.float32)
  points = rng.random((12, 2)).astype(np.float32)
  expected = optics.focus_disparity(jnp.broadcast_to(disparity, (12, height, width)), points)
  np.testing.assert_array_equal(cameras.point_disparity(disparity, points), np.asarray(expected))


def test_apertures_come_from_the_configured_choices():
  s = _sample_many(cameras.CameraRanges(aperture_blades=(0, 5, 7)), _two_planes(), n=400)
  assert set(np.unique(s["aperture_blades"])) == {0, 5, 7}
  disk = s["aperture_blades"] == 0
  assert np.all(s["aperture_rotation"][disk] == 0)
  for n in (5, 7):
    rotation = s["aperture_rotation"][s["aperture_blades"] == n]
    assert rotation.min() >= 0 and rotation.max() < 2 * np.pi / n and rotation.std() > 0
  fixed = _sample_many(cameras.CameraRanges(aperture_blades=(6,), random_aperture_rotation=False),
                       _two_planes(), n=20)
  assert np.all(fixed["aperture_rotation"] == 0) and np.all(fixed["aperture_blades"] == 6)


def test_sampling_is_deterministic_in_the_generator():
  a = _sample_many(cameras.CameraRanges(), _two_planes(), n=20, seed=4)
  b = _sample_many(cameras.CameraRanges(), _two_planes(), n=20, seed=4)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("kwargs,name", [
    (dict(blur_range=(5.0, 1.0)), "blur_range"),
    (dict(blur_range=(-1.0, 1.0)), "blur_range"),
    (dict(blur_reference_size=0), "blur_reference_size"),
    (dict(p_source_all_in_focus=1.5), "p_source_all_in_focus"),
    (dict(p_target_all_in_focus=-0.1), "p_target_all_in_focus"),
    (dict(aperture_blades=(2,)), "aperture_blades"),
    (dict(aperture_blades=()), "aperture_blades"),
    (dict(min_focus_separation=2.0), "min_focus_separation"),
])
def test_bad_ranges_name_the_field(kwargs, name):
  with pytest.raises(ValueError, match=name):
    cameras.CameraRanges(**kwargs)


def test_disparity_must_be_two_dimensional():
  with pytest.raises(ValueError, match="disparity"):
    cameras.sample_cameras(np.random.default_rng(0), np.zeros((2, 8, 8)), cameras.CameraRanges())
