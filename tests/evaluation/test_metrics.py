"""Metrics on inputs whose answer is known: exact noise levels, closed-form SSIM, blur sweeps."""
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax.objective.example import stack_mask
from diffcamera_jax.objective.losses import stack_blend
from diffcamera_jax.evaluation import metrics


def disk_blur(image: np.ndarray, radius: float, supersample: int = 8) -> np.ndarray:
  """Reference defocus of a constant-depth plane: area-coverage disk kernel, reflect borders."""
  if radius <= 0:
    return image.copy()
  n = int(np.ceil(radius))
  size = 2 * n + 1
  c = (np.arange(size * supersample) + 0.5) / supersample - size / 2
  x, y = np.meshgrid(c, c)
  k = (x ** 2 + y ** 2 <= radius ** 2).astype(np.float64)
  k = k.reshape(size, supersample, size, supersample).mean((1, 3))
  k /= k.sum()
  p = np.pad(image, ((n, n), (n, n), (0, 0)), mode="reflect")
  h, w = image.shape[:2]
  out = np.zeros_like(image, dtype=np.float64)
  for dy, dx in zip(*np.nonzero(k)):
    out += k[dy, dx] * p[dy:dy + h, dx:dx + w]
  return out.astype(np.float32)


def _texture(h=40, w=40, seed=0):
  return np.random.default_rng(seed).uniform(size=(h, w, 3)).astype(np.float32)


def test_identical_images():
  a = _texture()
  assert float(metrics.mse(a, a)) == 0.0
  assert np.isinf(float(metrics.psnr(a, a)))
  assert float(metrics.ssim(a, a)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("sigma", [0.01, 0.05, 0.2])
def test_psnr_of_known_noise_level(sigma):
  base = np.full((16, 16, 3), 0.5, np.float32)
  signs = np.where((np.indices((16, 16)).sum(0) % 2) == 0, 1.0, -1.0)[..., None]
  noisy = base + sigma * signs  # every pixel off by exactly sigma: MSE = sigma^2
  assert float(metrics.psnr(base, noisy)) == pytest.approx(-10 * np.log10(sigma ** 2), abs=1e-3)


def test_ssim_of_constant_images_matches_closed_form():
  # Constant images: the contrast-structure term is C2/C2 = 1, luminance is (2ab+C1)/(a^2+b^2+C1).
  a, b, c1 = 0.3, 0.6, 0.01 ** 2
  ia, ib = np.full((16, 16, 3), a, np.float32), np.full((16, 16, 3), b, np.float32)
  assert float(metrics.ssim(ia, ib)) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-4)


def test_ssim_falls_with_noise_and_is_symmetric():
  a = _texture(seed=1)
  rng = np.random.default_rng(2)
  scores = [float(metrics.ssim(a, np.clip(a + s * rng.standard_normal(a.shape), 0, 1)))
            for s in (0.02, 0.1, 0.3)]
  assert scores[0] > scores[1] > scores[2]
  b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
  assert float(metrics.ssim(a, b)) == pytest.approx(float(metrics.ssim(b, a)), abs=1e-6)


def test_laplacian_of_ramp_and_quadratic():
  x = np.arange(12, dtype=np.float32)
  ramp = np.broadcast_to((0.05 * x)[None, :, None], (10, 12, 3))
  np.testing.assert_allclose(metrics.laplacian(ramp), 0.0, atol=1e-6)
  quad = np.broadcast_to((0.003 * x ** 2)[None, :, None], (10, 12, 3))
  np.testing.assert_allclose(metrics.laplacian(quad), 2 * 0.003, atol=1e-6)
  assert float(metrics.laplacian_variance(quad)) == pytest.approx(0.0, abs=1e-10)


def test_lvcorr_blur_sweep_is_one_and_reversed_minus_one():
  img = _texture(48, 48)
  levels = np.linspace(0.0, 8.0, 6)
  sweep = np.stack([disk_blur(img, r) for r in levels])
  assert float(metrics.lvcorr(levels, sweep)) == pytest.approx(1.0, abs=1e-6)  # monotone
  assert float(metrics.lvcorr(levels, sweep[::-1])) == pytest.approx(-1.0, abs=1e-6)
  good = float(metrics.lvcorr(levels, sweep, method="pearson_log"))
  assert 0.9 < good < 1.0  # log-sharpness is not linear in K
  assert float(metrics.lvcorr(levels, sweep[::-1], method="pearson_log")) == pytest.approx(
      -good, abs=1e-5)
  # A permutation: Spearman's rho of the permuted ranks, 1 - 6 sum d^2 / (n (n^2 - 1)).
  perm = np.array([3, 0, 5, 1, 4, 2])
  d = np.arange(6) - perm
  rho = 1 - 6 * (d ** 2).sum() / (6 * 35)
  assert float(metrics.lvcorr(levels, sweep[perm])) == pytest.approx(rho, abs=1e-6)
  assert abs(float(metrics.lvcorr(levels, sweep[perm], method="pearson_log"))) < 0.5
  # A method that ignores the blur level entirely.
  for method in ("spearman", "pearson_log"):
    assert float(metrics.lvcorr(levels, np.stack([img] * 6), method=method)) == 0.0
  with pytest.raises(ValueError, match="method"):
    metrics.lvcorr(levels, sweep, method="kendall")


def test_ranks_average_ties():
  np.testing.assert_allclose(metrics.ranks(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1.0, 3.5, 2.0])


def test_lvcorr_batched_and_bad_shapes():
  img = _texture(24, 24)
  levels = np.array([0.0, 2.0, 4.0])
  sweep = np.stack([disk_blur(img, r) for r in levels])
  batched = metrics.lvcorr(levels, np.stack([sweep, sweep[::-1]]))
  assert batched.shape == (2,) and batched[0] > 0.9 and batched[1] < -0.9
  with pytest.raises(ValueError, match="blur_levels"):
    metrics.lvcorr(np.array([1.0]), sweep[:1])
  with pytest.raises(ValueError, match="sweep"):
    metrics.lvcorr(levels, sweep[:2])


def _two_plane_scene(h=48, w=48):
  img = _texture(h, w, seed=3)
  disp = np.full((h, w), 0.2, np.float32)
  disp[:, w // 2:] = 0.8
  return img, disp


def test_focus_accuracy_finds_the_sharp_plane():
  img, disp = _two_plane_scene()
  blurred = disk_blur(img, 3.0)
  near_sharp = np.where(disp[..., None] > 0.5, img, blurred)  # focused on the near plane (0.8)
  assert float(metrics.focus_accuracy(near_sharp, img, disp, 0.8)) == 1.0
  assert float(metrics.focus_accuracy(near_sharp, img, disp, 0.2)) == 0.0
  far_sharp = np.where(disp[..., None] > 0.5, blurred, img)
  assert float(metrics.focus_accuracy(far_sharp, img, disp, 0.2)) == 1.0
  assert float(metrics.focus_accuracy(far_sharp, img, disp, 0.8)) == 0.0


def test_focus_accuracy_normalises_by_texture():
  # The far plane is far less textured; raw sharpness would always pick the near plane.
  img, disp = _two_plane_scene()
  img = np.where(disp[..., None] > 0.5, img, 0.5 + 0.05 * (img - 0.5)).astype(np.float32)
  far_sharp = np.where(disp[..., None] > 0.5, disk_blur(img, 3.0), img)
  assert float(metrics.focus_accuracy(far_sharp, img, disp, 0.2)) == 1.0


def test_focus_accuracy_ignoring_the_request_scores_zero_and_flat_scene_is_undefined():
  img, disp = _two_plane_scene()
  assert float(metrics.focus_accuracy(img, img, disp, 0.8)) == 0.0  # input unchanged: a tie
  flat = np.full_like(disp, 0.5)
  assert np.isnan(float(metrics.focus_accuracy(img, img, flat, 0.5)))  # nothing off focus
  with pytest.raises(ValueError, match="disparity"):
    metrics.focus_accuracy(img, img, disp[:-1], 0.8)
  with pytest.raises(ValueError, match="near"):
    metrics.focus_accuracy(img, img, disp, 0.8, near=0.3, far=0.2)


def test_relative_sharpness_of_known_blur():
  img, disp = _two_plane_scene()
  everywhere = np.ones_like(disp)
  assert float(metrics.relative_sharpness(img, img, everywhere)) == pytest.approx(1.0)
  half = 0.5 + 0.5 * (img - 0.5)  # contrast halved: Laplacian halved, energy quartered
  assert float(metrics.relative_sharpness(half, img, everywhere)) == pytest.approx(0.25, rel=1e-4)
  assert np.isnan(float(metrics.relative_sharpness(img, img, np.zeros_like(disp))))


def test_stacking_consistency_exact_and_known_offset():
  img, disp = _two_plane_scene(16, 16)
  mask = np.asarray(stack_mask(disp, 0.8, 0.2))
  np.testing.assert_array_equal(mask, (disp > 0.5).astype(np.float32))
  out_1, out_2 = _texture(16, 16, 5), _texture(16, 16, 6)
  multifocus = np.where(mask[..., None] > 0, out_1, out_2)
  assert np.isinf(float(metrics.stacking_consistency(out_1, out_2, mask, multifocus)))
  delta = 0.1
  got = float(metrics.stacking_consistency(out_1, out_2, mask, multifocus + delta))
  assert got == pytest.approx(-20 * np.log10(delta), abs=1e-3)
  with pytest.raises(ValueError, match="mask"):
    stack_blend(jnp.asarray(out_1), jnp.asarray(out_2), jnp.asarray(mask[:-1]))


def test_mismatched_shapes_are_named():
  with pytest.raises(ValueError, match="same shape"):
    metrics.psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
  with pytest.raises(ValueError, match="11x11"):
    metrics.ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))
