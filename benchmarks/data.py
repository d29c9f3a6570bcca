"""Data throughput: host pipeline examples/s, device-stage ms per batch, margin over the train step.

    PYTHONPATH=. python benchmarks/data.py --out=benchmarks/results/data.json

Host pipeline: examples/s of `pipeline.make_train_iterator` for each image size and worker count
(steady state: worker start-up and prefetched batches are excluded). Device stage: ms per batch of
the jitted `simulate` (compile excluded). Train step: ms per batch of the default model's jitted
step on a simulated batch; the margin is host examples/s over the examples/s render + step consume.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from typing import Any, Callable

from absl import app
from absl import flags
import grain
import jax
import numpy as np

from diffcamera_jax.configs import default
from data_pipeline import pipeline
from diffcamera_jax.objective import example as simulate_lib

_OUT = flags.DEFINE_string("out", "benchmarks/results/data.json", "JSON output path.")
_SIZES = flags.DEFINE_list("sizes", ["64", "512"], "Square image sizes for the host pipeline.")
_WORKERS = flags.DEFINE_list("workers", ["0", "2"], "Grain worker counts (0 = in-process).")
_DEVICE_SIZES = flags.DEFINE_list("device_sizes", ["64"], "Square sizes for the device stage.")
_BATCHES = flags.DEFINE_integer("batches", 16, "Batches per host measurement (second half timed).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed batches first (worker start-up, caches).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per device measurement (median).")
_TRAIN_STEP = flags.DEFINE_bool("train_step", True, "Also time the default train step.")


def _config(size: int, num_workers: int = 0):
  config = default.get_config()
  config.data.image_size = (size, size)
  config.data.num_workers = num_workers
  return config


def host_examples_per_s(size: int, num_workers: int, batches: int, warmup: int) -> dict[str, Any]:
  """Steady-state examples/s of the host pipeline (one process, this host's batches).

  Timed over the second half of `batches` (after `warmup`), so batches that prefetching buffered
  ahead of time are consumed before the clock starts and only production speed is measured.
  """
  if batches < 4:
    raise ValueError(f"batches must be >= 4, got {batches}")
  config = _config(size, num_workers)
  iterator = pipeline.make_train_iterator(config, process_index=0, process_count=1)
  for _ in range(warmup + batches // 2):
    next(iterator)
  timed = batches - batches // 2
  start = time.perf_counter()
  for _ in range(timed):
    next(iterator)
  seconds = time.perf_counter() - start
  del iterator  # stops the worker processes
  batch_size = config.data.batch_size
  return {"image_size": [size, size], "num_workers": num_workers, "batch_size": batch_size,
          "timed_batches": timed, "examples_per_s": batch_size * timed / seconds}


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
  jax.block_until_ready(fn())  # compile
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return 1000.0 * statistics.median(times)


def _host_batch(config) -> dict[str, np.ndarray]:
  return next(pipeline.make_train_iterator(config, process_index=0, process_count=1))


def device_stage_ms(size: int, repeats: int) -> dict[str, Any]:
  """Median ms per batch of the jitted device stage on one batch of the default config."""
  config = _config(size)
  batch = jax.device_put(_host_batch(config))
  fn = simulate_lib.make_simulate_fn(config)
  rng = jax.random.key(0)
  ms = _median_ms(lambda: fn(batch, rng), repeats)
  return {"image_size": [size, size], "batch_size": config.data.batch_size,
          "max_radius": simulate_lib.max_blur_radius(config.data), "ms_per_batch": ms}


def train_step_ms(repeats: int) -> dict[str, Any]:
  """Median ms per step of the default config's jitted train step (on one simulated batch)."""
  from diffcamera_jax import models, sharding  # pylint: disable=g-import-not-at-top
  from diffcamera_jax.training import state as train_state
  from diffcamera_jax.training import step as train_step_lib  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  mesh = sharding.make_mesh(config)
  model, codec = models.build_model(config)
  state, state_sharding = train_state.create_train_state(config, model, codec, mesh,
                                                         jax.random.key(0))
  step = train_step_lib.make_train_step(config, model, codec, mesh, state_sharding)
  example = simulate_lib.make_simulate_fn(config, mesh)(
      pipeline.to_global_batch(_host_batch(config), mesh), None)
  holder = {"state": state}

  def run():
    holder["state"], metrics = step(holder["state"], example, jax.random.key(1))
    return metrics

  ms = _median_ms(run, repeats)
  return {"image_size": list(config.data.image_size), "batch_size": config.data.batch_size,
          "model": f"{config.model.name}-{config.model.size}", "ms_per_step": ms}


def main(argv) -> None:
  del argv
  results: dict[str, Any] = {
      "command": "PYTHONPATH=. python benchmarks/data.py " + " ".join(
          flags.FLAGS[f].serialize() for f in
          ("sizes", "workers", "device_sizes", "batches", "warmup", "repeats", "train_step")),
      "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                  "jax_backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
                  "jax": jax.__version__, "grain": grain.__version__,
                  # Shared machines: a load above cpu_count means the figures are contended.
                  "load_average_at_start": os.getloadavg()},
      "host_pipeline": [], "device_stage": [],
  }
  for size in (int(s) for s in _SIZES.value):
    for workers in (int(w) for w in _WORKERS.value):
      row = host_examples_per_s(size, workers, _BATCHES.value, _WARMUP.value)
      print(row)
      results["host_pipeline"].append(row)
  for size in (int(s) for s in _DEVICE_SIZES.value):
    row = device_stage_ms(size, _REPEATS.value)
    print(row)
    results["device_stage"].append(row)
  if _TRAIN_STEP.value:
    step = train_step_ms(_REPEATS.value)
    default_size = list(default.get_config().data.image_size)
    render = [r["ms_per_batch"] for r in results["device_stage"] if r["image_size"] == default_size]
    host = [r["examples_per_s"] for r in results["host_pipeline"]
            if r["image_size"] == default_size]
    if render and host:  # both measured at the default size
      consumed = step["batch_size"] / ((step["ms_per_step"] + render[0]) / 1000.0)
      step.update(examples_per_s_consumed=consumed, host_margin=max(host) / consumed)
    print(step)
    results["train_step"] = step
  results["machine"]["load_average_at_end"] = os.getloadavg()
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  with open(_OUT.value, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
