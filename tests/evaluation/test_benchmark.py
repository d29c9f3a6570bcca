"""The benchmark: fixed scenes and cameras, exact ground truth, baselines score as physics says."""
import numpy as np
import pytest
from PIL import Image

from diffcamera_jax import imageio, optics
from diffcamera_jax.evaluation import benchmark, metrics

SIZE = 32


@pytest.fixture(scope="module")
def scenes():
  return benchmark.procedural_scenes(3, SIZE, SIZE)


@pytest.fixture(scope="module")
def spec():
  return benchmark.BenchmarkSpec()


@pytest.fixture(scope="module")
def renderer_method(spec):
  return benchmark.make_renderer_method(spec.gamma)  # one compiled renderer for the module


def test_scenes_and_cameras_are_fixed(scenes, spec):
  again = benchmark.procedural_scenes(3, SIZE, SIZE)
  for a, b in zip(scenes, again):
    np.testing.assert_array_equal(a.image, b.image)
  cams = benchmark.draw_cameras(scenes, range(3), spec)
  cams2 = benchmark.draw_cameras(scenes, range(3), spec)
  np.testing.assert_array_equal(cams.focus_b, cams2.focus_b)
  lo, hi = (spec.pixels(v, SIZE, SIZE) for v in spec.blur_range)
  assert np.all((cams.blur >= lo) & (cams.blur <= hi))
  # B is the candidate farthest in depth from A, so the refocus task really moves the focus.
  assert np.all(np.abs(cams.disparity_b - cams.disparity_a) > 0.1)
  with pytest.raises(ValueError, match="num_scenes"):
    benchmark.procedural_scenes(151, SIZE, SIZE)


def test_ground_truth_is_the_renderer(scenes, spec, renderer_method):
  gt = benchmark.ground_truth(scenes, range(3), spec)
  c = gt.cameras
  np.testing.assert_allclose(c.disparity_b, optics.focus_disparity(gt.disparity, c.focus_b))
  # The renderer baseline finds the focal plane from the point itself: same image.
  want = renderer_method(gt.image, gt.disparity, c.focus_b, c.blur)
  np.testing.assert_allclose(gt.render_b, want, atol=1e-6)
  ref, focus, blur, target = benchmark.task_request(gt, "deblur")
  np.testing.assert_array_equal(blur, 0.0)
  np.testing.assert_array_equal(target, gt.image)
  np.testing.assert_array_equal(ref, gt.render_a)
  with pytest.raises(ValueError, match="task"):
    benchmark.task_request(gt, "zoom")


def test_baselines_score_as_expected(scenes, spec, renderer_method):
  identity = benchmark.run(benchmark.identity_method, scenes, spec, batch_size=3)["summary"]
  renderer = benchmark.run(renderer_method, scenes, spec, batch_size=3)
  r = renderer["summary"]
  # The renderer on the all-in-focus input *is* the bokeh ground truth.
  assert r["bokeh/psnr"] == benchmark.PSNR_CAP and r["bokeh/ssim"] == pytest.approx(1.0, abs=1e-5)
  assert r["bokeh/focus_accuracy"] == 1.0 and r["sweep/lvcorr"] > 0.8
  # Classical rendering cannot deblur: with K = 0 it returns the input, like the identity.
  assert r["deblur/psnr"] == pytest.approx(identity["deblur/psnr"], abs=1e-3)
  # The unchanged input ignores every request.
  assert identity["bokeh/focus_accuracy"] == 0.0 and identity["sweep/lvcorr"] == 0.0
  assert identity["bokeh/psnr"] < 60
  assert len(renderer["per_scene"]["refocus/psnr"]) == 3
  assert renderer["examples"]["sweep"].shape == (3, spec.sweep_levels, SIZE, SIZE, 3)


def test_stacking_score_is_the_blend_psnr(scenes, spec):
  gt = benchmark.ground_truth(scenes, range(3), spec)
  perfect = {"a": gt.render_a, "b": gt.render_b}

  def method(reference, disparity, focus, blur):  # outputs the true renders for A and B
    return perfect["a"] if np.allclose(focus, gt.cameras.focus_a) and blur[0] > 0 else perfect["b"]
  scores, _ = benchmark.score_batch(method, gt, spec)
  want = np.minimum(metrics.stacking_consistency(gt.render_a, gt.render_b, gt.mask, gt.multifocus),
                    benchmark.PSNR_CAP)
  np.testing.assert_allclose(scores["stacking/psnr"], want, atol=1e-4)
  assert np.all(scores["stacking/psnr"] > 25)  # the blend of exact renders is close to multi-focus


def test_wrong_output_shape_is_reported(scenes, spec):
  gt = benchmark.ground_truth(scenes, range(3), spec)
  with pytest.raises(ValueError, match="shape"):
    benchmark.score_batch(lambda r, d, f, k: r[:, :-1], gt, spec)


def test_folder_scenes(tmp_path):
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(tmp_path / "a.png")
  depth = np.tile(np.linspace(1.0, 5.0, 60), (40, 1))
  np.save(tmp_path / "a_depth.npy", depth)
  Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(tmp_path / "b.jpg")
  imageio.save_disparity_png(tmp_path / "b_disparity.png", rng.uniform(size=(30, 30)))
  scenes = benchmark.folder_scenes(str(tmp_path), 24, 24)
  assert [s.name for s in scenes] == ["a", "b"]
  assert scenes[0].image.shape == (24, 24, 3) and scenes[0].disparity.shape == (24, 24)
  # Depth grows to the right, so disparity (1 = near) falls to the right.
  assert scenes[0].disparity[:, 0].mean() > scenes[0].disparity[:, -1].mean()
  Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "c.png")
  with pytest.raises(ValueError, match="c.png.*no depth"):
    benchmark.folder_scenes(str(tmp_path), 24, 24)
  with pytest.raises(ValueError, match="does not exist"):
    benchmark.folder_scenes(str(tmp_path / "nope"), 24, 24)
