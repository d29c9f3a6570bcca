"""The learned baseline: plain supervised regression of the refocused image, no diffusion.

A residual U-Net maps the reference photo, its disparity (zeros and a 0 flag when absent, with the
same depth dropout as the model) and the requested camera as per-pixel maps (the signed target
circle of confusion `K (D - d_f)` where depth is given, the blur level K, a bump at the focus
point, pixel coordinates) to `reference + residual`, trained with the squared error to both
targets of each training example, on the same data pipeline and device renders as the diffusion
model. Trained for the same wall-clock as the model, it shows in the benchmark what the diffusion
model adds over plain regression.

    python -m diffcamera_jax.regression_baseline --config configs/default.py --out DIR \
        (--steps N | --minutes M)
    python -m diffcamera_jax.evaluate --model M --baseline DIR ...

The export is the model's format (`config.json` + `params/`), with `config.baseline` recording the
network's widths and the steps and seconds trained.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from diffcamera_jax.objective.example import Example, make_simulate_fn, max_blur_radius
from diffcamera_jax import optics
from diffcamera_jax.cli import EXIT_BAD_INPUT, ArgumentParser, one_line
from diffcamera_jax.models.pixel_path import focus_bump
from diffcamera_jax.models.restorer import UNet, pad_to_multiple, pixel_coordinates

WIDTHS = (24, 48, 96)


def condition_maps(reference: jnp.ndarray, disparity: jnp.ndarray | None, depth_keep: jnp.ndarray,
                   focus: jnp.ndarray, blur: jnp.ndarray, blur_top: float) -> jnp.ndarray:
  """The network's input `[B, H, W, 10]`: photo, depth and flag, camera maps, coordinates."""
  b, h, w, _ = reference.shape
  if disparity is None:
    disparity, depth_keep = jnp.zeros((b, h, w)), jnp.zeros((b,), bool)
  keep = depth_keep.astype(jnp.float32)[:, None, None]
  coc = optics.signed_coc(disparity, optics.focus_disparity(disparity, focus), blur) * keep
  bump = focus_bump(focus, (h, w))
  scale = max(blur_top, 1e-6)
  maps = [2.0 * reference - 1.0, ((2.0 * disparity - 1.0) * keep)[..., None],
          jnp.broadcast_to(keep, (b, h, w))[..., None], (coc / scale)[..., None],
          jnp.broadcast_to((blur / scale)[:, None, None], (b, h, w))[..., None], bump[..., None],
          pixel_coordinates(b, h, w)]
  return jnp.concatenate(maps, axis=-1)


class RegressionNet(nn.Module):
  """`apply(reference, disparity | None, depth_keep, focus, blur) -> image [B, H, W, 3]`."""
  widths: tuple[int, ...] = WIDTHS
  blur_top: float = 5.0  # the largest blur (pixels) at the training size, for normalisation

  @nn.compact
  def __call__(self, reference, disparity, depth_keep, focus, blur) -> jnp.ndarray:
    h, w = reference.shape[1:3]
    x = condition_maps(reference, disparity, depth_keep, focus, blur, self.blur_top)
    feats = UNet(self.widths, global_context=True)(pad_to_multiple(x, 4))[:, :h, :w]
    # The U-Net has no normalisation; trained, its features drifted to about -2e4, where SiLU
    # is 0 everywhere and the head returned the input plus its bias. Normalised, the head always
    # sees features of unit scale.
    feats = nn.LayerNorm(name="head_norm")(feats)
    residual = nn.Conv(3, (3, 3), padding="SAME", kernel_init=nn.initializers.zeros_init())(
        nn.silu(feats))
    return reference + residual


def build(config: ml_collections.ConfigDict) -> RegressionNet:
  widths = tuple(config.baseline.widths) if "baseline" in config else WIDTHS
  return RegressionNet(widths=widths, blur_top=max_blur_radius(config.data))


def pair_loss(net: RegressionNet, params: Any, example: Example, keep: jnp.ndarray) -> jnp.ndarray:
  """Mean squared error to both targets of each example (focus f_t1 and f_t2, blur K_t)."""
  loss = 0.0
  for focus_key, target_key in (("target_focus", "target"), ("target_focus_2", "target_2")):
    out = net.apply({"params": params}, example.reference, example.disparity, keep,
                    getattr(example, focus_key), example.target_blur)
    loss = loss + jnp.mean(jnp.square(out - getattr(example, target_key)))
  return 0.5 * loss


def train(config: ml_collections.ConfigDict, steps: int | None = None,
          minutes: float | None = None, log: Callable[[str], None] = print) -> tuple[Any, dict]:
  """Trains on `config`'s data for `steps` or until `minutes` pass; returns (params, record)."""
  from data_pipeline import pipeline
  from diffcamera_jax import sharding
  from diffcamera_jax.training import state as train_state
  net = build(config)
  mesh = sharding.make_mesh(config)
  data_iter = pipeline.make_train_iterator(config)
  simulate = make_simulate_fn(config, mesh)
  h, w = config.data.image_size
  rng = jax.random.key(config.seed)
  zeros = jnp.zeros((1, h, w, 3))
  params = nn.meta.unbox(net.init(rng, zeros, jnp.zeros((1, h, w)), jnp.ones((1,), bool),
                                  jnp.zeros((1, 2)), jnp.zeros((1,)))["params"])
  total = steps or 10 ** 9
  schedule_config = ml_collections.ConfigDict(config.to_dict())
  schedule_config.train.num_steps = steps or config.train.num_steps
  tx = train_state.make_optimizer(schedule_config)
  opt_state = tx.init(params)
  p_drop = float(config.objective.p_depth_drop)

  @jax.jit
  def step(params, opt_state, example, key):
    keep = jax.random.uniform(key, (example.reference.shape[0],)) >= p_drop
    loss, grads = jax.value_and_grad(lambda p: pair_loss(net, p, example, keep))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  start, done, window, curve = time.time(), 0, [], []
  while done < total and (minutes is None or time.time() - start < 60.0 * minutes):
    batch = pipeline.to_global_batch(next(data_iter), mesh)
    render_key, drop_key = jax.random.split(jax.random.fold_in(rng, done))
    params, opt_state, loss = step(params, opt_state, simulate(batch, render_key), drop_key)
    window.append(loss)
    done += 1
    if done % 100 == 0:  # the mean over the last 100 steps: single batches vary ~3x
      mean = float(np.mean(jax.device_get(window)))
      window = []
      curve.append([done, mean])
      log(f"step {done}: mean loss {mean:.5f}, {done / (time.time() - start):.2f} steps/s")
  jax.block_until_ready(params)
  return params, {"steps": done, "seconds": time.time() - start, "widths": list(net.widths),
                  "loss_every_100": curve}


def load_method(path: str, use_depth: bool = True) -> Callable:
  """An exported baseline as a benchmark method `(reference, disparity, focus, blur) -> images`."""
  from diffcamera_jax.exported import load_exported
  config, params = load_exported(path)
  if "baseline" not in config:
    raise ValueError(f"{path} is not a regression baseline export (no config.baseline)")
  net = build(config)
  apply = jax.jit(lambda p, r, d, k, f, b: net.apply({"params": p}, r, d, k, f, b))

  def method(reference, disparity, focus, blur):
    n = len(reference)
    d = jnp.asarray(disparity, jnp.float32) if use_depth else None
    out = apply(params, jnp.asarray(reference, jnp.float32), d, jnp.full((n,), use_depth),
                jnp.asarray(focus, jnp.float32), jnp.asarray(blur, jnp.float32))
    return np.clip(np.asarray(out), 0.0, 1.0)
  return method


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """`FILE[:VARIANT]` -> `get_config(VARIANT)` of that config file."""
  path, _, variant = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("baseline_config", path)
  if module_spec is None:
    raise ValueError(f"--config {path}: not a Python config file")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant)


def main(argv: list[str] | None = None) -> int:
  p = ArgumentParser(prog="python -m diffcamera_jax.regression_baseline",
                     description=__doc__.split("\n\n")[0])
  p.add_argument("--config", required=True, help="config file[:variant] (data, optimiser)")
  p.add_argument("--out", required=True, help="export directory (must not hold an export)")
  budget = p.add_mutually_exclusive_group(required=True)
  budget.add_argument("--steps", type=int)
  budget.add_argument("--minutes", type=float)
  args = p.parse_args(argv)
  from diffcamera_jax.configs.validation import ConfigError, validate_config
  from diffcamera_jax.exported import PARAMS_DIR, save_exported
  try:
    if (args.steps is not None and args.steps <= 0) or (args.minutes is not None
                                                        and args.minutes <= 0):
      raise ValueError("--steps / --minutes must be positive")
    if not os.path.isfile(args.config.partition(":")[0]):
      raise ValueError(f"--config {args.config}: no such file")
    if os.path.exists(os.path.join(args.out, PARAMS_DIR)):
      raise ValueError(f"--out {args.out} already holds an export; choose another")
    config = load_config_file(args.config)
    validate_config(config, num_devices=jax.device_count(), check_paths=True)
  except (ValueError, ConfigError, OSError, SyntaxError, AttributeError) as e:
    print(f"regression_baseline: error: {one_line(str(e))}", file=sys.stderr)
    return EXIT_BAD_INPUT
  params, record = train(config, args.steps, args.minutes)
  config.baseline = ml_collections.ConfigDict(record)
  save_exported(args.out, config, params)
  print(f"trained {record['steps']} steps in {record['seconds']:.0f} s -> {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
