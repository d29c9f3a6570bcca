"""Evaluation during training on fixed held-out procedural scenes, plus sample grids.

Metrics (EMA params, `config.eval.sample_steps` Euler steps): PSNR of the refocused prediction
against the exactly rendered target (`eval/psnr`), the same for the unchanged input as a reference
point (`eval/psnr_input`), and stacking consistency — the depth-mask blend of the two refocused
predictions of a stacking pair against the true multi-focus image (`eval/stack_psnr`).
Grids (PNG under `workdir/samples/` and TensorBoard images): rows reference | target | prediction,
columns a focus sweep and a blur sweep of one scene.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from data_pipeline import cameras as cameras_lib
from data_pipeline import procedural
from data_pipeline.simulate import simulate
from diffcamera_jax import metrics, optics, sampling
from diffcamera_jax.imageio import save_image
from diffcamera_jax.models.camera import camera_features

SWEEP = 5  # columns of the focus and blur sweeps
PSNR_CAP = 100.0  # dB; identical images (e.g. a reference that equals its target) count as this


def _mean_psnr(a: jax.Array, b: jax.Array) -> float:
  return float(jnp.mean(jnp.minimum(metrics.psnr(a, b), PSNR_CAP)))


def held_out_batch(config: ml_collections.ConfigDict, num_scenes: int) -> dict[str, np.ndarray]:
  """Host batch of held-out scenes with cameras drawn from a fixed generator (same every call)."""
  height, width = config.data.image_size
  ranges = cameras_lib.CameraRanges.from_config(config.data)
  examples = []
  for index in range(num_scenes):
    image, disparity = procedural.make_scene(config.eval.procedural_seed, index, height, width)
    rng = np.random.default_rng([config.eval.procedural_seed, index])
    examples.append({"image": image, "disparity": disparity,
                     **cameras_lib.sample_cameras(rng, disparity, ranges)})
  return {key: np.stack([e[key] for e in examples]) for key in examples[0]}


def _to_host(x: jax.Array) -> np.ndarray:
  if jax.process_count() > 1 and not x.is_fully_addressable:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


class HeldOutEvaluator:
  """Holds the rendered held-out examples and a jitted sampler; `run` evaluates some params."""

  def __init__(self, config: ml_collections.ConfigDict, model: Any, codec: Any, mesh: Any,
               workdir: str) -> None:
    del mesh  # Inputs are small and replicated; the sampler follows the params' sharding.
    self.config = config
    self.image_hw = tuple(config.data.image_size)
    self.samples_dir = os.path.join(workdir, "samples")
    host = held_out_batch(config, config.eval.num_scenes)
    self.example = jax.jit(lambda b: simulate(b, gamma=config.data.gamma))(host)
    self.sample = sampling.make_sampler(model, codec, config)
    self.rng = jax.random.key(config.seed + 1)

  def _camera(self, focus, blur, blades, rotation) -> jax.Array:
    return camera_features(focus, blur, self.image_hw, blades, rotation)

  def _predict(self, params, reference, disparity, camera) -> jax.Array:
    return self.sample(params, reference, disparity, camera, self.rng, self.config.eval.sample_steps)

  def evaluate(self, params: Any) -> dict[str, float]:
    """Scalar metrics of `params` on the held-out scenes."""
    ex = self.example
    blades, rotation = ex["aperture_blades"], ex["aperture_rotation"]
    pred_1 = self._predict(params, ex["reference"], ex["disparity"],
                           self._camera(ex["target_focus"], ex["target_blur"], blades, rotation))
    pred_2 = self._predict(params, ex["reference"], ex["disparity"],
                           self._camera(ex["target_focus_2"], ex["target_blur"], blades, rotation))
    pred_1, pred_2 = _to_host(pred_1), _to_host(pred_2)
    return {
        "eval/psnr": _mean_psnr(jnp.concatenate([pred_1, pred_2]),
                                jnp.concatenate([ex["target"], ex["target_2"]])),
        "eval/psnr_input": _mean_psnr(jnp.concatenate([ex["reference"], ex["reference"]]),
                                      jnp.concatenate([ex["target"], ex["target_2"]])),
        "eval/stack_psnr": float(jnp.mean(metrics.stacking_consistency(
            pred_1, pred_2, ex["stack_mask"], ex["multifocus"]))),
    }

  def sweep_grids(self, params: Any) -> dict[str, np.ndarray]:
    """`focus_sweep` and `blur_sweep` grids of scene 0: rows reference | target | prediction."""
    ex = self.example
    image, disparity = ex["image"][:1], ex["disparity"][:1]
    reference = jnp.repeat(ex["reference"][:1], SWEEP, axis=0)
    depth = jnp.repeat(disparity, SWEEP, axis=0)
    blades = jnp.repeat(ex["aperture_blades"][:1], SWEEP)
    rotation = jnp.repeat(ex["aperture_rotation"][:1], SWEEP)
    max_blur = self.config.data.blur_range[1] * max(self.image_hw) / self.config.data.blur_reference_size
    # Focus sweep: points at disparity quantiles of the scene, strong blur.
    flat = np.asarray(disparity[0]).ravel()
    order = np.argsort(flat)
    picks = order[np.linspace(0, flat.size - 1, SWEEP).astype(int)]
    rows, cols = np.unravel_index(picks, disparity.shape[1:])
    focus = np.stack([(cols + 0.5) / self.image_hw[1], (rows + 0.5) / self.image_hw[0]], -1)
    sweeps = {
        "focus_sweep": (jnp.asarray(focus, jnp.float32), jnp.full((SWEEP,), max_blur, jnp.float32)),
        "blur_sweep": (jnp.repeat(ex["target_focus"][:1], SWEEP, axis=0),
                       jnp.linspace(0.0, max_blur, SWEEP, dtype=jnp.float32)),
    }
    grids = {}
    for name, (focus_points, blur) in sweeps.items():
      d_f = optics.focus_disparity(depth, focus_points)
      target = optics.render(jnp.repeat(image, SWEEP, axis=0), depth, d_f, blur,
                             aperture=optics.Aperture(blades, rotation), gamma=self.config.data.gamma)
      pred = _to_host(self._predict(params, reference, depth,
                                    self._camera(focus_points, blur, blades, rotation)))
      rows_ = [np.concatenate(list(np.asarray(r)), axis=1) for r in (reference, target, pred)]
      grids[name] = np.clip(np.concatenate(rows_, axis=0), 0.0, 1.0)
    return grids

  def run(self, params: Any, step: int, writer: Any) -> dict[str, float]:
    """Evaluates, writes scalars, TensorBoard images and PNG grids; returns the scalars."""
    scalars = self.evaluate(params)
    writer.write_scalars(step, scalars)
    grids = self.sweep_grids(params)
    writer.write_images(step, {f"samples/{k}": v[None] for k, v in grids.items()})
    if jax.process_index() == 0:
      for name, grid in grids.items():
        save_image(os.path.join(self.samples_dir, f"step_{step:07d}_{name}.png"), grid)
    return scalars
