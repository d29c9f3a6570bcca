"""Evaluation during training: the benchmark's tasks on the validation scenes, plus sample grids.

The same engine and the same pipeline as the reported benchmark's "model" row (`benchmark.run` on
a `Refocuser` without the optics pre-pass: cameras, exact ground truth, scores), on
`config.eval.num_scenes` procedural scenes of the validation seed (`config.eval.procedural_seed`,
apart from training and the benchmark) at the training size, with the EMA params and
`config.eval.sample_steps` Euler steps. Scalars: `eval/psnr` (mean PSNR over
the bokeh, deblur and refocus tasks; `eval/psnr_input` the same for the unchanged input),
`eval/{task}_psnr`, `eval/deblur_gain` and `eval/refocus_gain` (mean per-scene dB over the
input), `eval/stack_psnr` (stacking consistency) and `eval/lvcorr` (blur sweep).
Grids (PNG under `workdir/samples/` and TensorBoard images): per task, rows input | target |
prediction over the first scenes; and the blur sweep of those scenes.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import ml_collections
import numpy as np

from diffcamera_jax.evaluation import benchmark
from diffcamera_jax.imageio import save_image
from diffcamera_jax.inference.refocuser import Refocuser

GRID_SCENES = 4  # scenes shown in the sample grids
_TASK_PSNR = tuple(f"{task}/psnr" for task in benchmark.TASKS)


def validation_scenes(config: ml_collections.ConfigDict) -> list[benchmark.Scene]:
  """The validation scenes: `config.eval.num_scenes` of `config.eval.procedural_seed`."""
  height, width = config.data.image_size
  return benchmark.procedural_scenes(config.eval.num_scenes, height, width,
                                     seed=config.eval.procedural_seed)


class HeldOutEvaluator:
  """The validation scenes, the input's scores and a `Refocuser` of the model; `run` evaluates
  params."""

  def __init__(self, config: ml_collections.ConfigDict, model: Any, codec: Any, mesh: Any,
               workdir: str) -> None:
    del mesh  # Inputs are small and replicated; the sampler follows the params' sharding.
    self.config = config
    self.image_hw = tuple(config.data.image_size)
    self.samples_dir = os.path.join(workdir, "samples")
    self.scenes = validation_scenes(config)
    self.spec = benchmark.BenchmarkSpec(gamma=float(config.data.gamma))
    self.model, self.codec = model, codec
    self.refocuser: Refocuser | None = None  # built with the first params
    self.input_scores = self._score(benchmark.identity_method)["per_scene"]

  def _score(self, method: benchmark.Method) -> dict:
    return benchmark.run(method, self.scenes, self.spec, batch_size=len(self.scenes),
                         num_examples=GRID_SCENES)

  def method(self, params: Any) -> benchmark.Method:
    """`params` as a benchmark method (with depth, disks, no optics pre-pass)."""
    if self.refocuser is None:
      self.refocuser = Refocuser.from_model(
          self.config, self.model, self.codec, params, optics_prepass=False,
          batch_size=len(self.scenes), num_steps=int(self.config.eval.sample_steps))
    self.refocuser.set_params(params)
    return self.refocuser.as_method(seed=self.config.seed + 1)

  def evaluate(self, params: Any) -> tuple[dict[str, float], dict]:
    """Scalar metrics of `params` on the validation scenes, and the benchmark's result."""
    result = self._score(self.method(params))
    per_scene = {k: np.asarray(v) for k, v in result["per_scene"].items()}
    base = {k: np.asarray(v) for k, v in self.input_scores.items()}
    scalars = {f"eval/{task}_psnr": float(np.mean(per_scene[f"{task}/psnr"]))
               for task in benchmark.TASKS}
    scalars.update({
        "eval/psnr": float(np.mean([per_scene[k] for k in _TASK_PSNR])),
        "eval/psnr_input": float(np.mean([base[k] for k in _TASK_PSNR])),
        "eval/deblur_gain": float(np.mean(per_scene["deblur/psnr"] - base["deblur/psnr"])),
        "eval/refocus_gain": float(np.mean(per_scene["refocus/psnr"] - base["refocus/psnr"])),
        "eval/stack_psnr": float(np.mean(per_scene["stacking/psnr"])),
        "eval/lvcorr": float(np.nanmean(per_scene["sweep/lvcorr"])),
    })
    return scalars, result

  def grids(self, result: dict) -> dict[str, np.ndarray]:
    """Per task a grid of rows input | target | prediction; and the blur sweep, one row a scene."""
    inputs = benchmark.example_inputs(self.scenes, self.spec, GRID_SCENES)
    out = {}
    for task in benchmark.TASKS:
      rows = [np.concatenate(list(r), axis=1) for r in
              (inputs[task]["input"], inputs[task]["target"], result["examples"][task])]
      out[task] = np.clip(np.concatenate(rows, axis=0), 0.0, 1.0)
    sweep = result["examples"]["sweep"]  # [scenes, levels, H, W, 3]
    out["blur_sweep"] = np.clip(np.concatenate(
        [np.concatenate(list(frames), axis=1) for frames in sweep], axis=0), 0.0, 1.0)
    return out

  def run(self, params: Any, step: int, writer: Any) -> dict[str, float]:
    """Evaluates, writes scalars, TensorBoard images and PNG grids; returns the scalars."""
    scalars, result = self.evaluate(params)
    writer.write_scalars(step, scalars)
    grids = self.grids(result)
    writer.write_images(step, {f"samples/{k}": v[None] for k, v in grids.items()})
    if jax.process_index() == 0:
      for name, grid in grids.items():
        save_image(os.path.join(self.samples_dir, f"step_{step:07d}_{name}.png"), grid)
    return scalars
