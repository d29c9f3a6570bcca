"""The learned regression baseline (`models/regression.py`, `model.name="regression"`): identity at
initialisation, it fits one batch through the shared `Objective`, the trainer and exporter train
and export it and the benchmark scores it, exports of its earlier loop load as this family, bad
input exits 2."""
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffcamera_jax.configs import default as default_config
from diffcamera_jax.configs import schema
from diffcamera_jax.models import build_model, camera_features
from diffcamera_jax.models.latents import LatentCodec
from diffcamera_jax.models.regression import RegressionNet
from diffcamera_jax.objective.example import Example
from diffcamera_jax.objective.objective import Objective
from diffcamera_jax.testing.batches import random_batch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CODEC = LatentCodec(params=None)  # pixel latents


def _run(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=900, check=False)


def _inputs(batch, keep, blur=None):
  """The DiT-style call of the batch's first target: (x_t, t, reference, disparity, camera, keep)."""
  n, h, w, _ = batch["reference"].shape
  blur = batch["target_blur"] if blur is None else blur
  camera = camera_features(batch["target_focus"], blur, (h, w), jnp.zeros((n,), jnp.int32),
                           jnp.zeros((n,)))
  reference = CODEC.encode(batch["reference"])
  return (jnp.zeros_like(reference), jnp.ones((n,)), reference, batch["disparity"], camera, keep)


def _init(net, batch):
  return nn.meta.unbox(net.init(jax.random.key(0), *_inputs(batch, jnp.ones((4,), bool)))["params"])


def test_starts_as_the_reference_and_fits_one_batch():
  net = RegressionNet(widths=(8, 8, 16), blur_top=4.0)
  batch = jax.tree.map(jnp.asarray, random_batch(0, 4, (16, 16)))
  params = _init(net, batch)
  assert set(params) == {"UNet_0", "head_norm", "Conv_0"}  # the names its earlier loop saved
  keep = jnp.array([True, False, True, False])
  out = net.apply({"params": params}, *_inputs(batch, keep))
  np.testing.assert_allclose(CODEC.decode(out), batch["reference"], atol=1e-6)
  config = default_config.get_config("regression")
  objective = Objective.from_config(config)
  example = Example.from_dict(batch)
  tx = optax.adam(3e-3)
  opt = tx.init(params)
  loss_fn = jax.jit(jax.value_and_grad(
      lambda p, key: objective.losses(net.apply, p, CODEC, example, key, net.patch_size)[0]))
  first = None
  for i in range(80):
    loss, grads = loss_fn(params, jax.random.key(i))
    first = first if first is not None else float(loss)
    updates, opt = tx.update(grads, opt, params)
    params = optax.apply_updates(params, updates)
  assert float(loss) < 0.5 * first, (first, float(loss))


def test_head_stays_live_when_the_unet_features_drift():
  """Trained for 28 minutes the U-Net's features drifted to about -2e4, where SiLU is 0: the
  exported baseline returned its input plus a constant. The head normalises its input, so the
  output still follows the requested blur with every feature shifted far negative."""
  net = RegressionNet(widths=(8, 8, 16), blur_top=4.0)
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
  outs = [net.apply({"params": params}, *_inputs(batch, keep, jnp.full((4,), k)))
          for k in (0.0, 3.0)]
  assert float(jnp.max(jnp.abs(outs[0] - outs[1]))) > 1e-3


def test_exports_of_the_earlier_loop_upgrade_to_this_family():
  config = default_config.get_config()
  config.baseline = {"widths": [8, 16, 32], "steps": 10, "seconds": 1.0}
  del config.model["regression_widths"]
  upgraded = schema.upgrade(config)
  assert upgraded.model.name == "regression"
  assert tuple(upgraded.model.regression_widths) == (8, 16, 32)
  o = upgraded.objective
  assert (o.prior, o.residual, o.prediction, o.sample_steps) == ("none", False, "x0", 1)
  model, codec = build_model(upgraded)
  assert isinstance(model, RegressionNet) and model.widths == (8, 16, 32)
  assert codec.mode == "pixels"


def test_trainer_and_exporter_train_it_and_the_benchmark_scores_it(tmp_path):
  workdir, out = str(tmp_path / "work"), str(tmp_path / "baseline")
  proc = _run("diffcamera_jax.train", "--config=configs/default.py:regression",
              f"--workdir={workdir}", "--config.data.image_size=(32, 32)",
              "--config.data.batch_size=4", "--config.model.regression_widths=(8, 8, 16)",
              "--config.train.num_steps=2", "--config.train.eval_every=2",
              "--config.train.checkpoint_every=2", "--config.eval.num_scenes=2")
  assert proc.returncode == 0, proc.stderr[-2000:]
  proc = _run("diffcamera_jax.export", "--workdir", workdir, "--out", out)
  assert proc.returncode == 0, proc.stderr[-2000:]
  ev = str(tmp_path / "eval")
  proc = _run("diffcamera_jax.evaluate", "--baseline", out, "--num-scenes", "2", "--size",
              "32x32", "--quiet", "--out", ev)
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(os.path.join(ev, "results.json")) as f:
    methods = json.load(f)["benchmarks"]["procedural"]["methods"]
  scores = methods["learned baseline (regression)"]["summary"]
  assert np.isfinite(scores["deblur/psnr"]) and np.isfinite(scores["refocus/psnr"])
  # the export is live: two training steps already move its outputs away from its input, on
  # every scene and task (a dead export scores exactly as "input unchanged")
  learned = methods["learned baseline (regression)"]["per_scene"]
  unchanged = methods["input unchanged"]["per_scene"]
  for task in ("bokeh", "deblur", "refocus"):
    assert all(a != b for a, b in zip(learned[f"{task}/psnr"], unchanged[f"{task}/psnr"])), task
  # a model export that is not a baseline is refused as --baseline
  model_dir = tmp_path / "not_a_baseline"
  model_dir.mkdir()
  config = json.load(open(os.path.join(out, "config.json")))
  config["model"]["name"] = "dit"
  json.dump(config, open(model_dir / "config.json", "w"))
  os.symlink(os.path.join(out, "params"), model_dir / "params")
  proc = _run("diffcamera_jax.evaluate", "--baseline", str(model_dir), "--num-scenes", "1",
              "--out", str(tmp_path / "d"))
  assert proc.returncode == 2 and "not a regression baseline" in proc.stderr, proc.stderr[-1000:]


def test_bad_input_exits_2_with_one_line(tmp_path):
  cases = [
      (("diffcamera_jax.train", "--config=configs/default.py:regression",
        f"--workdir={tmp_path / 'a'}", "--config.model.latent_mode=vae"), "latent_mode='pixels'"),
      (("diffcamera_jax.evaluate", "--baseline", str(tmp_path / "missing"), "--num-scenes", "1",
        "--out", str(tmp_path / "c")), "missing"),
  ]
  for args, message in cases:
    proc = _run(*args)
    assert proc.returncode == 2, (args, proc.stderr[-1000:])
    assert "Traceback" not in proc.stderr
    errors = [l for l in proc.stderr.splitlines() if ": error:" in l]
    assert len(errors) == 1 and message in errors[0], proc.stderr
