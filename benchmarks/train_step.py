"""Train-step benchmark: compile time, step time, FLOPs (XLA vs analytic) and MFU.

  python benchmarks/train_step.py [--config=configs/default.py] [--steps=20]
      [--out=benchmarks/results/train_step_cpu.json]

MFU is measured against a roofline taken in the same run: the throughput of a jitted 2048x2048
f32 matmul, timed between the steps so both see the same load. It also prints the analytic FLOPs
per step of `configs/tpu_v4.py` and the step time they imply on TPU v4 chips (275 bf16 TFLOP/s each).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# pylint: disable=wrong-import-position
from diffcamera_jax.configs import default as default_config
from diffcamera_jax.models import build_model
from diffcamera_jax.models.latents import LatentCodec
from diffcamera_jax.objective.example import Example
from diffcamera_jax.models.sizes import dit_forward_flops, dit_train_flops, get_size
from diffcamera_jax.sharding import logical_rules, make_mesh, shard_batch
from diffcamera_jax.training.state import create_train_state
from diffcamera_jax.training.step import make_train_step
# pylint: enable=wrong-import-position

TPU_V4_BF16_FLOPS = 275e12


def synthetic_batch(batch_size: int, hw: tuple[int, int], seed: int = 0) -> Example:
  """A device example of the right shapes (the step's cost does not depend on the values)."""
  rs = np.random.RandomState(seed)
  shapes = Example.shapes(batch_size, hw)
  values = {k: rs.uniform(0, 1, shape).astype(np.float32) if dtype == jnp.float32
            else np.zeros(shape, np.int32) for k, (shape, dtype) in shapes.items()}
  values["stack_mask"] = (values["stack_mask"] > 0.5).astype(np.float32)
  return Example(**values)


def make_matmul(n: int = 2048):
  """A jitted f32 `n x n` matmul and its FLOPs: the roofline probe."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  f = jax.jit(jnp.matmul)
  f(a, b).block_until_ready()
  return (lambda: f(a, b).block_until_ready()), 2.0 * n ** 3


def timed(fn) -> float:
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def analytic_step_flops(config, codec: LatentCodec) -> dict:
  """Analytic DiT FLOPs of one train step of `config` (2 sequences per example)."""
  h, w, c = codec.latent_shape(tuple(config.data.image_size))
  p = config.model.patch_size
  grid = (h // p) * (w // p)
  depth_patch = (p * codec.downsample) ** 2
  forward = dit_forward_flops(get_size(config.model.size), grid, p * p * c, depth_patch,
                              config.model.depth_mode,
                              camera_frequencies=config.model.camera_frequencies)
  return {"per_sequence_forward": forward["embed"] + forward["body"],
          "per_step": dit_train_flops(forward, 2 * config.data.batch_size),
          "tokens_per_sequence": get_size(config.model.size).num_camera_tokens
          + (2 if config.model.depth_mode == "fold" else 3) * grid}


def vae_encode_flops(config, codec: LatentCodec) -> float:
  """XLA's count for the frozen VAE encoding in one step (4 images per example); 0 for pixels."""
  if codec.mode == "pixels":
    return 0.0
  images = jax.ShapeDtypeStruct((4 * config.data.batch_size, *config.data.image_size, 3),
                                jnp.float32)
  return float(jax.jit(LatentCodec.encode).lower(codec, images).cost_analysis()["flops"])


def tpu_v4_estimate(mfu_assumed: float) -> dict:
  """Analytic FLOPs and the compute-bound step time of configs/tpu_v4.py on v4 chips."""
  from diffcamera_jax.configs import tpu_v4  # pylint: disable=import-outside-toplevel
  config = tpu_v4.get_config()
  codec = jax.eval_shape(lambda: build_model(config)[1])  # abstract VAE params, no compute
  codec = LatentCodec(params=codec.params, mode=codec.mode, vae_config=codec.vae_config)
  dit = analytic_step_flops(config, codec)
  vae = vae_encode_flops(config, codec)
  total = dit["per_step"] + vae
  out = {"config": "configs/tpu_v4.py", "model_size": config.model.size,
         "image_size": list(config.data.image_size), "latent_mode": config.model.latent_mode,
         "dtype": config.model.dtype, "global_batch": config.data.batch_size,
         "tokens_per_sequence": dit["tokens_per_sequence"],
         "dit_flops_per_step": dit["per_step"], "vae_encode_flops_per_step": vae,
         "flops_per_step": total, "flops_per_example": total / config.data.batch_size,
         "chip_peak_bf16_flops": TPU_V4_BF16_FLOPS, "remat_recompute_not_counted": True}
  for chips in (16, 64):  # v4-32 and v4-128 slices
    seconds = total / (chips * TPU_V4_BF16_FLOPS)
    out[f"step_seconds_v4_{chips}_chips_at_100pct_mfu"] = seconds
    out[f"step_seconds_v4_{chips}_chips_at_{int(100 * mfu_assumed)}pct_mfu"] = seconds / mfu_assumed
  return out


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config_arg", default="", help="variant of configs/default.py")
  parser.add_argument("--size", default=None, help="override config.model.size")
  parser.add_argument("--depth_mode", default=None, help="override config.model.depth_mode")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/train_step_cpu.json"))
  args = parser.parse_args(argv)

  config = default_config.get_config(args.config_arg)
  if args.size:
    config.model.size = args.size
  if args.depth_mode:
    config.model.depth_mode = args.depth_mode
  model, codec = build_model(config)
  mesh = make_mesh(config)
  state, state_sharding = create_train_state(config, model, codec, mesh, jax.random.key(0))
  step = make_train_step(config, model, codec, mesh, state_sharding)
  batch = shard_batch(synthetic_batch(config.data.batch_size, tuple(config.data.image_size)),
                      mesh, logical_rules(config))

  t0 = time.perf_counter()
  lowered = step.lower(state, batch, jax.random.key(0))
  compiled = lowered.compile()
  compile_seconds = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  xla_flops = float(cost["flops"])

  for i in range(2):  # warm-up (the first call also pays for jit dispatch caches)
    state, metrics = step(state, batch, jax.random.key(i))
  jax.block_until_ready(metrics)
  # Steps and roofline probes alternate, so both see the same machine load (the host is shared).
  matmul, matmul_flops = make_matmul()
  times, probes = [], []
  for i in range(args.steps):
    probes.append(timed(matmul))
    t0 = time.perf_counter()
    state, metrics = step(state, batch, jax.random.key(100 + i))
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  step_seconds = statistics.median(times)
  roofline = matmul_flops / statistics.median(probes)
  analytic = analytic_step_flops(config, codec)
  mfu = analytic["per_step"] / step_seconds / roofline

  result = {
      "device": f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}",
      "num_devices": jax.device_count(), "host": platform.processor() or platform.machine(),
      "cpu_count": os.cpu_count(), "jax": jax.__version__,
      "load_average_1min": os.getloadavg()[0],
      "config": f"configs/default.py:{args.config_arg}", "model_size": config.model.size,
      "depth_mode": config.model.depth_mode, "image_size": list(config.data.image_size),
      "patch_size": config.model.patch_size, "batch_size": config.data.batch_size,
      "sequences_per_step": 2 * config.data.batch_size,
      "tokens_per_sequence": analytic["tokens_per_sequence"],
      "num_params": int(sum(x.size for x in jax.tree.leaves(state.params))),
      "compile_seconds": compile_seconds, "step_seconds_median": step_seconds,
      "step_seconds_min": min(times), "step_seconds_max": max(times), "timed_steps": args.steps,
      "flops_per_step_xla": xla_flops, "flops_per_step_analytic": analytic["per_step"],
      "xla_over_analytic": xla_flops / analytic["per_step"],
      "matmul_roofline_flops_per_second": roofline,
      "achieved_flops_per_second": analytic["per_step"] / step_seconds,
      "mfu_vs_matmul_roofline": mfu,
      "final_loss": float(metrics["loss"]),
      "tpu_v4": tpu_v4_estimate(mfu_assumed=0.5),
  }
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2)
  print(json.dumps(result, indent=2))
  return result


if __name__ == "__main__":
  main()
