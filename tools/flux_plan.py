"""Sharding and memory plan of FLUX.1 + LoRA training, built abstractly (nothing is allocated).

`XLA_FLAGS=--xla_force_host_platform_device_count=32 python tools/flux_plan.py --variant=""`
prints JSON: parameter counts, bytes per chip of the sharded frozen base and of the trainable
state (adapters + condition layers, their gradients, Adam moments and EMA, all f32), an analytic
activation bound under full remat with scanned blocks and chunked attention, the analytic FLOPs of
one step and the step time at a given MFU. `--hbm_gib` is the chip memory it is checked against
(TPU v4: 32 GiB); `--peak_tflops` the chip's bf16 peak (v4: 275).
"""
import argparse
import json
import math

import flax.linen as nn
import jax
import numpy as np

from diffcamera_jax.configs import flux_lora
from diffcamera_jax.models import example_inputs, lora
from diffcamera_jax.models import flux_diffcamera as fd
from diffcamera_jax.models.autoencoder import VAE_PRESETS, FluxCodec
from diffcamera_jax.models.inputs import DTYPES
from diffcamera_jax.sharding import logical_rules, logical_shardings, make_mesh

GIB = 2.0 ** 30


def _per_device_bytes(abstract, shardings, mask=None, bytes_per_value=None) -> float:
  total = 0.0
  for path, leaf, sharding in zip(lora.flatten_paths(abstract), jax.tree.leaves(abstract),
                                  jax.tree.leaves(shardings)):
    if mask is not None and not mask[path]:
      continue
    size = bytes_per_value or np.dtype(leaf.dtype).itemsize
    total += math.prod(sharding.shard_shape(leaf.shape)) * size
  return total


def plan(variant: str, hbm_gib: float, peak_tflops: float, mfu: float) -> dict:
  config = flux_lora.get_config(variant)
  mesh = make_mesh(config)
  chips = mesh.devices.size
  # The plan needs shapes only: an abstract VAE stands in for the real one.
  codec = FluxCodec(params=None, config=VAE_PRESETS["flux"])
  config.flux.transformer_weights = config.flux.vae_weights = config.flux.text_embeddings = ""
  model = fd.FluxDiffCamera(
      fd.FLUX_PRESETS[config.flux.variant],
      lora=lora.LoRAConfig(config.flux.lora_rank, config.flux.lora_alpha,
                           fd.lora_targets(config.flux.lora_targets)),
      text_len=fd.TEXT_LEN[config.flux.variant], scan_layers=True, remat=config.model.remat,
      param_dtype=DTYPES[config.model.param_dtype], dtype=DTYPES[config.model.dtype],
      attention_chunk=fd.ATTENTION_CHUNK)
  rules = logical_rules(config)
  inputs = example_inputs(codec, tuple(config.data.image_size))
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    boxed = jax.eval_shape(lambda r: model.init({"params": r}, *inputs)["params"],
                           jax.random.key(0))
  shardings = logical_shardings(boxed, mesh, rules)
  abstract = nn.unbox(boxed)
  mask_tree = lora.trainable_mask(abstract, fd.CONDITION_MODULES)
  mask = dict(zip(lora.flatten_paths(mask_tree), jax.tree.leaves(mask_tree)))
  frozen_mask = {k: not v for k, v in mask.items()}
  counts = {"total": 0, "trainable": 0}
  for path, leaf in zip(lora.flatten_paths(abstract), jax.tree.leaves(abstract)):
    counts["total"] += math.prod(leaf.shape)
    counts["trainable"] += math.prod(leaf.shape) * mask[path]

  base = _per_device_bytes(abstract, shardings, frozen_mask)
  # Trainable leaves in f32: params, gradients, Adam mu and nu, EMA.
  trainable = 5 * _per_device_bytes(abstract, shardings, mask, bytes_per_value=4)

  c = model.config
  h, w = config.data.image_size
  tokens = 3 * (h // 16) * (w // 16) + model.camera_tokens + model.text_len
  sequences = 2 * config.data.batch_size  # each example is a stacking pair of targets
  per_chip = sequences / chips
  layers = c.depth + c.depth_single
  act_bytes = 2  # bf16 activations
  carry = per_chip * tokens * c.hidden_size * act_bytes * layers  # saved at each block boundary
  # One block recomputed in the backward pass: ~32 hidden-widths per token in f32, plus the
  # attention scores of one query chunk (scores, probabilities, their gradient), in f32.
  block = per_chip * tokens * 32 * c.hidden_size * 4
  scores = 3 * per_chip * c.num_heads * min(fd.ATTENTION_CHUNK, tokens) * tokens * 4
  activations = carry + block + scores
  total = base + trainable + activations

  # FLOPs: 12 h^2 weights per token per block (both block kinds), 4 L h for attention; frozen
  # base: forward + activation gradients + remat recompute = 3 forward passes.
  forward = sequences * tokens * layers * (2 * 12 * c.hidden_size ** 2 + 4 * tokens * c.hidden_size)
  step_flops = 3 * forward
  step_time = step_flops / (chips * peak_tflops * 1e12 * mfu)
  return {
      "variant": variant or "512", "chips": chips, "mesh": dict(mesh.shape),
      "image_size": [h, w], "global_batch": config.data.batch_size, "tokens_per_sequence": tokens,
      "params_total": counts["total"], "params_trainable": counts["trainable"],
      "gib_per_chip": {"frozen_base": base / GIB, "trainable_state": trainable / GIB,
                       "activations_bound": activations / GIB, "total": total / GIB},
      "hbm_gib": hbm_gib, "fits": total < hbm_gib * GIB,
      "step_tflops": step_flops / 1e12, "mfu": mfu, "step_time_s_at_mfu": step_time,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="", help="configs/flux_lora.py variant: '' or '1024'")
  parser.add_argument("--hbm_gib", type=float, default=32.0)
  parser.add_argument("--peak_tflops", type=float, default=275.0)
  parser.add_argument("--mfu", type=float, default=0.4)
  args = parser.parse_args()
  print(json.dumps(plan(args.variant, args.hbm_gib, args.peak_tflops, args.mfu), indent=1))


if __name__ == "__main__":
  main()
