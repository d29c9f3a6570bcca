"""Time one Genfocus refocus (deblur stage, then bokeh stage) at FLUX.1-dev size.

    python benchmarks/genfocus_refocus.py [--size 1024] [--steps 28] [--repeats 3]
        [--variant dev] [--attention-chunk 0] [--out benchmarks/results/genfocus_refocus.json]

No weight file is read: the FLUX.1-dev transformer (scanned blocks), the FLUX VAE and rank-64
adapters of both stages (per projection, so fused layers get rank 64 x parts, in the layout
`weights.load_genfocus_lora` produces) are random bfloat16 arrays made on the accelerator, and
the prompt embeddings are random arrays of FLUX.1-dev's shapes (512 T5 tokens x 4096, pooled
768); time and memory do not depend on the values. One `--size`² photo, batch 1, pixels to
pixels, each stage one jitted `genfocus.run_stage` (VAE encodes, `--steps` sampler steps, tiled
by Genfocus's rule, VAE decode, bf16 compute): deblur the photo, then the bokeh stage on the
deblurred photo and the defocus map of a random disparity map (focus at the centre).

Reported: compile times; medians of `--repeats` runs of each stage, of the whole refocus (both
stages back to back, one wall time) and of one `genfocus.velocity` call per stage at the shapes
the sampler calls it with (one tile when tiled); the peak device memory; JAX and device versions.
With `--steps` below 28 it adds 28-step figures extrapolated from the per-step cost (velocity
calls per step x the velocity time), labelled as such. `--variant tiny` (the tiny FLUX and VAE
presets) is a CPU smoke run: `--variant tiny --size 64 --steps 2 --repeats 1`.
"""
import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# pylint: disable=wrong-import-position
from diffcamera_jax.models import flux, genfocus, genfocus_sampling, lora
from diffcamera_jax.models.autoencoder import VAE_PRESETS, AutoencoderKL
from diffcamera_jax.models.flux_diffcamera import image_ids
from diffcamera_jax.weights import genfocus_layout
# pylint: enable=wrong-import-position

DTYPE = jnp.bfloat16
LORA_RANK = 64  # per projection
TEXT_TOKENS = 512
BLUR_K = 20.0  # defocus strength of the bokeh condition (the time does not depend on it)


def random_params(key: jax.Array, abstract: Any) -> Any:
  """Random `DTYPE` leaves of `abstract`'s shapes, made by one jitted program on the default
  device: kernels (and adapters) normal / sqrt(fan-in), norm scales 1, biases 0. Stacked
  `[layers, in, out]` leaves are drawn layer by layer, so the temporaries stay one layer big."""
  def make(path, leaf, k):
    name, shape = path[-1].key, tuple(leaf.shape)
    if name == "scale":
      return jnp.ones(shape, DTYPE)
    if name == "bias":
      return jnp.zeros(shape, DTYPE)
    fan_in = math.prod(shape[:3]) if len(shape) == 4 else shape[-2]  # conv HWIO, else [.., in, out]
    normal = lambda k, shape: jax.random.normal(k, shape, DTYPE) * jnp.asarray(fan_in ** -0.5,
                                                                               DTYPE)
    if len(shape) == 3:  # a scanned stack: one layer at a time bounds the temporaries
      return jax.lax.map(lambda k: normal(k, shape[1:]), jax.random.split(k, shape[0]))
    return normal(k, shape)

  leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
  build = jax.jit(lambda key: treedef.unflatten(
      [make(p, leaf, jax.random.fold_in(key, i)) for i, (p, leaf) in enumerate(leaves)]))
  return build(key)


def compile_timed(fn: Callable, *args) -> tuple[Any, float]:
  """`jax.jit(fn)` lowered and compiled for `args`, and the seconds that took."""
  t0 = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  return compiled, round(time.perf_counter() - t0, 2)


def median_time(fn: Callable[[], Any], repeats: int) -> float:
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return round(statistics.median(times), 5)


def peak_memory(device: jax.Device) -> int | None:
  stats = device.memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--size", type=int, default=1024, help="photo side in pixels")
  parser.add_argument("--steps", type=int, default=genfocus.NUM_STEPS)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--variant", choices=("dev", "tiny"), default="dev")
  parser.add_argument("--attention-chunk", type=int, default=0)
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results",
                                                    "genfocus_refocus.json"))
  args = parser.parse_args()

  device = jax.devices()[0]
  config = flux.FLUX_PRESETS[args.variant]
  vae = AutoencoderKL(VAE_PRESETS["flux" if args.variant == "dev" else "tiny"], dtype=DTYPE,
                      param_dtype=DTYPE)
  f = vae.config.downsample_factor
  hw = (args.size, args.size)
  latent_hw = (args.size // f, args.size // f)
  grid = (latent_hw[0] // 2, latent_hw[1] // 2)
  tiled = genfocus.use_tiling(hw)
  tiles = len(genfocus.tile_origins(*grid)) if tiled else 1
  kw = dict(num_steps=args.steps, dtype=DTYPE, attention_chunk=args.attention_chunk)

  import jaxlib  # pylint: disable=import-outside-toplevel
  result: dict = {
      "what": "one Genfocus refocus (deblur then bokeh), pixels to pixels, random weights",
      "device": device.device_kind, "platform": device.platform,
      "platform_version": getattr(device.client, "platform_version", None),
      "jax": jax.__version__, "jaxlib": jaxlib.__version__, "python": platform.python_version(),
      "variant": args.variant, "dtype": "bfloat16", "batch": 1, "size": list(hw),
      "steps": args.steps, "repeats": args.repeats, "attention_chunk": args.attention_chunk,
      "lora_rank_per_projection": LORA_RANK, "text_tokens": TEXT_TOKENS,
      "tiled": tiled, "velocity_calls_per_step": tiles,
      "tokens_per_velocity_call": {
          s: TEXT_TOKENS + (1 + genfocus.STAGES[s].num_conditions)
          * (genfocus_sampling.TILE_TOKENS ** 2 if tiled else grid[0] * grid[1])
          for s in genfocus.STAGES},
  }

  def save() -> None:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
      json.dump(result, fh, indent=2)

  def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

  # ----------------------------------------------------------------- weights and inputs
  t0 = time.perf_counter()
  model = flux.FluxTransformer(config, scan_layers=True)
  example = (np.zeros((1, 4, config.in_channels)), np.zeros((4, 3)),
             np.zeros((1, 2, config.context_in_dim)), np.zeros((2, 3)), np.zeros(1),
             np.zeros((1, config.vec_in_dim)), np.zeros(1))
  abstract = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), *example)["params"])
  vae_abstract = nn.meta.unbox(
      jax.eval_shape(vae.init, jax.random.key(0), np.zeros((1, 2 * f, 2 * f, 3))))
  keys = jax.random.split(jax.random.key(0, impl="unsafe_rbg"), 16)  # cheap to compile
  weights = random_params(keys[0], {"base": abstract, "vae": vae_abstract["params"],
                                    **{s: genfocus_layout.adapter_shapes(abstract, LORA_RANK, DTYPE)
                                       for s in genfocus.STAGES}})
  base, vae_params = weights["base"], weights["vae"]
  params = {s: lora.merge_params(base, weights[s]) for s in genfocus.STAGES}
  texts = {s: {"text_tokens": jax.random.normal(keys[4 + i], (TEXT_TOKENS, config.context_in_dim),
                                                jnp.float32),
               "text_pooled": jax.random.normal(keys[6 + i], (config.vec_in_dim,), jnp.float32)}
           for i, s in enumerate(genfocus.STAGES)}
  photo = jax.random.uniform(keys[8], (1, *hw, 3), jnp.float32)
  disparity = jax.random.uniform(keys[9], (1, *hw), jnp.float32)
  noise = {s: jax.random.normal(keys[10 + i], (1, grid[0] * grid[1], config.in_channels))
           for i, s in enumerate(genfocus.STAGES)}
  cond_noise = {s: [jax.random.normal(jax.random.fold_in(keys[12 + i], j),
                                      (1, *latent_hw, vae.config.latent_channels))
                    for j in range(genfocus.STAGES[s].num_conditions)]
                for i, s in enumerate(genfocus.STAGES)}
  jax.block_until_ready((params, vae_params, texts, noise, cond_noise))
  nbytes = lambda tree: sum(x.nbytes for x in jax.tree.leaves(tree))
  result["weights"] = {
      "init_s": round(time.perf_counter() - t0, 2),
      "base_transformer_bytes": nbytes(base), "vae_bytes": nbytes(vae_params),
      "lora_bytes_per_stage": {s: nbytes(params[s]) - nbytes(base) for s in genfocus.STAGES},
      "bytes_in_use_after_init": (device.memory_stats() or {}).get("bytes_in_use"),
      "peak_bytes_in_use_after_init": peak_memory(device)}
  log(f"weights ready: {result['weights']}")
  save()

  # ----------------------------------------------------------------- one velocity call per stage
  length = genfocus_sampling.TILE_TOKENS ** 2 if tiled else grid[0] * grid[1]
  ids = image_ids(2 * genfocus_sampling.TILE_TOKENS, 2 * genfocus_sampling.TILE_TOKENS) if tiled \
      else image_ids(*latent_hw)

  def velocity(p, img, conds, txt, y, t, g):
    n = len(conds)
    return genfocus.velocity(p, config, img, ids, conds, [ids] * n, txt[None],
                             jnp.zeros((txt.shape[0], 3), jnp.float32), y[None], t, g,
                             dtype=DTYPE, attention_chunk=args.attention_chunk)

  result["compile_s"], result["median_s"] = {}, {}
  for s in genfocus.STAGES:
    tokens = jax.random.normal(keys[14], (1, length, config.in_channels))
    conds = [tokens] * genfocus.STAGES[s].num_conditions
    v_args = (params[s], tokens, conds, texts[s]["text_tokens"], texts[s]["text_pooled"],
              jnp.full((1,), 0.5), jnp.full((1,), genfocus.STAGES[s].guidance))
    compiled, result["compile_s"][f"velocity_{s}"] = compile_timed(velocity, *v_args)
    result["median_s"][f"velocity_{s}"] = median_time(lambda: compiled(*v_args), args.repeats)
    log(f"velocity {s}: compile {result['compile_s'][f'velocity_{s}']:.1f} s, "
        f"median {result['median_s'][f'velocity_{s}']:.4f} s")
    save()

  # ----------------------------------------------------------------- the two stages
  def deblur(p, vp, text, image, noise, cond_noise):
    return genfocus.run_stage(genfocus.DEBLUR, p, config, vae, vp, text, [image], noise,
                              condition_noise=cond_noise, **kw).astype(jnp.float32)

  def bokeh(p, vp, text, sharp, disparity, noise, cond_noise):
    focus = disparity[0, hw[0] // 2, hw[1] // 2]
    defocus = genfocus.defocus_condition_image(genfocus.defocus_map(disparity, focus, BLUR_K))
    return genfocus.run_stage(genfocus.BOKEH, p, config, vae, vp, text, [sharp, defocus], noise,
                              condition_noise=cond_noise, **kw).astype(jnp.float32)

  d_args = (params["deblur"], vae_params, texts["deblur"], photo, noise["deblur"],
            cond_noise["deblur"])
  run_deblur, result["compile_s"]["deblur"] = compile_timed(deblur, *d_args)
  log(f"deblur compiled in {result['compile_s']['deblur']:.1f} s")
  b_args = lambda sharp: (params["bokeh"], vae_params, texts["bokeh"], sharp, disparity,
                          noise["bokeh"], cond_noise["bokeh"])
  run_bokeh, result["compile_s"]["bokeh"] = compile_timed(bokeh, *b_args(photo))
  log(f"bokeh compiled in {result['compile_s']['bokeh']:.1f} s")
  save()

  runs: dict[str, list[float]] = {"deblur": [], "bokeh": [], "refocus": []}
  for i in range(args.repeats):
    t0 = time.perf_counter()
    sharp = jax.block_until_ready(run_deblur(*d_args))
    t1 = time.perf_counter()
    jax.block_until_ready(run_bokeh(*b_args(sharp)))
    t2 = time.perf_counter()
    for name, dt in (("deblur", t1 - t0), ("bokeh", t2 - t1), ("refocus", t2 - t0)):
      runs[name].append(round(dt, 4))
    result["runs_s"] = runs
    result["median_s"].update({k: statistics.median(v) for k, v in runs.items()})
    result["peak_bytes_in_use"] = peak_memory(device)
    log(f"run {i + 1}/{args.repeats}: deblur {t1 - t0:.2f} s, bokeh {t2 - t1:.2f} s, "
        f"refocus {t2 - t0:.2f} s")
    save()

  if args.steps != genfocus.NUM_STEPS:
    med, extra = result["median_s"], genfocus.NUM_STEPS - args.steps
    per_step = {s: round(tiles * med[f"velocity_{s}"], 4) for s in genfocus.STAGES}
    ext = {s: round(med[s] + extra * per_step[s], 3) for s in genfocus.STAGES}
    result[f"extrapolated_{genfocus.NUM_STEPS}_steps"] = {
        "method": (f"measured stage time at {args.steps} steps + {extra} x (velocity calls per "
                   f"step x median velocity time); not measured"),
        "per_step_s": per_step, **{f"{s}_s": v for s, v in ext.items()},
        "refocus_s": round(sum(ext.values()), 3),
        "implied_non_sampler_s": {s: round(med[s] - args.steps * per_step[s], 3)
                                  for s in genfocus.STAGES}}
  result["peak_bytes_in_use"] = peak_memory(device)
  save()
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
