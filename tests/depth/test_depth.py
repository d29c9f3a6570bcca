"""Depth Anything V2 in Flax: parity with `transformers`, loading, pre/post-processing."""
import json
import os
import shutil

import jax
import numpy as np
import pytest

from diffcamera_jax.depth import DepthEstimator, load_depth_model, network_size
from diffcamera_jax.depth.estimator import normalize_disparity, to_disparity
from diffcamera_jax.depth.model import bicubic_matrix, bilinear_matrix
from diffcamera_jax.weights import SafetensorsCheckpoint, save_file

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "depth")
TINY_A = os.path.join(FIXTURES, "tiny_a")


@pytest.fixture(scope="module")
def io():
  ckpt = SafetensorsCheckpoint(os.path.join(FIXTURES, "io.safetensors"))
  return {n: np.asarray(ckpt.read(n)) for n in ckpt.names()}


@pytest.mark.parametrize("name,label", [("tiny_a", "square"), ("tiny_a", "wide"),
                                        ("tiny_b", "square"), ("tiny_b", "tall")])
def test_matches_transformers(io, name, label):
  """Two encoder sizes (relative and metric heads), square and non-square inputs (the latter
  resizes the learned positions): the network's output equals transformers' within 1e-4."""
  estimator = DepthEstimator.load(os.path.join(FIXTURES, name))
  pixels = io[f"{name}/{label}/pixels"].transpose(0, 2, 3, 1)
  want = io[f"{name}/{label}/depth"]
  got = estimator.predict(pixels)
  assert got.shape == want.shape
  scale = np.abs(want).max()
  assert scale > 0
  np.testing.assert_allclose(got, want, atol=1e-4 * scale, rtol=1e-4)


def test_original_layout_loads_the_same_params():
  hf = DepthEstimator.load(TINY_A)
  original = DepthEstimator.load(os.path.join(FIXTURES, "tiny_a_original.safetensors"))
  assert original.config == hf.config
  jax.tree_util.tree_map(np.testing.assert_array_equal, original.params, hf.params)


def test_network_size_matches_the_transformers_processor():
  with open(os.path.join(FIXTURES, "sizes.json")) as f:
    cases = json.load(f)
  for case in cases:
    assert list(network_size(*case["photo"])) == case["network"], case


def test_rejects_truncated_file(tmp_path):
  data = open(os.path.join(TINY_A, "model.safetensors"), "rb").read()
  bad = tmp_path / "model.safetensors"
  bad.write_bytes(data[: len(data) - 1000])
  with pytest.raises(ValueError, match=r"truncated.*head\.conv|truncated.*neck|truncated.*'"):
    DepthEstimator.load(bad)


def test_rejects_wrong_variant_naming_tensors():
  with pytest.raises(ValueError) as e:
    DepthEstimator.load(TINY_A, variant="small")
  assert "backbone.embeddings.cls_token" in str(e.value) and "model expects" in str(e.value)


def test_rejects_mismatched_file_naming_tensors(tmp_path):
  ckpt = SafetensorsCheckpoint(os.path.join(TINY_A, "model.safetensors"))
  tensors = {n: np.asarray(ckpt.read(n)) for n in ckpt.names() if n != "head.conv3.bias"}
  tensors["neck.convs.1.weight"] = tensors["neck.convs.1.weight"][:, :4]
  os.makedirs(tmp_path / "m")
  save_file(str(tmp_path / "m" / "model.safetensors"), tensors)
  shutil.copy(os.path.join(TINY_A, "config.json"), tmp_path / "m")
  with pytest.raises(ValueError) as e:
    load_depth_model(tmp_path / "m")
  message = str(e.value)
  assert "\n" not in message and message.startswith("--depth-model ")
  assert "head.conv3.bias" in message and "neck.convs.1.weight" in message


def test_missing_weights_and_foreign_file(tmp_path):
  with pytest.raises(ValueError, match="no such file"):
    load_depth_model(tmp_path / "nope.safetensors")
  save_file(str(tmp_path / "other.safetensors"), {"encoder.w": np.zeros(3, np.float32)})
  with pytest.raises(ValueError, match="not a Depth Anything checkpoint"):
    load_depth_model(tmp_path / "other.safetensors")


def test_estimates_any_size_and_batches():
  """Maps come back at each photo's size in [0, 1]; a photo's map does not depend on the batch
  it ran in (same network size batched together, padded last batch)."""
  estimator = DepthEstimator.load(TINY_A, batch_size=2, input_size=56)
  rng = np.random.default_rng(0)
  photos = [rng.random((30, 40, 3)), rng.random((45, 60, 3)), rng.random((60, 30, 3)),
            rng.random((30, 40, 3))]
  maps = estimator.estimate_many(photos)
  assert [m.shape for m in maps] == [p.shape[:2] for p in photos]
  assert all(m.min() >= 0 and m.max() <= 1 and m.std() > 0 for m in maps)
  alone = estimator.estimate(photos[2])
  np.testing.assert_allclose(alone, maps[2], atol=1e-5)


def test_bf16_is_close_to_float32():
  import jax.numpy as jnp
  pixels = np.random.default_rng(1).standard_normal((1, 56, 56, 3)).astype(np.float32)
  f32 = DepthEstimator.load(TINY_A).predict(pixels)
  bf16 = DepthEstimator.load(TINY_A, dtype=jnp.bfloat16).predict(pixels)
  assert np.abs(bf16 - f32).mean() < 0.05 * np.abs(f32).mean()


def test_normalisation_is_robust_to_outliers():
  """A few extreme pixels (sky at 0, a specular spike) do not stretch the map: the rest keeps
  its spread."""
  ramp = np.tile(np.linspace(1.0, 2.0, 100, dtype=np.float32), (100, 1))
  spiked = ramp.copy()
  spiked[0, :20] = 1000.0  # 0.2 % of the pixels
  out = normalize_disparity(spiked)
  assert out.min() == 0 and out.max() == 1
  assert out[:, 50:].min() > 0.4 and out[:, -2:].min() >= 0.98
  assert np.all(normalize_disparity(np.ones((8, 8), np.float32)) == 0)
  metric = normalize_disparity(np.asarray(to_disparity(ramp, metric=True)))
  assert metric[:, 0].mean() > metric[:, -1].mean()  # nearer = smaller depth = larger disparity


def test_resampling_matrices_match_pytorch_rules():
  # identity at equal sizes; rows sum to one; align_corners keeps the end points
  np.testing.assert_allclose(bicubic_matrix(5, 5), np.eye(5), atol=1e-6)
  np.testing.assert_allclose(bicubic_matrix(4, 7).sum(1), 1.0, atol=1e-6)
  m = bilinear_matrix(4, 7)
  assert m[0, 0] == 1 and m[-1, -1] == 1
  np.testing.assert_allclose(m @ np.arange(4.0), np.linspace(0, 3, 7), atol=1e-6)
