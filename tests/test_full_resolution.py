"""Full-resolution composition and strip rendering (the Refocuser's use: tests/test_refocuser.py)."""
import numpy as np
import pytest

from diffcamera_jax.inference import full_resolution as fr


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
  photo, disparity = _photo(200, 120, 1), _layered_disparity(200, 120)
  blur = 12.0  # full-resolution bins and a coarse pyramid level
  radius = fr.radius_bucket(blur)
  whole = fr.render_in_strips(photo, disparity, 0.5, blur, max_radius=radius, budget=2 ** 40)
  assert fr.compiled_bytes(fr._compiled_render((200, 120), 2.2, radius)) > 2 * 2 ** 20
  strips = fr.render_in_strips(photo, disparity, 0.5, blur, max_radius=radius, budget=2 * 2 ** 20)
  np.testing.assert_allclose(strips, whole, atol=1e-4)
