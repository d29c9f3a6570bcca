"""LPIPS: known answers (identity, symmetry, sign), the official package on fixed random networks
(fixtures from tools/convert_lpips.py), an independent NumPy re-computation, monotonicity, I/O."""
import os

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
import pytest

from diffcamera_jax.evaluation import lpips

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "lpips")
SMALL = {"alex": (8, 12, 16, 12, 12), "vgg": (4,) * 13}


def _images(n, size, seed=0):
  return np.random.default_rng(seed).uniform(size=(n, size, size, 3)).astype(np.float32)


@pytest.fixture(scope="module", params=["alex", "vgg"])
def small(request):
  net = request.param
  return lpips.LPIPS(net, lpips.random_params(net, seed=1, channels=SMALL[net]))


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_matches_official_lpips_package(net):
  model = lpips.LPIPS.load(os.path.join(FIXTURES, f"{net}_weights.npz"))
  assert model.net == net
  io = np.load(os.path.join(FIXTURES, f"{net}_io.npz"))
  np.testing.assert_allclose(model(io["a"], io["b"]), io["distance"], rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(model.per_layer(io["a"], io["b"]), io["per_layer"], rtol=1e-5,
                             atol=1e-7)


def test_identity_symmetry_and_sign(small):
  x, y = _images(3, 40, 0), _images(3, 40, 1)
  np.testing.assert_array_equal(small(x, x), 0.0)
  d_xy, d_yx = np.asarray(small(x, y)), np.asarray(small(y, x))
  np.testing.assert_array_equal(d_xy, d_yx)
  assert np.all(d_xy > 0)
  assert np.all(np.asarray(small.per_layer(x, y)) >= 0)
  np.testing.assert_allclose(np.asarray(small.per_layer(x, y)).sum(-1), d_xy, rtol=1e-6)


def test_batch_axes_are_kept(small):
  x, y = _images(6, 36, 2).reshape(2, 3, 36, 36, 3), _images(6, 36, 3).reshape(2, 3, 36, 36, 3)
  d = np.asarray(small(x, y))
  assert d.shape == (2, 3)
  np.testing.assert_allclose(d.reshape(-1), small(x.reshape(6, 36, 36, 3), y.reshape(6, 36, 36, 3)),
                             rtol=1e-6)
  np.testing.assert_allclose(small(x[0, :1], y[0, :1]), d[0, :1], rtol=1e-6)


# ---- an independent NumPy re-computation of the same formula ----------------------------------

def _np_conv_relu(x, w, b, stride, pad):
  """x [N, H, W, C], w [O, C, kh, kw] (torch layout): cross-correlation, then ReLU."""
  x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))).astype(np.float64)
  k = w.shape[-1]
  win = sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]  # [N, h, w, C, k, k]
  return np.maximum(np.einsum("nhwcij,ocij->nhwo", win, w.astype(np.float64)) + b, 0.0)


def _np_maxpool(x, k, s):
  return sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s].max(axis=(-2, -1))


def _np_lpips(params, net, a, b):
  ops = {"alex": [("c", 0, 4, 2), "t", ("p", 3, 2), ("c", 3, 1, 2), "t", ("p", 3, 2),
                  ("c", 6, 1, 1), "t", ("c", 8, 1, 1), "t", ("c", 10, 1, 1), "t"],
         "vgg": [("c", 0, 1, 1), ("c", 2, 1, 1), "t", ("p", 2, 2), ("c", 5, 1, 1), ("c", 7, 1, 1), "t",
                 ("p", 2, 2), ("c", 10, 1, 1), ("c", 12, 1, 1), ("c", 14, 1, 1), "t", ("p", 2, 2),
                 ("c", 17, 1, 1), ("c", 19, 1, 1), ("c", 21, 1, 1), "t", ("p", 2, 2),
                 ("c", 24, 1, 1), ("c", 26, 1, 1), ("c", 28, 1, 1), "t"]}[net]
  shift = np.array([-0.030, -0.088, -0.188])
  scale = np.array([0.458, 0.448, 0.450])

  def feats(x):
    x, out = ((2 * x.astype(np.float64) - 1) - shift) / scale, []
    for op in ops:
      if op == "t":
        out.append(x)
      elif op[0] == "c":
        x = _np_conv_relu(x, params[f"features.{op[1]}.weight"], params[f"features.{op[1]}.bias"],
                          op[2], op[3])
      else:
        x = _np_maxpool(x, op[1], op[2])
    return out

  total = 0.0
  for l, (fa, fb) in enumerate(zip(feats(a), feats(b))):
    na = fa / (np.sqrt((fa ** 2).sum(-1, keepdims=True)) + 1e-10)
    nb = fb / (np.sqrt((fb ** 2).sum(-1, keepdims=True)) + 1e-10)
    w = params[f"lin{l}.weight"].reshape(-1).astype(np.float64)
    total = total + np.einsum("nhwc,c->nhw", (na - nb) ** 2, w).mean(axis=(1, 2))
  return total


@pytest.mark.parametrize("net,size", [("alex", 47), ("vgg", 20)])
def test_matches_numpy_recomputation(net, size):
  params = lpips.random_params(net, seed=7, channels=SMALL[net])
  a = _images(2, size, 3)
  b = np.clip(a + np.random.default_rng(4).normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
  want = _np_lpips(params, net, a, b)
  np.testing.assert_allclose(lpips.LPIPS(net, params)(a, b), want, rtol=2e-5)


def test_more_noise_scores_higher(small):
  # A smooth image and increasing amounts of the same noise pattern: distance rises monotonically.
  size = 48
  yy, xx = np.mgrid[0:size, 0:size] / size
  image = np.stack([0.5 + 0.3 * np.sin(6 * xx), 0.5 + 0.3 * np.cos(5 * yy), 0.5 + 0.2 * xx * yy], -1)
  noise = np.random.default_rng(5).normal(size=image.shape)
  levels = [0.0, 0.02, 0.05, 0.1, 0.2, 0.4]
  distorted = np.stack([np.clip(image + s * noise, 0, 1) for s in levels]).astype(np.float32)
  d = np.asarray(small(np.broadcast_to(image, distorted.shape).astype(np.float32), distorted))
  assert d[0] == 0.0
  assert np.all(np.diff(d) > 0), d


@pytest.mark.parametrize("ext", ["npz", "safetensors"])
def test_save_load_round_trip(tmp_path, ext):
  params = lpips.random_params("alex", seed=3, channels=SMALL["alex"])
  # The lpips package's names for the linear layers are accepted too.
  params["lin2.model.1.weight"] = params.pop("lin2.weight")
  path = str(tmp_path / f"w.{ext}")
  lpips.save_params(path, params)
  model = lpips.LPIPS.load(path)
  assert model.net == "alex" and "lin2.weight" in model.params
  x, y = _images(1, 40, 8), _images(1, 40, 9)
  np.testing.assert_allclose(model(x, y), lpips.LPIPS("alex", lpips.canonical_names(params))(x, y),
                             rtol=1e-6)


def test_bad_weights_and_inputs(tmp_path, small):
  params = lpips.random_params("alex", seed=3, channels=SMALL["alex"])
  with pytest.raises(ValueError, match="lack"):
    lpips.LPIPS("alex", {k: v for k, v in params.items() if k != "features.6.bias"})
  with pytest.raises(ValueError, match="non-negative"):
    lpips.LPIPS("alex", params | {"lin0.weight": -params["lin0.weight"]})
  with pytest.raises(ValueError, match="expected weight"):
    lpips.LPIPS("alex", params | {"features.3.weight": params["features.3.weight"][:, :2]})
  with pytest.raises(FileNotFoundError):
    lpips.LPIPS.load(str(tmp_path / "missing.npz"))
  (tmp_path / "w.pth").write_bytes(b"")
  with pytest.raises(ValueError, match="npz or .safetensors"):
    lpips.LPIPS.load(str(tmp_path / "w.pth"))
  too_small = lpips.min_size(small.net) - 1
  with pytest.raises(ValueError, match="too small"):
    small(_images(1, too_small), _images(1, too_small))
  with pytest.raises(ValueError, match="same shape"):
    small(_images(1, 40), _images(1, 41))


def test_min_sizes():
  assert lpips.min_size("alex") == 31 and lpips.min_size("vgg") == 16
  assert lpips.feature_shapes("alex", 64, 64)[0] == (15, 15)


# ---- the benchmark's LPIPS columns (`python -m diffcamera_jax.evaluate --lpips-weights FILE`) ----

@pytest.mark.slow
def test_evaluate_adds_lpips_per_task(tmp_path, capsys):
  import json

  from diffcamera_jax import evaluate
  out = tmp_path / "eval"
  argv = ["--num-scenes", "1", "--size", "32x32", "--examples", "0", "--quiet",
          "--lpips-weights", os.path.join(FIXTURES, "alex_weights.npz"), "--out", str(out)]
  assert evaluate.main(argv) == 0
  methods = json.loads((out / "results.json").read_text())["benchmarks"]["procedural"]["methods"]
  same, renderer = methods["input unchanged"], methods["renderer (true depth)"]
  for m in (same, renderer):
    for task in ("bokeh", "deblur", "refocus"):
      assert len(m["per_scene"][f"{task}/lpips"]) == 1
      assert all(v is not None and v >= 0 for v in m["per_scene"][f"{task}/lpips"])
  # The renderer with true depth reproduces the bokeh target exactly; the unchanged input does not.
  assert renderer["summary"]["bokeh/lpips"] == 0.0
  assert same["summary"]["bokeh/lpips"] > 0
  # Unchanged input: bokeh compares (image, render) and deblur (render, image), so LPIPS symmetry
  # makes them equal; neither baseline can deblur, so theirs agree too.
  np.testing.assert_allclose(same["per_scene"]["bokeh/lpips"], same["per_scene"]["deblur/lpips"],
                             rtol=1e-5)
  np.testing.assert_allclose(renderer["per_scene"]["deblur/lpips"],
                             same["per_scene"]["deblur/lpips"], rtol=1e-5)
  assert "bokeh/lpips" in capsys.readouterr().out


@pytest.mark.parametrize("make, expected", [
    (None, "no such file"),
    (lambda p: p.write_bytes(b"not a zip"), "--lpips-weights"),
    (lambda p: np.savez(p, x=np.zeros(3)), "lack"),
])
def test_evaluate_bad_lpips_weights_exit_2(tmp_path, capsys, make, expected):
  from diffcamera_jax import evaluate
  path = tmp_path / "w.npz"
  if make is not None:
    make(path)
  argv = ["--num-scenes", "1", "--size", "32x32", "--quiet", "--lpips-weights", str(path),
          "--out", str(tmp_path / "o")]
  assert evaluate.main(argv) == evaluate.EXIT_BAD_INPUT
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and expected in err[0]
