"""The refocusing stages on their own: options, prepare, the model families, the working size."""
import jax
import numpy as np
import pytest

from diffcamera_jax.configs.default import get_config
from diffcamera_jax.inference import families, plan, prepare
from diffcamera_jax.inference.options import InferenceOptions
from diffcamera_jax.models import build_model, example_inputs


@pytest.mark.parametrize("field, value", [("max_side", 4), ("batch_size", 0), ("num_steps", 0),
                                          ("max_memory", 1000), ("camera_search_threshold", 0.0),
                                          ("uniform_search_min_gain", -1.0)])
def test_options_name_the_bad_field(field, value):
  with pytest.raises(ValueError, match=field):
    InferenceOptions(**{field: value})


def _prepare(**kwargs):
  args = dict(reference=np.full((1, 8, 8, 3), 0.5, np.float32), disparity=None,
              focus=np.array([[0.5, 0.5]], np.float32), blur=np.array([2.0], np.float32),
              blades=0, rotation=0.0, num_steps=1, seed=0, host_budget=2 ** 40)
  args.update(kwargs)
  return prepare.prepare(**args)


class _Estimator:
  def __init__(self):
    self.calls = 0

  def estimate_many(self, images):
    self.calls += 1
    return [np.full(im.shape[:2], 0.25, np.float32) for im in images]


def test_prepare_settles_the_depth_source():
  given = _prepare(disparity=np.full((1, 8, 8), 0.7, np.float32), depth_model=_Estimator())
  assert given.depth_given and float(given.disparity.mean()) == pytest.approx(0.7)
  estimator = _Estimator()
  estimated = _prepare(depth_model=estimator)
  assert not estimated.depth_given and estimator.calls == 1
  assert float(estimated.disparity.mean()) == pytest.approx(0.25)
  none = _prepare()
  assert none.disparity is None and not none.depth_given
  assert none.frames == 1 and none.image_hw == (8, 8)


@pytest.mark.parametrize("kwargs, message", [
    (dict(focus=np.array([[1.5, 0.5]], np.float32)), "focus"),
    (dict(blur=np.array([np.nan], np.float32)), "blur"),
    (dict(blur=np.array([1.0, 2.0], np.float32)), "blur"),
    (dict(num_steps=0), "num_steps"),
    (dict(reference=np.zeros((2, 8, 8, 3), np.float32)), "reference"),
    (dict(disparity=np.zeros((1, 7, 8), np.float32)), "disparity"),
    (dict(host_budget=1), "host memory"),
])
def test_prepare_names_the_bad_argument_before_any_estimate(kwargs, message):
  estimator = _Estimator()
  with pytest.raises(ValueError, match=message):
    _prepare(depth_model=estimator, **kwargs)
  assert estimator.calls == 0


def test_the_dit_family_counts_its_tokens_and_estimates_depth_with_its_restorer():
  config = get_config("tiny")
  model, codec = build_model(config)
  params = model.init({"params": jax.random.key(0)}, *example_inputs(codec, (32, 32)))["params"]
  _, loaded = families.load_model(config, params)
  m = loaded.multiple
  assert m == codec.downsample * config.model.patch_size
  tokens, heads = loaded.sequence((2 * m, 3 * m))
  streams = 2 if config.model.depth_mode == "fold" else 3
  assert tokens == model.size.num_camera_tokens + streams * 6 and heads == model.size.num_heads
  estimate = loaded.estimate_disparity(np.full((1, 32, 32, 3), 0.5, np.float32))
  if config.objective.prior == "restore":
    assert estimate.shape == (1, 32, 32)
  else:
    assert estimate is None
  with pytest.raises(ValueError, match="FLUX exports only"):
    families.load_model(config, params, base_weights="somewhere.safetensors")


def test_to_working_scales_the_blur_and_keeps_the_focus_on_its_pixel():
  photos = np.random.default_rng(0).uniform(size=(1, 37, 50, 3)).astype(np.float32)
  w = plan.to_working(photos, None, np.array([[0.5, 0.25]], np.float32),
                      np.array([6.0], np.float32), 64, 4)
  assert w.hw == (37, 50) and w.photos.shape == (1, 40, 52, 3) and w.disparity is None
  np.testing.assert_allclose(w.focus[0] * [52, 40], [0.5 * 50, 0.25 * 37], rtol=1e-6)
  np.testing.assert_allclose(w.blur, [6.0])
  small = plan.to_working(photos, np.zeros((1, 37, 50), np.float32),
                          np.array([[0.5, 0.5]], np.float32), np.array([6.0], np.float32), 25, 4)
  assert small.hw == (18, 25) and small.blur[0] == pytest.approx(3.0)
  assert small.disparity.shape == (1, 20, 28)
