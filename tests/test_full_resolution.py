"""Full-resolution composition, strip rendering and memory-planned refocusing."""
import flax.linen as nn
import jax
import numpy as np
import pytest

from configs.default import get_config
from diffcamera_jax import full_resolution as fr
from diffcamera_jax import optics
from diffcamera_jax.models import build_model, example_inputs
from diffcamera_jax.refocuser import MemoryBudgetError, Refocuser


@pytest.fixture(scope="module")
def tiny():
  config = get_config("tiny")  # trained at 32x32
  model, codec = build_model(config)
  params = model.init({"params": jax.random.key(0)}, *example_inputs(codec, (32, 32)))["params"]
  leaves, tree = jax.tree.flatten(nn.meta.unbox(params))
  keys = jax.random.split(jax.random.key(1), len(leaves))
  return config, jax.tree.unflatten(
      tree, [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def _photo(h, w, seed=0):
  rng = np.random.default_rng(seed)
  return rng.uniform(0.2, 0.8, size=(h, w, 3)).astype(np.float32)


def _layered_disparity(h, w):
  yy, xx = np.mgrid[0:h, 0:w]
  d = np.full((h, w), 0.2, np.float32)
  d[(yy // 50 + xx // 60) % 3 == 1] = 0.5
  d[(yy // 45 + xx // 35) % 4 == 0] = 0.9
  return d


@pytest.mark.parametrize("text, expected", [("8G", 8 * 2 ** 30), ("512M", 512 * 2 ** 20),
                                            ("1.5g", int(1.5 * 2 ** 30)), ("2GiB", 2 ** 31),
                                            ("3000000", 3_000_000)])
def test_parse_bytes(text, expected):
  assert fr.parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "8X", "", "-1G", "10K"])
def test_parse_bytes_rejects(text):
  with pytest.raises(ValueError):
    fr.parse_bytes(text)


def test_compose_returns_the_photo_when_the_model_returns_its_input():
  photo = _photo(90, 130)
  work = fr.downscale(photo[None], fr.working_size(90, 130, 32))[0]
  np.testing.assert_allclose(fr.compose(work, photo), photo, atol=1e-5)
  # a change at the working resolution arrives smoothly upscaled, the fine band untouched
  changed = fr.compose(work + 0.1, photo)
  np.testing.assert_allclose(changed - photo, 0.1, atol=1e-4)


def test_strips_match_the_whole_render_on_layered_depth():
  photo, disparity = _photo(300, 200, 1), _layered_disparity(300, 200)
  for blur in (3.0, 20.0):
    radius = fr.radius_bucket(blur)
    whole = fr.render_in_strips(photo, disparity, 0.5, blur, max_radius=radius, budget=2 ** 40)
    want = np.asarray(optics.render(photo, disparity, 0.5, blur, max_radius=radius))
    np.testing.assert_allclose(whole, want, atol=1e-6)
    strips = fr.render_in_strips(photo, disparity, 0.5, blur, max_radius=radius,
                                 budget=4 * 2 ** 20)
    np.testing.assert_allclose(strips, whole, atol=1e-4)


def test_refocuser_works_at_the_trained_size_and_keeps_the_fine_band(tiny):
  config, params = tiny
  photo, disparity = _photo(96, 144), _layered_disparity(96, 144)
  full = Refocuser(config, params)
  plan = full.plan_for((96, 144), 1)
  assert plan.work_hw == (21, 32) and plan.trained_hw == (32, 32)
  assert "working resolution 32x21" in plan.describe()
  composed = full.refocus(photo, (0.5, 0.5), 0.0, disparity=disparity)[0]
  plain = Refocuser(config, params, full_resolution=False).refocus(
      photo, (0.5, 0.5), 0.0, disparity=disparity)[0]
  assert composed.shape == plain.shape == (96, 144, 3)
  # K = 0: the render is the photo, so the two differ by the photo's band above the working size
  fine = photo - fr.upscale(fr.downscale(photo[None], (21, 32)), (96, 144))[0]
  inside = (composed > 0) & (composed < 1) & (plain > 0) & (plain < 1)
  np.testing.assert_allclose((composed - plain)[inside], fine[inside], atol=1e-4)
  # no depth: the tiny model's disparity estimate drives the render; sizes still kept
  frames = full.refocus(photo, [(0.2, 0.2), (0.8, 0.8)], [0.0, 9.0])
  assert frames.shape == (4, 96, 144, 3) and np.isfinite(frames).all()


@pytest.mark.parametrize("size", [32, 64])
def test_memory_budget_splits_batches_and_chunks_attention_without_changing_frames(tiny, size):
  config, params = tiny
  photo, disparity = _photo(size, size), _layered_disparity(size, size)
  focus = [(0.2, 0.2), (0.4, 0.6), (0.8, 0.3), (0.5, 0.9)]
  free = Refocuser(config, params, batch_size=4, max_side=64)
  big = free.plan_for((size, size), 4)
  assert big.batch == 4 and big.attention_chunk == 0
  want = free.refocus(photo, focus, 6.0, disparity=disparity, seed=2)
  one = Refocuser(config, params, batch_size=1, max_side=64).plan_for((size, size), 1)
  budget = (one.program_bytes + big.program_bytes) // 2
  tight = Refocuser(config, params, batch_size=4, max_side=64, max_memory=budget)
  plan = tight.plan_for((size, size), 4)
  assert plan.program_bytes <= budget < big.program_bytes
  if size == 32:  # the scores are small: the batch is split
    assert plan.batch < 4 and plan.attention_chunk == 0
  else:  # 514 tokens: the scores' share of the budget forces query blocks first
    assert 0 < plan.attention_chunk < plan.sequence
  got = tight.refocus(photo, focus, 6.0, disparity=disparity, seed=2)
  np.testing.assert_allclose(got, want, atol=2e-5)
  with pytest.raises(MemoryBudgetError, match="max_side|max_memory"):
    Refocuser(config, params, max_side=64, max_memory=one.program_bytes // 2).plan_for(
        (size, size), 1)
