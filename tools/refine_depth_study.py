"""Can a map-correcting U-Net learn to correct inaccurate depth maps here, and what is it worth?

    python tools/refine_depth_study.py [--steps 3000] [--batch 16] [--lr 1e-3] [--widths 16,32,64]
        [--num-train 2048] [--eval-at 750,1500,...] [--out FILE.json]

Trains the correcting network of `model.restorer.refine_depth` on its own (a `restorer.UNet` with
global context over the photo, its pixel coordinates and the given map, a zero-initialised head
adding a correction to the map, clipped with a straight-through gradient), supervised directly by
the squared error to the true disparity. Training: 2048 procedural scenes of the training seed
(0) at 64², half the maps replaced by `objective.depth_errors` corruptions, half the photos
defocused by the renderer (one random camera each, K 1.5-4 px). Then, on 96 validation scenes
(seed 20 000, never the benchmark's), for each corruption of `evaluation/depth_corruption.py` and
the true map: the mean |error| of the given and corrected maps, and the PSNR of the classical
renderer given each, on the benchmark's bokeh (sharp photo) and refocus (defocused photo) requests.
It measures the design's ceiling without the rest of the model and its training budget.
`--eval-at` also scores the validation scenes at those steps of the same run (one cosine schedule
over `--steps`): a learning curve that says whether steps or the design limit the gain.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from data_pipeline import procedural
from diffcamera_jax import optics
from diffcamera_jax.evaluation import benchmark, depth_corruption
from diffcamera_jax.models.layers import Conv
from diffcamera_jax.models.restorer import UNet, corrected_map, pad_to_multiple, pixel_coordinates
from diffcamera_jax.objective import depth_errors

NUM_TRAIN, NUM_VAL, SIZE, VALIDATION_SEED = 2048, 96, 64, 20_000


class Corrector(nn.Module):
  """`(photo [B, H, W, 3], map [B, H, W]) -> corrected map`, the refining stage's design."""
  widths: tuple[int, ...] = (16, 32, 64)

  @nn.compact
  def __call__(self, image: jax.Array, given: jax.Array) -> jax.Array:
    b, h, w, _ = image.shape
    x = jnp.concatenate([2 * image - 1, pixel_coordinates(b, h, w), (2 * given - 1)[..., None]], -1)
    feats = UNet(self.widths, global_context=True)(pad_to_multiple(x, 4))[:, :h, :w]
    return corrected_map(given, Conv(1, zero_init=True)(nn.silu(feats))[..., 0])


def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  mse = np.maximum(np.mean((a - b) ** 2, axis=(1, 2, 3)), 1e-10)
  return np.minimum(10 * np.log10(1 / mse), benchmark.PSNR_CAP)


def study(steps: int, batch: int, lr: float, widths: tuple[int, ...] = (16, 32, 64),
          num_train: int = NUM_TRAIN, num_val: int = NUM_VAL,
          eval_at: tuple[int, ...] = ()) -> dict:
  """Train the corrector for `steps` and score it on `num_val` validation scenes (docstring above),
  also after each step count in `eval_at` (the `curve` entry; its last point is the final one)."""
  rng = np.random.default_rng(0)
  scenes = [procedural.make_scene(0, i, SIZE, SIZE) for i in range(num_train)]
  img = np.stack([a for a, _ in scenes]).astype(np.float32)
  disp = np.stack([d for _, d in scenes]).astype(np.float32)
  render = jax.jit(lambda im, d, f, k: optics.render(im, d, optics.focus_disparity(d, f), k))
  points = rng.uniform(0.1, 0.9, (num_train, 2)).astype(np.float32)
  blurs = rng.uniform(1.5, 4.0, num_train).astype(np.float32)
  defocused = np.concatenate([np.asarray(render(img[i:i + 256], disp[i:i + 256],
                                                points[i:i + 256], blurs[i:i + 256]))
                              for i in range(0, num_train, 256)])
  photos, maps = jnp.asarray(np.stack([img, defocused])), jnp.asarray(disp)

  model = Corrector(widths)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, SIZE, SIZE, 3)),
                      jnp.zeros((1, SIZE, SIZE)))
  tx = optax.adam(optax.cosine_decay_schedule(lr, max(steps, 1), 0.1))
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, key, photos, maps, idx, which):  # data as arguments, not jit constants
    k_corrupt, _ = jax.random.split(key)
    image, true = photos[which, idx], maps[idx]
    given, _ = depth_errors.corrupt(k_corrupt, true, 0.5)
    loss_fn = lambda p: jnp.mean(jnp.square(model.apply(p, image, given) - true))
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  val = benchmark.procedural_scenes(num_val, SIZE, SIZE, seed=VALIDATION_SEED)
  true = np.stack([s.disparity for s in val]).astype(np.float32)
  gt = benchmark.ground_truth(val, range(num_val), benchmark.BenchmarkSpec())
  given_maps = {kind: true if kind == "none" else np.stack(
      [depth_corruption.corrupt(d, kind) for d in true]).astype(np.float32)
      for kind in ("none",) + tuple(depth_corruption.CORRUPTIONS)}
  correct = jax.jit(model.apply)
  requests = {"bokeh": (gt.image, gt.cameras.focus_a, gt.render_a),
              "refocus": (gt.render_a, gt.cameras.focus_b, gt.render_b)}
  # the renderer given each map as it is: the same at every point of the curve
  given_psnr = {(kind, task): _psnr(np.asarray(render(photo, given, focus, gt.cameras.blur)), target)
                for kind, given in given_maps.items()
                for task, (photo, focus, target) in requests.items()}

  def evaluate(params) -> dict:
    rows = {}
    for kind, given in given_maps.items():
      row = {}
      for task, (photo, focus, target) in requests.items():
        refined = np.asarray(correct(params, jnp.asarray(photo), jnp.asarray(given)))
        before = given_psnr[kind, task]
        after = _psnr(np.asarray(render(photo, refined, focus, gt.cameras.blur)), target)
        gain = after - before
        row[task] = {"map_error_given": float(np.abs(given - true).mean()),
                     "map_error_corrected": float(np.abs(refined - true).mean()),
                     "renderer_psnr_given": float(before.mean()),
                     "renderer_psnr_corrected": float(after.mean()),
                     "gain": float(gain.mean()),
                     "gain_se": float(gain.std(ddof=1) / np.sqrt(num_val))}
      rows[kind] = row
    return rows

  kinds = tuple(depth_corruption.CORRUPTIONS)
  mean_gain = lambda rows: {t: float(np.mean([rows[k][t]["gain"] for k in kinds]))
                            for t in requests}
  key, start, losses, curve = jax.random.PRNGKey(1), time.time(), [], []
  for i in range(steps):
    key, k = jax.random.split(key)
    params, opt, loss = step(params, opt, k, photos, maps,
                             jnp.asarray(rng.integers(0, num_train, batch)),
                             jnp.asarray(rng.integers(0, 2, batch)))
    losses.append(float(loss))
    if i % 250 == 0:
      print(f"step {i} loss {float(loss):.5f} {time.time() - start:.0f} s", flush=True)
    if i + 1 in eval_at and i + 1 < steps:
      rows = evaluate(params)
      curve.append({"step": i + 1, "loss_mean_last_100": float(np.mean(losses[-100:])),
                    "mean_gain_over_corruptions": mean_gain(rows), "per_map": rows})
      print(f"step {i + 1}: mean gain {curve[-1]['mean_gain_over_corruptions']}", flush=True)
  train_seconds = time.time() - start
  rows = evaluate(params)
  for kind, row in rows.items():
    print(kind, {t: round(r["gain"], 3) for t, r in row.items()}, flush=True)
  curve.append({"step": steps, "loss_mean_last_100": float(np.mean(losses[-100:])) if losses
                else None, "mean_gain_over_corruptions": mean_gain(rows), "per_map": rows})
  return {"steps": steps, "batch": batch, "lr": lr, "widths": list(widths),
          "num_train": num_train, "train_seconds": train_seconds,
          "final_loss_mean_last_100": curve[-1]["loss_mean_last_100"],
          "validation_seed": VALIDATION_SEED, "num_validation_scenes": num_val,
          "per_map": rows, "mean_gain_over_corruptions": mean_gain(rows), "curve": curve}


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=3000)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--lr", type=float, default=1e-3)
  parser.add_argument("--widths", default="16,32,64")
  parser.add_argument("--num-train", type=int, default=NUM_TRAIN)
  parser.add_argument("--eval-at", default="", help="comma-separated step counts")
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  eval_at = tuple(int(n) for n in args.eval_at.split(",") if n)
  result = study(args.steps, args.batch, args.lr, tuple(int(w) for w in args.widths.split(",")),
                 args.num_train, eval_at=eval_at)
  print("mean gain over corruptions:", result["mean_gain_over_corruptions"])
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
