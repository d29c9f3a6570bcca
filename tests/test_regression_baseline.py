"""The learned regression baseline: identity at initialisation, it fits, the CLI exports, the
benchmark scores it beside the baselines, bad input exits 2."""
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffcamera_jax.objective.example import Example
from diffcamera_jax import regression_baseline as rb
from diffcamera_jax.testing.batches import random_batch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=900, check=False)


def _init(net, batch):
  return nn.meta.unbox(net.init(
      jax.random.key(0), batch["reference"], batch["disparity"], jnp.ones((4,), bool),
      batch["target_focus"], batch["target_blur"])["params"])


def test_starts_as_the_reference_and_fits_one_batch():
  net = rb.RegressionNet(widths=(8, 8, 16), blur_top=4.0)
  batch = jax.tree.map(jnp.asarray, random_batch(0, 4, (16, 16)))
  params = _init(net, batch)
  keep = jnp.array([True, False, True, False])
  out = net.apply({"params": params}, batch["reference"], batch["disparity"], keep,
                  batch["target_focus"], batch["target_blur"])
  np.testing.assert_allclose(out, batch["reference"], atol=1e-6)
  tx = optax.adam(3e-3)
  opt = tx.init(params)
  example = Example.from_dict(batch)
  loss_fn = jax.jit(jax.value_and_grad(lambda p: rb.pair_loss(net, p, example, keep)))
  first = None
  for _ in range(80):
    loss, grads = loss_fn(params)
    first = first if first is not None else float(loss)
    updates, opt = tx.update(grads, opt, params)
    params = optax.apply_updates(params, updates)
  assert float(loss) < 0.5 * first, (first, float(loss))


def test_head_stays_live_when_the_unet_features_drift():
  """Trained for 28 minutes the U-Net's features drifted to about -2e4, where SiLU is 0: the
  exported baseline returned its input plus a constant. The head normalises its input, so the
  output still follows the requested blur with every feature shifted far negative."""
  net = rb.RegressionNet(widths=(8, 8, 16), blur_top=4.0)
  batch = jax.tree.map(jnp.asarray, random_batch(0, 4, (16, 16)))
  params = jax.tree.map(lambda p: p, _init(net, batch))
  unet = params["UNet_0"]
  last = sorted(k for k in unet if k.startswith("_ResBlock"))[-1]
  conv = sorted(unet[last])[-1]
  inner = unet[last][conv]["Conv_0"]
  inner["bias"] = inner["bias"] - 2e4  # the drift seen in training
  head = params["Conv_0"]
  head["kernel"] = 0.1 * jax.random.normal(jax.random.key(1), head["kernel"].shape)
  keep = jnp.ones((4,), bool)
  outs = [net.apply({"params": params}, batch["reference"], batch["disparity"], keep,
                    batch["target_focus"], jnp.full((4,), k)) for k in (0.0, 3.0)]
  assert float(jnp.max(jnp.abs(outs[0] - outs[1]))) > 1e-3


def test_cli_exports_and_the_benchmark_scores_it(tmp_path):
  out = str(tmp_path / "baseline")
  proc = _run("diffcamera_jax.regression_baseline", "--config", "configs/default.py:tiny",
              "--out", out, "--steps", "2")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert os.path.isfile(os.path.join(out, "config.json"))
  ev = str(tmp_path / "eval")
  proc = _run("diffcamera_jax.evaluate", "--baseline", out, "--num-scenes", "2", "--size",
              "32x32", "--quiet", "--out", ev)
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(os.path.join(ev, "results.json")) as f:
    methods = json.load(f)["benchmarks"]["procedural"]["methods"]
  assert "learned baseline (regression)" in methods
  scores = methods["learned baseline (regression)"]["summary"]
  assert np.isfinite(scores["deblur/psnr"]) and np.isfinite(scores["refocus/psnr"])
  # the export is live: two training steps already move its outputs away from its input, on
  # every scene and task (a dead export scores exactly as "input unchanged")
  learned = methods["learned baseline (regression)"]["per_scene"]
  unchanged = methods["input unchanged"]["per_scene"]
  for task in ("bokeh", "deblur", "refocus"):
    assert all(a != b for a, b in zip(learned[f"{task}/psnr"], unchanged[f"{task}/psnr"])), task


def test_bad_input_exits_2_with_one_line(tmp_path):
  cases = [
      ("diffcamera_jax.regression_baseline", "--config", "configs/default.py:tiny", "--out",
       str(tmp_path / "a"), "--minutes", "0"),
      ("diffcamera_jax.regression_baseline", "--config", "configs/none.py", "--out",
       str(tmp_path / "b"), "--steps", "1"),
      ("diffcamera_jax.evaluate", "--baseline", str(tmp_path / "missing"), "--num-scenes", "1",
       "--out", str(tmp_path / "c")),
  ]
  for args in cases:
    proc = _run(*args)
    assert proc.returncode == 2, (args, proc.stderr[-1000:])
    assert "Traceback" not in proc.stderr
    assert len([l for l in proc.stderr.splitlines() if "error" in l.lower()]) == 1, proc.stderr
