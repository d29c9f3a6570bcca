"""Design sweep: train variants of configs/default.py for one step budget, score each on validation.

    python tools/design_sweep.py --steps 2000 --out DIR \
        --variant base= --variant hi_t=objective.timestep_mean=1.5 \
        --variant p4=model.patch_size=4

Each variant is `NAME=field=value,field=value` (values parsed as Python literals, else strings).
Per variant it writes `DIR/NAME.json`: the train time, the flow loss every 100 steps and the
benchmark summaries on the validation scenes (procedural scenes of `config.eval.procedural_seed`,
never the benchmark's seed: a sweep tunes, the benchmark only reports) at 1 and 4 sampling steps,
with and without depth, the learned model alone (no optics pre-pass). Training runs the same pipeline, simulate stage and jitted step as `diffcamera_jax.train`,
without checkpoints or summaries; the EMA params are scored. Extra sizes for sweeps: `M` (width 256,
depth 4) and `S4` (width 128, depth 4). On an image without tensorflow-datasets the folder builder
is skipped (procedural data only); Grain workers are kept off the accelerator.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import types

from diffcamera_jax.configs.overrides import parse_variant


def _skip_tfds_builder() -> None:
  """Lets the pipeline import without tensorflow-datasets (only the folder builder needs it)."""
  if importlib.util.find_spec("tensorflow_datasets") is not None:
    return
  import data_pipeline
  package = types.ModuleType("data_pipeline.image_depth_folder")
  package.__path__ = [os.path.join(os.path.dirname(data_pipeline.__file__), "image_depth_folder")]
  sys.modules["data_pipeline.image_depth_folder"] = package


def _score(config, params, num_scenes: int, sample_steps) -> dict:
  """Benchmark summaries of `params` on the validation scenes, with and without depth."""
  from diffcamera_jax.evaluation import benchmark
  from diffcamera_jax.inference.refocuser import Refocuser
  scenes = benchmark.procedural_scenes(num_scenes, *config.data.image_size,
                                      seed=config.eval.procedural_seed)
  refocuser = Refocuser(config, params, batch_size=16, optics_prepass=False)
  result = {}
  for n in sample_steps:
    for use_depth in (True, False):
      method = refocuser.as_method(num_steps=n, use_depth=use_depth)
      summary = benchmark.run(method, scenes, batch_size=16)["summary"]
      key = f"steps{n}_{'depth' if use_depth else 'nodepth'}"
      result[key] = {k: v for k, v in summary.items() if not isinstance(v, list)}
  return result


def train_and_score(name: str, overrides: dict, steps: int, num_scenes: int, workers: int,
                    sample_steps=(1, 4), base: str = "", eval_at=()) -> dict:
  """Trains `configs/default.py:base` with `overrides` for `steps` and scores the EMA params on
  the validation scenes at the end and, for a learning curve, at each step in `eval_at`
  (1-step sampling there; the training time excludes the scoring)."""
  import jax
  from diffcamera_jax.configs import default
  from data_pipeline import pipeline
  from diffcamera_jax.objective import example as simulate_lib
  from diffcamera_jax import models, sharding
  from diffcamera_jax.training import state as train_state, step as train_step
  from diffcamera_jax.configs.validation import validate_config
  from diffcamera_jax.models import sizes

  sizes.SIZES.setdefault("M", sizes.ModelSize(width=256, depth=4, num_heads=4))
  sizes.SIZES.setdefault("S4", sizes.ModelSize(width=128, depth=4, num_heads=2))
  config = default.get_config(base)
  config.data.num_workers = workers
  config.train.num_steps = steps
  for field, value in overrides.items():
    node, *path = [config] + field.split(".")[:-1]
    for key in path:
      node = node[key]
    node[field.split(".")[-1]] = value
  validate_config(config, num_devices=jax.device_count(), check_paths=False)

  mesh = sharding.make_mesh(config)
  data = pipeline.make_train_iterator(config)
  model, codec = models.build_model(config)
  init_rng, loop_rng = jax.random.split(jax.random.key(config.seed))
  _, state_sharding, init = train_state.train_state_plan(config, model, codec, mesh)
  state = init(init_rng)
  step_fn = train_step.make_train_step(config, model, codec, mesh, state_sharding)
  simulate = simulate_lib.make_simulate_fn(config, mesh)
  train_s, losses, curve = 0.0, [], []
  start = time.time()
  for step in range(steps):
    batch = pipeline.to_global_batch(next(data), mesh)
    render_rng, update_rng = jax.random.split(jax.random.fold_in(loop_rng, step))
    state, metrics = step_fn(state, simulate(batch, render_rng), update_rng)
    if (step + 1) % 100 == 0:
      losses.append(float(metrics["flow_loss"]))
    if step + 1 in eval_at and step + 1 < steps:
      jax.block_until_ready(state)
      train_s += time.time() - start
      point = {"step": step + 1, "train_s": train_s}
      point.update(_score(config, state.ema_params, num_scenes, (1,)))
      curve.append(point)
      print(f"{name} step {step + 1}: {_line(point['steps1_depth'])}", flush=True)
      start = time.time()
  jax.block_until_ready(state)
  train_s += time.time() - start
  result = {"name": name, "base": base, "overrides": overrides, "seed": config.seed,
            "steps": steps, "train_s": train_s, "flow_loss_every_100": losses}
  result.update(_score(config, state.ema_params, num_scenes, sample_steps))
  if eval_at:
    curve.append({"step": steps, "train_s": train_s, "steps1_depth": result["steps1_depth"],
                  "steps1_nodepth": result["steps1_nodepth"]})
    result["curve"] = curve
  return result


def _line(one: dict) -> str:
  return (f"deblur {one['deblur/psnr']:.3f}  refocus {one['refocus/psnr']:.3f}  "
          f"bokeh {one['bokeh/psnr']:.3f}  LVCorr {one['sweep/lvcorr']:.3f}  "
          f"focus {one['bokeh/focus_accuracy']:.2f}")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=2000)
  parser.add_argument("--variant", action="append", required=True)
  parser.add_argument("--num-scenes", type=int, default=50)
  parser.add_argument("--workers", type=int, default=0, help="Grain worker processes")
  parser.add_argument("--base", default="", help="variant of configs/default.py, e.g. paper")
  parser.add_argument("--eval-at", default="",
                      help="comma-separated steps at which to score too (a learning curve)")
  parser.add_argument("--sample-steps", default="1,4", help="sampler steps scored at the end")
  parser.add_argument("--out", required=True)
  args = parser.parse_args(argv)
  eval_at = tuple(int(s) for s in args.eval_at.split(",") if s)
  sample_steps = tuple(int(s) for s in args.sample_steps.split(",") if s)
  variants = [parse_variant(v) for v in args.variant]
  _skip_tfds_builder()
  import jax
  jax.devices()  # the accelerator is taken here; Grain workers spawned later stay on the CPU
  os.environ["JAX_PLATFORMS"] = "cpu"
  os.makedirs(args.out, exist_ok=True)
  for name, overrides in variants:
    result = train_and_score(name, overrides, args.steps, args.num_scenes, args.workers,
                             sample_steps, args.base, eval_at)
    with open(os.path.join(args.out, f"{name}.json"), "w", encoding="utf-8") as f:
      json.dump(result, f, indent=1)
    print(f"{name}: {_line(result[f'steps{sample_steps[0]}_depth'])}  "
          f"({result['train_s']:.0f} s)", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
