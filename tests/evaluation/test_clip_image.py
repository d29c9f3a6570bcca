"""CLIP-I: the JAX CLIP vision tower against `transformers` (fixture from
tools/make_clip_fixtures.py), known answers of the similarity, preprocessing, loading errors."""
import json
import os
import shutil

import numpy as np
import pytest

from diffcamera_jax.evaluation import clip_image

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "clip")


@pytest.fixture(scope="module")
def encoder():
  return clip_image.ClipImageEncoder.load(os.path.join(FIXTURES, "model.safetensors"))


def test_config_from_weights_and_config_json(encoder):
  c = encoder.config
  assert (c.hidden_size, c.num_layers, c.num_heads, c.patch_size, c.image_size,
          c.intermediate_size, c.projection_dim, c.hidden_act) == (32, 2, 4, 8, 32, 37, 16,
                                                                    "quick_gelu")


def test_matches_transformers(encoder):
  io = np.load(os.path.join(FIXTURES, "io.npz"))
  pixels = (io["images"] - clip_image.MEAN) / clip_image.STD
  got = clip_image.embed_pixels(encoder.params, pixels, encoder.config)
  np.testing.assert_allclose(got, io["image_embeds"], rtol=1e-5, atol=2e-6)
  # The public path (preprocessing is only the normalisation at the model's size) agrees too.
  want = io["image_embeds"] / np.linalg.norm(io["image_embeds"], axis=-1, keepdims=True)
  np.testing.assert_allclose(encoder.embed(io["images"]), want, rtol=1e-5, atol=2e-6)
  np.testing.assert_allclose(encoder.similarity(io["images"][:1], io["images"][1:2]),
                             [want[0] @ want[1]], rtol=1e-5)


def test_head_count_matters(encoder):
  # Without config.json the head count would default to D // 64 = 1, which is a different network.
  import dataclasses
  io = np.load(os.path.join(FIXTURES, "io.npz"))
  pixels = (io["images"] - clip_image.MEAN) / clip_image.STD
  one_head = dataclasses.replace(encoder.config, num_heads=1)
  got = clip_image.embed_pixels(encoder.params, pixels, one_head)
  assert np.abs(np.asarray(got) - io["image_embeds"]).max() > 1e-3


def test_similarity_known_answers(encoder):
  rng = np.random.default_rng(1)
  x, y = rng.uniform(size=(2, 3, 40, 48, 3)).astype(np.float32)  # resized and centre-cropped
  np.testing.assert_allclose(encoder(x, x), 1.0, atol=1e-6)
  s_xy, s_yx = np.asarray(encoder(x, y)), np.asarray(encoder(y, x))
  np.testing.assert_allclose(s_xy, s_yx, atol=1e-7)
  assert np.all(s_xy <= 1.0 + 1e-6) and np.all(s_xy >= -1.0 - 1e-6)
  e = np.asarray(encoder.embed(x.reshape(1, 3, 40, 48, 3)))
  assert e.shape == (1, 3, 16)
  np.testing.assert_allclose(np.linalg.norm(e, axis=-1), 1.0, rtol=1e-6)


def test_preprocess_shapes_and_crop():
  img = np.zeros((1, 32, 64, 3), np.float32)
  img[:, :, 16:48] = 1.0  # the centre 32 columns are white
  out = np.asarray(clip_image.preprocess(img, 32))
  assert out.shape == (1, 32, 32, 3)
  np.testing.assert_allclose(out, np.broadcast_to((1.0 - clip_image.MEAN) / clip_image.STD,
                                                  out.shape), atol=1e-6)


def test_loading_errors(tmp_path):
  with pytest.raises(FileNotFoundError):
    clip_image.ClipImageEncoder.load(str(tmp_path / "none.safetensors"))
  (tmp_path / "w.bin").write_bytes(b"")
  with pytest.raises(ValueError, match="safetensors or .npz"):
    clip_image.ClipImageEncoder.load(str(tmp_path / "w.bin"))
  np.savez(tmp_path / "w.npz", x=np.zeros(3))
  with pytest.raises(ValueError, match="lack"):
    clip_image.ClipImageEncoder.load(str(tmp_path / "w.npz"))
  # A config.json with an unsupported activation is refused.
  shutil.copy(os.path.join(FIXTURES, "model.safetensors"), tmp_path / "model.safetensors")
  (tmp_path / "config.json").write_text(json.dumps({"vision_config": {"num_attention_heads": 4,
                                                                      "hidden_act": "swish"}}))
  with pytest.raises(ValueError, match="activation"):
    clip_image.ClipImageEncoder.load(str(tmp_path / "model.safetensors"))


@pytest.mark.slow
def test_evaluate_adds_clip_i_per_task(tmp_path, capsys):
  from diffcamera_jax import evaluate
  out = tmp_path / "eval"
  argv = ["--num-scenes", "1", "--size", "32x32", "--examples", "0", "--quiet",
          "--clip-weights", os.path.join(FIXTURES, "model.safetensors"), "--out", str(out)]
  assert evaluate.main(argv) == 0
  methods = json.loads((out / "results.json").read_text())["benchmarks"]["procedural"]["methods"]
  renderer, same = methods["renderer (true depth)"], methods["input unchanged"]
  assert renderer["summary"]["bokeh/clip_i"] == pytest.approx(1.0, abs=1e-6)  # exact reproduction
  np.testing.assert_allclose(same["per_scene"]["bokeh/clip_i"], same["per_scene"]["deblur/clip_i"],
                             rtol=1e-6)  # symmetric
  assert "bokeh/clip_i" in capsys.readouterr().out


def test_evaluate_missing_clip_weights_exit_2(tmp_path, capsys):
  from diffcamera_jax import evaluate
  argv = ["--clip-weights", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "o")]
  assert evaluate.main(argv) == evaluate.EXIT_BAD_INPUT
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "--clip-weights" in err[0]
