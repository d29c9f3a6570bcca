"""Reading and writing images and depth maps: modes, orientation, bit depth, clear errors."""
import numpy as np
import pytest
from PIL import Image

from diffcamera_jax import imageio


def _rgb(h=6, w=9, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rgb_png_roundtrip_exact(tmp_path):
  a = _rgb()
  Image.fromarray(a).save(tmp_path / "a.png")
  img = imageio.load_image(tmp_path / "a.png")
  assert img.dtype == np.float32 and img.shape == (6, 9, 3)
  np.testing.assert_array_equal(imageio.to_uint8(img), a)
  imageio.save_image(tmp_path / "b.png", img)
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b.png")), a)


def test_exif_orientation_is_applied(tmp_path):
  a = _rgb(4, 7)
  im = Image.fromarray(a)
  exif = im.getexif()
  exif[0x0112] = 6  # "rotate 90 CW to view"
  im.save(tmp_path / "rot.jpg", exif=exif, quality=100, subsampling=0)
  img = imageio.load_image(tmp_path / "rot.jpg")
  assert img.shape == (7, 4, 3)  # upright: width and height swapped
  upright = np.rot90(a, k=-1)
  assert np.abs(imageio.to_uint8(img).astype(int) - upright).mean() < 6  # JPEG loss only


def test_grayscale_replicated_to_rgb(tmp_path):
  g = _rgb()[..., 0]
  Image.fromarray(g, mode="L").save(tmp_path / "g.png")
  img = imageio.load_image(tmp_path / "g.png")
  for c in range(3):
    np.testing.assert_allclose(img[..., c], g / 255.0, atol=1e-7)


def test_sixteen_bit_gray_keeps_precision(tmp_path):
  g = np.random.default_rng(1).integers(0, 65536, (5, 8), dtype=np.uint16)
  Image.fromarray(g).save(tmp_path / "g16.png")
  img = imageio.load_image(tmp_path / "g16.png")
  np.testing.assert_allclose(img[..., 1], g / 65535.0, atol=1e-7)


def test_rgba_composited_on_white_or_dropped(tmp_path):
  rgba = np.zeros((2, 3, 4), np.uint8)
  rgba[..., 0] = 200  # red 200, alpha varies
  rgba[..., 3] = np.array([0, 128, 255], np.uint8)[None, :]
  Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
  white = imageio.load_image(tmp_path / "a.png")
  a = rgba[0, :, 3] / 255.0
  np.testing.assert_allclose(white[0, :, 0], 200 / 255 * a + (1 - a), atol=1e-6)
  np.testing.assert_allclose(white[0, :, 1], 1 - a, atol=1e-6)
  dropped = imageio.load_image(tmp_path / "a.png", alpha="drop")
  np.testing.assert_allclose(dropped[0, :, 0], 200 / 255, atol=1e-6)
  np.testing.assert_allclose(dropped[0, :, 1], 0.0)
  with pytest.raises(ValueError, match="alpha"):
    imageio.load_image(tmp_path / "a.png", alpha="black")


def test_palette_image_expanded(tmp_path):
  a = _rgb()
  Image.fromarray(a).quantize(8).save(tmp_path / "p.png")
  expected = np.asarray(Image.open(tmp_path / "p.png").convert("RGB")) / 255.0
  np.testing.assert_allclose(imageio.load_image(tmp_path / "p.png"), expected, atol=1e-7)


def test_bad_image_files_name_the_file(tmp_path):
  with pytest.raises(ValueError, match="missing.png"):
    imageio.load_image(tmp_path / "missing.png")
  (tmp_path / "junk.png").write_bytes(b"not an image at all")
  with pytest.raises(ValueError, match="junk.png"):
    imageio.load_image(tmp_path / "junk.png")
  Image.fromarray(_rgb(64, 64)).save(tmp_path / "cut.png")
  data = (tmp_path / "cut.png").read_bytes()
  (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
  with pytest.raises(ValueError, match="cut.png"):
    imageio.load_image(tmp_path / "cut.png")


def test_disparity_png16_and_depth_flag(tmp_path):
  depth = np.array([[1.0, 2.0], [4.0, 8.0]])
  raw = (depth / 8.0 * 65535).astype(np.uint16)
  Image.fromarray(raw).save(tmp_path / "d.png")
  disp = imageio.load_disparity(tmp_path / "d.png", kind="depth")
  # 1/depth, stretched to [0, 1]: nearest (depth 1) -> 1, farthest (depth 8) -> 0.
  inv = 1.0 / (raw / 65535.0)
  np.testing.assert_allclose(disp, (inv - inv.min()) / (inv.max() - inv.min()), atol=1e-6)
  assert disp[0, 0] == 1.0 and disp[1, 1] == 0.0
  as_disp = imageio.load_disparity(tmp_path / "d.png", kind="disparity")
  np.testing.assert_allclose(as_disp, (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)


def test_disparity_npy_without_normalising(tmp_path):
  d = np.random.default_rng(0).uniform(0.2, 0.7, (4, 5)).astype(np.float32)
  np.save(tmp_path / "d.npy", d)
  np.testing.assert_allclose(imageio.load_disparity(tmp_path / "d.npy", normalize=False), d)
  np.save(tmp_path / "big.npy", d * 3)
  with pytest.raises(ValueError, match="big.npy.*outside"):
    imageio.load_disparity(tmp_path / "big.npy", normalize=False)


def test_depth_invalid_pixels_become_farthest():
  d = imageio.normalize_disparity(np.array([[0.0, 1.0], [2.0, 4.0]]), kind="depth")
  assert d[0, 0] == 0.0 and d[0, 1] == 1.0


def test_disparity_16bit_png_roundtrip(tmp_path):
  d = np.random.default_rng(2).uniform(0, 1, (6, 4)).astype(np.float32)
  imageio.save_disparity_png(tmp_path / "d.png", d)
  back = imageio.load_disparity(tmp_path / "d.png", normalize=False)
  np.testing.assert_allclose(back, d, atol=0.5 / 65535 + 1e-7)


def test_bad_depth_files_name_the_file(tmp_path):
  Image.fromarray(_rgb()).save(tmp_path / "colour.png")
  with pytest.raises(ValueError, match="colour.png.*single-channel"):
    imageio.load_disparity(tmp_path / "colour.png")
  np.save(tmp_path / "nan.npy", np.array([[0.0, np.nan]]))
  with pytest.raises(ValueError, match="nan.npy.*non-finite"):
    imageio.load_disparity(tmp_path / "nan.npy")
  np.save(tmp_path / "cube.npy", np.zeros((2, 3, 4)))
  with pytest.raises(ValueError, match="cube.npy"):
    imageio.load_disparity(tmp_path / "cube.npy")
  with pytest.raises(ValueError, match="nowhere.npy"):
    imageio.load_disparity(tmp_path / "nowhere.npy")
  with pytest.raises(ValueError, match="kind"):
    imageio.normalize_disparity(np.zeros((2, 2)), kind="height")


def test_gif_has_all_frames(tmp_path):
  frames = [np.full((5, 6, 3), v, np.float32) for v in (0.0, 0.5, 1.0)]
  imageio.save_gif(tmp_path / "a.gif", frames, frame_ms=100)
  with Image.open(tmp_path / "a.gif") as im:
    assert im.n_frames == 3
    im.seek(1)
    assert abs(np.asarray(im.convert("RGB")).astype(int).mean() - 128) <= 1
  with pytest.raises(ValueError, match="frames"):
    imageio.save_gif(tmp_path / "b.gif", [])


def test_contact_sheet_layout():
  frames = [np.full((4, 5, 3), i / 4, np.float32) for i in range(5)]
  sheet = imageio.contact_sheet(frames, columns=3, pad=2)
  assert sheet.shape == (2 * (4 + 2) + 2, 3 * (5 + 2) + 2, 3)
  # Frame 4 sits in row 1, column 1.
  np.testing.assert_allclose(sheet[2 + 6:2 + 6 + 4, 2 + 7:2 + 7 + 5], 1.0)
  np.testing.assert_allclose(sheet[2:6, 2 + 7:2 + 7 + 5], 0.25)
  labelled = imageio.contact_sheet(frames, [f"K={i}" for i in range(5)], columns=3)
  assert labelled.shape[0] > sheet.shape[0]
  with pytest.raises(ValueError, match="same size|one size"):
    imageio.contact_sheet([frames[0], np.zeros((3, 3, 3))])
  with pytest.raises(ValueError, match="labels"):
    imageio.contact_sheet(frames, ["a"])
