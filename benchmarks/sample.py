"""Sampling speed of the default model: ms per sampling step and per image, first call vs jitted.

    PYTHONPATH=. python benchmarks/sample.py --out=benchmarks/results/sample_cpu.json

For each square size: the first call (trace + compile + one run of `--steps` steps), then the
compiled sampler at `--steps` and `2 * --steps` steps (`num_steps` is traced, so neither
recompiles). Per step = the difference / `--steps`; the fixed part (encode, decode, dispatch) is
what remains; per image at the model's default step count = fixed + steps x per step. Batch 1,
random weights (speed does not depend on them). `--attention_chunk=Q` (> 0) sets
`config.model.attention_chunk`, so attention materialises logits for Q queries at a time instead of
all of them. A size whose attention logits (per chunk) would not fit in `--max_attention_gb` (the
CPU path materialises them) is recorded as skipped with the estimate.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time

from absl import app
from absl import flags
import flax.linen as nn
import jax
import numpy as np

from diffcamera_jax.configs import default
from diffcamera_jax.models import build_model, camera_features, example_inputs
from diffcamera_jax.inference.sampler import make_sampler

_OUT = flags.DEFINE_string("out", "benchmarks/results/sample_cpu.json", "JSON output path.")
_SIZES = flags.DEFINE_list("sizes", ["256", "512"], "Square image sizes.")
_STEPS = flags.DEFINE_integer("steps", 2, "Steps of the short run (the long run doubles it).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats of each compiled run (median).")
_ATTENTION_CHUNK = flags.DEFINE_integer(
    "attention_chunk", -1, "Query block size of attention (0 = off; -1 = the config's value).")
_MAX_ATTENTION_GB = flags.DEFINE_float(
    "max_attention_gb", 4.0, "Skip sizes whose attention logits exceed this many GB.")


def _timed(fn) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


def attention_gb(config, size: int) -> float:
  """Bytes of one layer's f32 attention logits `[heads, Q, T]` for a batch of 1, in GB.

  Q = T (all queries) without query chunking, else `config.model.attention_chunk`.
  """
  from diffcamera_jax.models.sizes import get_size
  t = tokens(config, size)
  chunk = int(config.model.attention_chunk)
  queries = min(chunk, t) if chunk > 0 else t
  return get_size(config.model.size).num_heads * queries * t * 4 / 1e9


def tokens(config, size: int) -> int:
  """Sequence length of the DiT at `size`^2 (target + reference (+ depth) + camera tokens)."""
  from diffcamera_jax.models.sizes import get_size
  grid = (size // config.model.patch_size) ** 2
  return (2 * grid + get_size(config.model.size).num_camera_tokens
          + (grid if config.model.depth_mode == "tokens" else 0))


def measure(config, size: int) -> dict:
  """Timings for one size (see the module docstring)."""
  model, codec = build_model(config)
  params = model.init({"params": jax.random.key(0)}, *example_inputs(codec, (size, size)))["params"]
  params = nn.meta.unbox(params)
  sample = make_sampler(model, codec, config)
  rng = np.random.default_rng(0)
  image = rng.uniform(size=(1, size, size, 3)).astype(np.float32)
  disparity = rng.uniform(size=(1, size, size)).astype(np.float32)
  camera = camera_features(np.array([[0.5, 0.5]], np.float32), np.array([8.0], np.float32),
                           (size, size), np.zeros(1, np.int32), np.zeros(1, np.float32))
  key = jax.random.key(0)
  n = _STEPS.value
  run = lambda steps: sample(params, image, disparity, camera, key, steps)
  first = _timed(lambda: run(n))
  short = statistics.median(_timed(lambda: run(n)) for _ in range(_REPEATS.value))
  long = statistics.median(_timed(lambda: run(2 * n)) for _ in range(_REPEATS.value))
  per_step = max(long - short, 0.0) / n
  fixed = max(short - n * per_step, 0.0)
  default_steps = int(config.objective.sample_steps)
  return {
      "size": size, "batch": 1, "steps_timed": [n, 2 * n],
      "first_call_ms": 1e3 * first, "first_call_compile_ms": 1e3 * max(first - short, 0.0),
      "jitted_ms_per_step": 1e3 * per_step, "jitted_fixed_ms": 1e3 * fixed,
      "default_steps": default_steps,
      "jitted_ms_per_image": 1e3 * (fixed + default_steps * per_step),
      "tokens": tokens(config, size),
      "attention_gb_per_layer": attention_gb(config, size),
  }


def main(argv) -> None:
  del argv
  config = default.get_config()
  if _ATTENTION_CHUNK.value >= 0:
    config.model.attention_chunk = _ATTENTION_CHUNK.value
  results = []
  for size in (int(s) for s in _SIZES.value):
    gb = attention_gb(config, size)
    if gb > _MAX_ATTENTION_GB.value:
      results.append({"size": size, "skipped": f"attention logits need {gb:.1f} GB per layer "
                                               f"> --max_attention_gb={_MAX_ATTENTION_GB.value}"})
    else:
      results.append(measure(config, size))
    print(json.dumps(results[-1]))
  out = {"benchmark": "sample", "model": {"size": config.model.size,
                                          "patch_size": config.model.patch_size,
                                          "attention_chunk": int(config.model.attention_chunk),
                                          "depth_mode": config.model.depth_mode,
                                          "latent_mode": config.model.latent_mode},
         "device": str(jax.devices()[0].device_kind), "platform": jax.default_backend(),
         "host": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
         # Timings on a shared machine are only comparable at a similar load.
         "load_average_1m_at_end": os.getloadavg()[0], "results": results}
  os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
  with open(_OUT.value, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1)
  print(_OUT.value)


if __name__ == "__main__":
  app.run(main)
