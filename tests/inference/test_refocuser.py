"""Refocuser: any input size, batching, parity with the raw sampler, the no-depth path, bad input,
frames composed at full size, memory-planned batches and attention blocks."""
import os

import flax.linen as nn
import jax
import numpy as np
import pytest

from diffcamera_jax.configs.default import get_config
from diffcamera_jax.models import build_model, camera_features, example_inputs
from diffcamera_jax.inference import refocuser as refocuser_lib
from diffcamera_jax.inference.memory import MemoryBudgetError
from diffcamera_jax.inference.plan import to_working
from diffcamera_jax.inference.prepare import camera_grid
from diffcamera_jax.inference.refocuser import Refocuser
from diffcamera_jax.inference.resize import downscale, upscale
from diffcamera_jax.inference.sampler import make_sampler


@pytest.fixture(scope="module")
def tiny():
  config = get_config("tiny")
  model, codec = build_model(config)
  params = model.init({"params": jax.random.key(0)}, *example_inputs(codec, (32, 32)))["params"]
  # adaLN-zero makes a fresh model predict exactly zero velocity whatever the condition; perturb
  # every weight so that the output depends on the reference, the depth and the camera.
  leaves, tree = jax.tree.flatten(nn.meta.unbox(params))
  keys = jax.random.split(jax.random.key(1), len(leaves))
  params = [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
  return config, jax.tree.unflatten(tree, params)


@pytest.fixture(scope="module")
def refocuser(tiny):
  # the tests' images stay at their size; the optics pre-pass has tests of its own below
  return Refocuser(*tiny, batch_size=4, max_side=64, optics_prepass=False)


def _image(h, w, seed=0):
  return np.random.default_rng(seed).uniform(size=(h, w, 3)).astype(np.float32)


def test_camera_grid_is_focus_major():
  focus, blur = camera_grid([(0.1, 0.2), (0.3, 0.4)], [0.0, 5.0, 9.0])
  np.testing.assert_allclose(focus[:3], [[0.1, 0.2]] * 3)
  np.testing.assert_allclose(focus[3:], [[0.3, 0.4]] * 3)
  np.testing.assert_allclose(blur, [0, 5, 9, 0, 5, 9])
  focus, blur = camera_grid((0.5, 0.5), 3.0)
  assert focus.shape == (1, 2) and blur.shape == (1,)


def test_matches_the_sampler_on_a_grid_sized_image(tiny):
  config, params = tiny
  r = Refocuser(config, params, batch_size=2, max_side=40, optics_prepass=False)
  image, disparity = _image(32, 40), np.random.default_rng(1).uniform(size=(32, 40)).astype(np.float32)
  got = r.refocus(image, [(0.25, 0.75), (0.6, 0.1)], 4.0, disparity=disparity, seed=3)
  model, codec = build_model(config)
  sample = make_sampler(model, codec, config)
  camera = camera_features(np.array([[0.25, 0.75], [0.6, 0.1]], np.float32),
                           np.array([4.0, 4.0], np.float32), (32, 40), np.zeros(2, np.int32),
                           np.zeros(2, np.float32))
  keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(3), np.arange(2))
  want = sample(params, image[None], disparity[None], camera, keys, config.objective.sample_steps)
  np.testing.assert_allclose(got, np.clip(np.asarray(want), 0, 1), atol=1e-5)


def test_any_size_keeps_the_input_size_and_reports_steps(tiny, refocuser):
  config, params = tiny
  r = refocuser
  steps = []
  out = r.refocus(_image(37, 50), [(0.2, 0.3), (0.7, 0.7)], [0.0, 5.0, 10.0], num_steps=3,
                  on_step=lambda: steps.append(1))
  assert out.shape == (6, 37, 50, 3)
  assert out.min() >= 0.0 and out.max() <= 1.0
  assert len(steps) == 3 * 2  # 3 steps x 2 batches of 4 (the second padded)
  small = Refocuser(config, params, optics_prepass=False, max_side=16).refocus(_image(37, 50), (0.5, 0.5), 3.0)
  assert small.shape == (1, 37, 50, 3)


def test_depth_is_used_and_no_depth_path_runs(refocuser):
  r = refocuser
  image = _image(32, 32)
  near = np.ones((32, 32), np.float32)
  far = np.zeros((32, 32), np.float32)
  a = r.refocus(image, (0.5, 0.5), 8.0, disparity=near)
  b = r.refocus(image, (0.5, 0.5), 8.0, disparity=far)
  c = r.refocus(image, (0.5, 0.5), 8.0)
  assert np.abs(a - b).max() > 1e-3 and np.abs(a - c).max() > 1e-3
  np.testing.assert_array_equal(c, r.refocus(image, (0.5, 0.5), 8.0))  # deterministic per seed
  assert np.abs(c - r.refocus(image, (0.5, 0.5), 2.0)).max() > 1e-3  # the camera is used


def test_bad_input_names_the_argument(tiny, refocuser):
  config, params = tiny
  r = refocuser
  image = _image(16, 16)
  with pytest.raises(ValueError, match="focus"):
    r.refocus(image, (1.2, 0.5), 3.0)
  with pytest.raises(ValueError, match="blur"):
    r.refocus(image, (0.5, 0.5), -1.0)
  with pytest.raises(ValueError, match="disparity"):
    r.refocus(image, (0.5, 0.5), 3.0, disparity=np.zeros((15, 16), np.float32))
  with pytest.raises(ValueError, match="disparity"):
    r.refocus(image, (0.5, 0.5), 3.0, disparity=np.full((16, 16), 2.0, np.float32))
  with pytest.raises(ValueError, match="image"):
    r.refocus(image[..., :2], (0.5, 0.5), 3.0)
  with pytest.raises(ValueError, match="blades|aperture"):
    r.refocus(image, (0.5, 0.5), 3.0, blades=2)
  with pytest.raises(ValueError, match="max_side"):
    Refocuser(config, params, max_side=2)


def test_refocuser_works_at_the_trained_size_and_keeps_the_fine_band(tiny, layered_disparity):
  config, params = tiny
  photo, disparity = _image(96, 144), layered_disparity(96, 144)
  full = Refocuser(config, params, optics_prepass=False)
  plan = full.plan_for((96, 144), 1)
  assert plan.work_hw == (21, 32) and plan.trained_hw == (32, 32)
  assert "working resolution 32x21" in plan.describe()
  composed = full.refocus(photo, (0.5, 0.5), 0.0, disparity=disparity)[0]
  plain = Refocuser(config, params, optics_prepass=False, full_resolution=False).refocus(
      photo, (0.5, 0.5), 0.0, disparity=disparity)[0]
  assert composed.shape == plain.shape == (96, 144, 3)
  # K = 0: the render is the photo, so the two differ by the photo's band above the working size
  fine = photo - upscale(downscale(photo[None], (21, 32)), (96, 144))[0]
  inside = (composed > 0) & (composed < 1) & (plain > 0) & (plain < 1)
  np.testing.assert_allclose((composed - plain)[inside], fine[inside], atol=1e-4)
  # no depth: the tiny model's disparity estimate drives the render; sizes still kept
  frames = full.refocus(photo, [(0.2, 0.2), (0.8, 0.8)], [0.0, 9.0])
  assert frames.shape == (4, 96, 144, 3) and np.isfinite(frames).all()


@pytest.mark.parametrize("size", [32, 64])
def test_memory_budget_splits_batches_and_chunks_attention_without_changing_frames(tiny, size,
                                                                                   layered_disparity):
  config, params = tiny
  photo, disparity = _image(size, size), layered_disparity(size, size)
  focus = [(0.2, 0.2), (0.4, 0.6), (0.8, 0.3), (0.5, 0.9)]
  free = Refocuser(config, params, optics_prepass=False, batch_size=4, max_side=64)
  big = free.plan_for((size, size), 4)
  assert big.batch == 4 and big.attention_chunk == 0
  want = free.refocus(photo, focus, 6.0, disparity=disparity, seed=2)
  one = Refocuser(config, params, optics_prepass=False, batch_size=1, max_side=64).plan_for((size, size), 1)
  budget = (one.program_bytes + big.program_bytes) // 2
  tight = Refocuser(config, params, optics_prepass=False, batch_size=4, max_side=64, max_memory=budget)
  plan = tight.plan_for((size, size), 4)
  assert plan.program_bytes <= budget < big.program_bytes
  if size == 32:  # the scores are small: the batch is split
    assert plan.batch < 4 and plan.attention_chunk == 0
  else:  # 514 tokens: the scores' share of the budget forces query blocks first
    assert 0 < plan.attention_chunk < plan.sequence
  got = tight.refocus(photo, focus, 6.0, disparity=disparity, seed=2)
  np.testing.assert_allclose(got, want, atol=2e-5)
  with pytest.raises(MemoryBudgetError, match="max_side|max_memory"):
    Refocuser(config, params, optics_prepass=False, max_side=64, max_memory=one.program_bytes // 2).plan_for(
        (size, size), 1)


def test_depth_model_supplies_disparity_for_photos_given_none(tiny):
  """`Refocuser(depth_model=...)` on a photo without disparity gives the frames of the same call
  with the depth model's estimate passed explicitly (a tiny random Depth Anything)."""
  weights = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "depth", "tiny_a")
  refocuser = Refocuser(*tiny, optics_prepass=False, batch_size=4, max_side=64, depth_model=weights)
  image = _image(24, 40, seed=5)
  estimated = refocuser.estimate_disparity(image[None])[0]
  assert estimated.shape == (24, 40) and estimated.min() == 0 and estimated.max() == 1
  frames = refocuser.refocus(image, [(0.2, 0.5)], [0.0, 6.0])
  explicit = refocuser.refocus(image, [(0.2, 0.5)], [0.0, 6.0], disparity=estimated)
  np.testing.assert_allclose(frames, explicit, atol=1e-6)
  without = Refocuser(*tiny, optics_prepass=False, batch_size=4, max_side=64).refocus(image, [(0.2, 0.5)], [0.0, 6.0])
  assert np.abs(frames - without).max() > 1e-3


def test_a_blurred_photo_with_depth_is_deblurred_by_the_optics_once(tiny, monkeypatch):
  from data_pipeline import procedural
  from diffcamera_jax import optics
  from diffcamera_jax.inference import physics_deblur
  config, params = tiny
  r = Refocuser(config, params, batch_size=4, max_side=64)
  sharp, disparity = procedural.make_scene(7, 0, 64, 64)
  focus = np.float32(np.quantile(disparity, 0.3))
  photo = np.asarray(optics.render(sharp, disparity, focus, 3.0, max_radius=6.0))
  calls = []
  real = physics_deblur.deblur_with_depth
  monkeypatch.setattr(physics_deblur, "deblur_with_depth",
                      lambda *a, **k: calls.append(len(a[0])) or real(*a, **k))
  seen = []
  monkeypatch.setattr(refocuser_lib, "to_working",
                      lambda ref, *a: seen.append(ref) or to_working(ref, *a))
  r.refocus(photo, (0.5, 0.5), [0.0, 2.0], disparity=disparity)
  psnr = lambda a: -10 * np.log10(np.mean((a - sharp) ** 2))
  assert psnr(seen[0][0]) > psnr(photo) + 2.0  # the model is handed the deblurred photo
  r.refocus(photo, (0.2, 0.2), 1.0, disparity=disparity)  # the same photo: not searched again
  assert calls == [1]
  np.testing.assert_array_equal(seen[1], seen[0])
  # without depth the uniform-blur search runs instead (next test); with the pre-pass off,
  # no search at all
  r.refocus(photo, (0.5, 0.5), 1.0)
  Refocuser(config, params, max_side=64, optics_prepass=False).refocus(
      photo, (0.5, 0.5), 1.0, disparity=disparity)
  assert calls == [1]
  # a photo larger than the working size is not searched (a downscaled copy misleads the
  # search): the model gets it as it is
  big = np.repeat(np.repeat(photo, 2, 0), 2, 1)
  big_disparity = np.repeat(np.repeat(disparity, 2, 0), 2, 1)
  assert not r.prepass.searches(128, 128) and r.prepass.searches(64, 48)
  np.testing.assert_array_equal(r.deblur(big[None], big_disparity[None])[0], big)
  assert calls == [1]


def test_a_photo_defocused_as_a_whole_is_deblurred_without_depth(tiny, monkeypatch):
  from data_pipeline import procedural
  from diffcamera_jax import optics
  config, params = tiny
  sharp, _ = procedural.make_scene(7, 1, 64, 64)
  flat = np.zeros(sharp.shape[:2], np.float32)
  photo = np.asarray(optics.render(sharp, flat, 1.0, 2.5, max_radius=4.0))
  psnr = lambda a: -10 * np.log10(np.mean((a - sharp) ** 2))
  for search, better in ((True, True), (False, False)):
    r = Refocuser(config, params, batch_size=4, max_side=64, optics_prepass=search)
    seen = []
    monkeypatch.setattr(refocuser_lib, "to_working",
                        lambda ref, *a: seen.append(ref) or to_working(ref, *a))
    r.refocus(photo, (0.5, 0.5), 0.0)
    assert (psnr(seen[0][0]) > psnr(photo) + 2.0) == better
