"""Full-resolution composition, strip rendering and memory budgets (the Refocuser's use:
test_refocuser.py)."""
import numpy as np
import pytest

from diffcamera_jax.inference import compose, memory, resize


def _photo(h, w, seed=0):
  rng = np.random.default_rng(seed)
  return rng.uniform(0.2, 0.8, size=(h, w, 3)).astype(np.float32)


@pytest.mark.parametrize("text, expected", [("8G", 8 * 2 ** 30), ("512M", 512 * 2 ** 20),
                                            ("1.5g", int(1.5 * 2 ** 30)), ("2GiB", 2 ** 31),
                                            ("3000000", 3_000_000)])
def test_parse_bytes(text, expected):
  assert memory.parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "8X", "", "-1G", "10K"])
def test_parse_bytes_rejects(text):
  with pytest.raises(ValueError):
    memory.parse_bytes(text)


def test_compose_returns_the_photo_when_the_model_returns_its_input():
  photo = _photo(90, 130)
  work = resize.downscale(photo[None], resize.working_size(90, 130, 32))[0]
  np.testing.assert_allclose(compose.compose(work, photo), photo, atol=1e-5)
  # a change at the working resolution arrives smoothly upscaled, the fine band untouched
  changed = compose.compose(work + 0.1, photo)
  np.testing.assert_allclose(changed - photo, 0.1, atol=1e-4)


def test_strips_match_the_whole_render_on_layered_depth(layered_disparity):
  photo, disparity = _photo(200, 120, 1), layered_disparity(200, 120)
  blur = 12.0  # tap-summed and FFT-blurred bins on both sides of the focal plane
  radius = compose.radius_bucket(blur)
  whole = compose.render_in_strips(photo, disparity, 0.5, blur, max_radius=radius, budget=2 ** 40)
  assert memory.compiled_bytes(compose._compiled_render((200, 120), 2.2, radius)) > 2 * 2 ** 20
  strips = compose.render_in_strips(photo, disparity, 0.5, blur, max_radius=radius, budget=2 * 2 ** 20)
  np.testing.assert_allclose(strips, whole, atol=1e-4)


def test_without_depth_the_fine_band_follows_the_detail_the_model_kept():
  """`compose_without_depth`: a frame that keeps the working photo gets the photo's whole fine
  band back (the photo itself); a frame that is flat gets none of it (the flat frame, upscaled);
  a frame that kept the left half's detail gets the band on the left only."""
  photo = _photo(96, 128, 2)
  work = resize.downscale(photo[None], (24, 32))[0]
  kept = compose.compose_without_depth(work, work, photo)
  np.testing.assert_allclose(kept, photo, atol=1e-4)
  flat = np.full_like(work, 0.5)
  np.testing.assert_allclose(compose.compose_without_depth(flat, work, photo), 0.5, atol=1e-5)
  half = work.copy()
  half[:, 16:] = 0.5
  out = compose.compose_without_depth(half, work, photo)
  fine = photo - resize.upscale(work[None], (96, 128))[0]
  added = out - resize.upscale(half[None], (96, 128))[0]
  np.testing.assert_allclose(added[:, :48], fine[:, :48], atol=0.02)
  assert np.abs(added[:, 80:]).max() < 0.1 * np.abs(fine[:, 80:]).max()


def test_host_memory_is_checked_against_its_budget():
  need = memory.host_bytes((600, 800), 3)
  assert memory.check_host((600, 800), 3, need) == need
  with pytest.raises(memory.MemoryBudgetError, match="800x600 photo with 3 frame"):
    memory.check_host((600, 800), 3, need - 1)
