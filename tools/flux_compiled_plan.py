"""Compiled memory plans of FLUX.1-dev DiffCamera programs, with abstract (never allocated) params.

    pip install --target /opt/libtpu libtpu==0.0.42.1   # the libtpu jax[tpu] pins; no TPU needed
    PYTHONPATH=/opt/libtpu python tools/flux_compiled_plan.py \
        [--out docs/results/flux_compiled_plans.json]

Compiles each program with FLUX.1-dev dimensions, LoRA rank 64 and abstract params for TPU chips
that need not exist (`jax.experimental.topologies`: deviceless ahead-of-time compilation with
libtpu, on any machine) and reads XLA's memory analysis (`jit(...).lower(...).compile()
.memory_analysis()`): arguments, outputs, temporaries and aliased bytes per chip. Without libtpu
(`--target cpu`) fake CPU devices stand in; the CPU compiler keeps float32 copies of bf16 weights,
so those figures overstate a TPU's.

- the LoRA train step (`train_step.make_train_step`, frozen bf16 base as its own argument, scanned
  and fully rematted blocks, chunked attention, FSDP over every device) on a v5p-8 (4 chips, 95
  GiB HBM each) and a v4-32 (32 TensorCore devices, 16 GiB each), at 512^2 and 1024^2, and
  (`fit`) the smaller batch / attention blocks tried where those do not fit;
- the sampler (`sampling.make_sampler`, the whole Euler loop, VAE encode and decode) at 1024^2,
  batch 1, adapters folded into the bf16 base: on one v5p chip, one v4 TensorCore, and with the
  base sharded over a v4-8 host's 8 TensorCores (as `Refocuser` places it).
- Genfocus's bokeh stage (`genfocus.run_stage`, the larger of its two: two condition streams,
  3584 tokens per tile; VAE encodes, 28 tiled Euler steps, VAE decode) at 1024^2, batch 1, bf16
  base with rank-64 adapters per projection (`genfocus_layout.adapter_shapes`): on one v5p chip
  and with the base sharded over a v4-8 host's 8 TensorCores (the FLUX logical axis rules).
A program that does not fit is recorded with the compiler's message.

Each case records the total per device beside the device's HBM.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=16").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from diffcamera_jax.configs import flux_lora  # noqa: E402
from diffcamera_jax import memory_plan, sharding  # noqa: E402
from diffcamera_jax.training import state as train_state, step as train_step
from diffcamera_jax.models import CAMERA_FEATURES, example_inputs, lora  # noqa: E402
from diffcamera_jax.models import flux_diffcamera as fd  # noqa: E402
from diffcamera_jax.models.autoencoder import VAE_PRESETS, AutoencoderKL, FluxCodec  # noqa: E402
from diffcamera_jax.inference.sampler import make_sampler  # noqa: E402
from diffcamera_jax.models import flux, genfocus  # noqa: E402
from diffcamera_jax.weights import genfocus_layout  # noqa: E402

GIB = 2.0 ** 30
# slice -> (JAX devices, HBM GiB per device, TPU topology). A v5p chip is one device (its two
# TensorCores as a megacore); libtpu's deviceless v4 topologies expose each of a v4 chip's two
# TensorCores as a device with half the chip's 32 GiB.
CHIPS = {"v5p-8": (4, 95.0, "v5p:2x2x1"), "v4-32": (32, 16.0, "v4:2x2x4"),
         "v5p chip": (1, 95.0, "v5p:2x2x1"), "v4 core": (1, 16.0, "v4:2x2x1"),
         "v4-8": (8, 16.0, "v4:2x2x1")}
TARGET = {"name": "tpu"}
KEY = jax.random.key(0)  # made on the host's CPU, before any TPU mesh is current


def _devices(slice_name: str) -> list:
  """The slice's devices: TPU devices of a deviceless topology, or fake CPU devices."""
  chips, _, topology = CHIPS[slice_name]
  if TARGET["name"] == "cpu":
    return jax.devices("cpu")[:chips]
  from jax.experimental import topologies
  return list(topologies.get_topology_desc(topology_name=topology, platform="tpu").devices)[:chips]


def _mesh(config, slice_name: str) -> jax.sharding.Mesh:
  """`config.mesh` over the slice's devices in their listed order (libtpu's deviceless v4
  topologies list TensorCores, which `jax.make_mesh`'s chip-order search refuses)."""
  devices = _devices(slice_name)
  shape = sharding.resolve_mesh_shape(config.mesh.shape, len(devices))
  return jax.sharding.Mesh(np.asarray(devices, dtype=object).reshape(shape),
                           tuple(config.mesh.axis_names),
                           axis_types=(jax.sharding.AxisType.Auto,) * len(shape))


def _model(config, *, folded: bool = False, attention_chunk: int = fd.ATTENTION_CHUNK
           ) -> fd.FluxDiffCamera:
  f, m = config.flux, config.model
  adapters = None if folded else lora.LoRAConfig(f.lora_rank, f.lora_alpha,
                                                 fd.lora_targets(f.lora_targets))
  return fd.FluxDiffCamera(
      fd.FLUX_PRESETS[f.variant], lora=adapters, text_len=fd.TEXT_LEN[f.variant],
      guidance=fd.GUIDANCE, camera_frequencies=m.camera_frequencies, scan_layers=m.scan_layers,
      remat=m.remat, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16,
      attention_chunk=attention_chunk)


def _abstract_codec() -> FluxCodec:
  vae = AutoencoderKL(VAE_PRESETS["flux"])
  params = jax.eval_shape(vae.init, KEY, jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32))[
      "params"]
  return FluxCodec(params=params, config=vae.config)


def _compile(lowered) -> dict:
  """Memory analysis of the compiled program, or what the compiler said when it did not fit."""
  start = time.perf_counter()
  try:
    compiled = lowered.compile()
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    return {"compile_s": time.perf_counter() - start, "fits": False,
            "compiler": str(e).strip().splitlines()[0][:400]}
  return {"compile_s": time.perf_counter() - start, **_memory(compiled)}


def _memory(compiled) -> dict:
  m = compiled.memory_analysis()
  total = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
           - m.alias_size_in_bytes)
  return {"arguments_gib": m.argument_size_in_bytes / GIB,
          "outputs_gib": m.output_size_in_bytes / GIB, "temporaries_gib": m.temp_size_in_bytes / GIB,
          "aliased_gib": m.alias_size_in_bytes / GIB, "total_gib": total / GIB}


def train_case(chips_name: str, image: int, per_chip: int,
               attention_chunk: int = fd.ATTENTION_CHUNK) -> dict:
  chips, hbm, _ = CHIPS[chips_name]
  config = flux_lora.get_config("" if image == 512 else "1024")
  config.data.batch_size = per_chip * chips
  config.flux.transformer_weights = config.flux.vae_weights = config.flux.text_embeddings = ""
  mesh = _mesh(config, chips_name)
  model, codec = _model(config, attention_chunk=attention_chunk), _abstract_codec()
  abstract_state, state_sharding, _ = train_state.train_state_plan(config, model, codec, mesh)
  rules = sharding.logical_rules(config)
  inputs = example_inputs(codec, tuple(config.data.image_size))
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    boxed = jax.eval_shape(lambda r: model.init({"params": r}, *inputs)["params"],
                           KEY)
  shardings = sharding.logical_shardings(boxed, mesh, rules)
  abstract = nn.unbox(boxed)
  placed = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract, shardings)
  frozen = lora.split_params(placed, train_state.trainable_mask(config, abstract))[1]
  step = train_step.make_train_step(config, model, codec, mesh, state_sharding, frozen,
                                    jax.tree.map(lambda x: x.sharding, frozen))
  rng = jax.ShapeDtypeStruct((), KEY.dtype, sharding=sharding.replicated(mesh))
  result = _compile(step.lower(abstract_state, memory_plan.abstract_batch(config, mesh), rng))
  return {"program": "lora_train_step", "slice": chips_name, "devices": chips,
          "image_size": [image, image], "global_batch": config.data.batch_size,
          "per_device_batch": per_chip, "remat": config.model.remat,
          "attention_chunk": attention_chunk, "hbm_gib_per_device": hbm,
          "fits": result.get("total_gib", float("inf")) < hbm, **result}


def sampler_case(slice_name: str, image: int) -> dict:
  """The sampler at `image`^2, batch 1: on one device, or with the base sharded over the slice
  (FSDP, as `Refocuser` places it on a host's chips)."""
  devices, hbm, _ = CHIPS[slice_name]
  config = flux_lora.get_config("1024")
  config.flux.transformer_weights = config.flux.vae_weights = config.flux.text_embeddings = ""
  mesh = _mesh(config, slice_name)
  rules = sharding.logical_rules(config)
  model, codec = _model(config, folded=True), _abstract_codec()
  inputs = example_inputs(codec, (image, image))
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    boxed = jax.eval_shape(lambda r: model.init({"params": r}, *inputs)["params"],
                           KEY)
  shardings = sharding.logical_shardings(boxed, mesh, rules)
  params = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        nn.unbox(boxed), shardings)
  replicated = sharding.replicated(mesh)
  place = lambda tree: jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), tree)
  codec = FluxCodec(params=place(codec.params), config=codec.config)
  sampler = make_sampler(model, codec, config)
  ref, disp, camera, keys = place((
      jax.ShapeDtypeStruct((1, image, image, 3), jnp.float32),
      jax.ShapeDtypeStruct((1, image, image), jnp.float32),
      jax.ShapeDtypeStruct((1, CAMERA_FEATURES), jnp.float32),
      jax.ShapeDtypeStruct((1,), KEY.dtype)))
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    lowered = sampler.lower(params, ref, disp, camera, keys, config.objective.sample_steps)
  result = _compile(lowered)
  return {"program": "sampler", "slice": slice_name, "devices": devices,
          "image_size": [image, image], "batch": 1, "steps": config.objective.sample_steps,
          "lora": "folded into the bf16 base", "attention_chunk": fd.ATTENTION_CHUNK,
          "hbm_gib_per_device": hbm, "fits": result.get("total_gib", float("inf")) < hbm,
          **result}


def genfocus_case(slice_name: str, image: int, stage: str = genfocus.BOKEH) -> dict:
  """One Genfocus stage at `image`^2, batch 1, pixels to pixels: on one device, or with the base
  and adapters sharded over the slice by the FLUX logical axis rules."""
  devices, hbm, _ = CHIPS[slice_name]
  config = flux_lora.get_config("1024")
  mesh = _mesh(config, slice_name)
  rules = sharding.logical_rules(config)
  flux_config = flux.FLUX_PRESETS["dev"]
  model = flux.FluxTransformer(flux_config, scan_layers=True, param_dtype=jnp.bfloat16)
  example = (np.zeros((1, 4, flux_config.in_channels)), np.zeros((4, 3)),
             np.zeros((1, 2, flux_config.context_in_dim)), np.zeros((2, 3)), np.zeros(1),
             np.zeros((1, flux_config.vec_in_dim)), np.zeros(1))
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    boxed = jax.eval_shape(lambda r: model.init({"params": r}, *example)["params"], KEY)
  shardings = sharding.logical_shardings(boxed, mesh, rules)
  base = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      nn.unbox(boxed), shardings)
  replicated = sharding.replicated(mesh)
  adapters = genfocus_layout.adapter_shapes(base, 64, jnp.bfloat16)
  # each adapter sharded as its kernel's layer axis (scanned) and otherwise replicated: small
  adapters = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
                          adapters)
  params = lora.merge_params(base, adapters)
  place = lambda tree: jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), tree)
  codec = _abstract_codec()
  vae = AutoencoderKL(codec.config)
  vae_params = place(codec.params)
  n = genfocus.STAGES[stage].num_conditions
  f = codec.config.downsample_factor
  grid = (image // f // 2) ** 2
  text = place({"text_tokens": jax.ShapeDtypeStruct((fd.TEXT_LEN["dev"], flux_config.context_in_dim),
                                                    jnp.float32),
                "text_pooled": jax.ShapeDtypeStruct((flux_config.vec_in_dim,), jnp.float32)})
  images = place([jax.ShapeDtypeStruct((1, image, image, 3), jnp.float32)] * n)
  noise = place(jax.ShapeDtypeStruct((1, grid, flux_config.in_channels), jnp.float32))
  run = jax.jit(lambda p, vp, t, ims, z: genfocus.run_stage(
      stage, p, flux_config, vae, vp, t, ims, z, dtype=jnp.bfloat16))
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    lowered = run.lower(params, vae_params, text, images, noise)
  result = _compile(lowered)
  return {"program": f"genfocus_{stage}_stage", "slice": slice_name, "devices": devices,
          "image_size": [image, image], "batch": 1, "steps": genfocus.NUM_STEPS,
          "tiled": genfocus.use_tiling((image, image)), "lora": "rank 64 per projection, bf16",
          "hbm_gib_per_device": hbm, "fits": result.get("total_gib", float("inf")) < hbm,
          **result}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--out", default="docs/results/flux_compiled_plans.json")
  p.add_argument("--cases", default="sampler,train,fit")
  p.add_argument("--target", choices=("tpu", "cpu"), default="tpu")
  p.add_argument("--append", action="store_true", help="add to the cases already in --out")
  args = p.parse_args(argv)
  TARGET["name"] = args.target
  cases = []
  if args.append and os.path.exists(args.out):
    with open(args.out) as f:
      cases = json.load(f)["cases"]
  if "sampler" in args.cases:
    for slice_name in ("v5p chip", "v4 core", "v4-8"):
      cases.append(sampler_case(slice_name, 1024))
      print(json.dumps(cases[-1]), flush=True)
  if "genfocus" in args.cases:
    for slice_name in ("v5p chip", "v4-8"):
      cases.append(genfocus_case(slice_name, 1024))
      print(json.dumps(cases[-1]), flush=True)
  if "train" in args.cases:
    for spec in (("v5p-8", 512, 4), ("v4-32", 512, 2), ("v5p-8", 1024, 2), ("v4-32", 1024, 1)):
      cases.append(train_case(*spec))
      print(json.dumps(cases[-1]), flush=True)
  if "fit" in args.cases:  # what fits a v4 core where the cases above do not
    for spec in (("v4-32", 512, 1), ("v4-32", 1024, 1, 512)):
      cases.append(train_case(*spec))
      print(json.dumps(cases[-1]), flush=True)
  report = {"flux": "FLUX.1-dev dimensions (11.9B), bf16 base, LoRA rank 64 on attn + mlp",
            "jax": jax.__version__,
            "target": ("TPU, deviceless AOT compilation (libtpu)" if args.target == "tpu"
                       else "CPU, fake devices"), "cases": cases}
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(report, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
