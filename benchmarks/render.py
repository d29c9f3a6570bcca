"""Renderer speed and accuracy: `optics.render` against a per-offset scatter baseline.

    python -m benchmarks.render [--batch 8] [--size 512] [--out benchmarks/results/render.json]

Times (medians) the layered renderer on procedural scenes at several maximum CoC radii, the
straightforward per-offset scatter in JAX at one radius (the baseline), and the accuracy of the
renderer on constant-depth scenes against a float64 FFT convolution with the coverage kernel.
Candidate and baseline run in the same process, so their ratio is meaningful on a shared machine.

Also recorded: the bytes XLA's cost analysis says each render reads and writes, the rate that
makes at the measured time and, given ``--peak_bandwidth_gbs`` (the device's memory bandwidth), the
share of it (the analysis counts every branch of the renderer's empty-layer conditionals, so the
bytes are those of all layers up to ``max_radius`` and the rate is an upper bound); and a point light at CoC radii ``--psf_radii`` (disk, gamma 1) read by
`optics.psf.measure`: radius at half level, 10-90 % edge width, outline roundness, negative light;
the time of a point-light (night) scene at CoC ``--point_light_radius``; and the full-resolution
render of one refocusing request on a ``--photo_megapixels`` photo at each of ``--photo_blurs``.

On the CPU the batch is split over one XLA CPU device per core (``--cpu_devices``, default the
core count) with `jax.shard_map`: XLA:CPU runs the operations of one computation nearly one at a
time, so a single device keeps about one core busy. The single-device timings are recorded too.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax.sharding import Mesh, NamedSharding, PartitionSpec

from data_pipeline import procedural
from diffcamera_jax import optics
from diffcamera_jax.optics import psf


def scatter_baseline(image: jax.Array, coc: jax.Array, max_radius: int) -> jax.Array:
  """Per-offset scatter: for every offset within ``max_radius`` every pixel sends light weighted by
  its own disk coverage at that offset (no occlusion), then normalises. Cost O(H W r^2)."""
  offsets = np.stack(np.meshgrid(np.arange(-max_radius, max_radius + 1),
                                 np.arange(-max_radius, max_radius + 1)), -1).reshape(-1, 2)
  radius = jnp.abs(coc)
  area = jnp.pi * jnp.maximum(radius, 0.5) ** 2

  def body(carry, offset):
    light, weight = carry
    distance = jnp.sqrt((offset[0] ** 2 + offset[1] ** 2).astype(jnp.float32))
    w = jnp.clip(radius - distance + 0.5, 0.0, 1.0) / area
    w = jnp.where((offset[0] == 0) & (offset[1] == 0), jnp.maximum(w, 1.0 / area), w)
    shift = lambda x: jnp.roll(x, (offset[1], offset[0]), axis=(1, 2))
    return (light + shift(image * w[..., None]), weight + shift(w)), None

  init = (jnp.zeros_like(image), jnp.zeros_like(coc))
  (light, weight), _ = jax.lax.scan(body, init, jnp.asarray(offsets))
  return light / weight[..., None]


def _data_parallel(fn, batch: int):
  """``fn`` jitted over the batch split across the CPU devices, with an input placer; None when
  there is one device (or the batch does not divide)."""
  devices = jax.devices()
  if devices[0].platform != "cpu" or len(devices) < 2 or batch % len(devices):
    return None
  mesh = Mesh(np.array(devices), ("batch",))
  spec = PartitionSpec("batch")
  # check_vma=False: the renderer's empty-layer conditionals return zeros in one branch
  sharded = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False))
  place = lambda *xs: [jax.device_put(x, NamedSharding(mesh, spec)) for x in xs]
  return sharded, place


def _time(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))  # compile and warm up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _scenes(batch: int, size: int):
  pairs = [procedural.make_scene(0, i, size, size) for i in range(batch)]
  image = np.stack([p[0] for p in pairs])
  disparity = np.stack([p[1] for p in pairs])
  focus = np.median(disparity.reshape(batch, -1), axis=1).astype(np.float32)
  spread = np.abs(disparity - focus[:, None, None]).reshape(batch, -1).max(axis=1)
  return jnp.asarray(image), jnp.asarray(disparity), jnp.asarray(focus), spread


def _accuracy(size: int, radii) -> dict:
  """PSNR (dB) of a constant-depth render against a float64 convolution, away from borders."""
  image, _ = procedural.make_scene(0, 0, size, size)
  disparity = np.zeros((size, size), np.float32)
  results = {}
  for radius in radii:
    out = np.asarray(optics.render(image, disparity, 1.0, radius, gamma=1.0))
    expected = _fft_convolve(image.astype(np.float64), _coverage(radius))
    margin = int(radius) + 2
    err = (out - expected)[margin:-margin, margin:-margin]
    results[str(radius)] = round(float(10 * np.log10(1.0 / np.mean(err ** 2))), 2)
  return results


def _point_light(radii, max_radius: float) -> dict:
  """`psf.measure` of a point light rendered at each CoC radius (disk, gamma 1)."""
  results = {}
  for radius in radii:
    size = 2 * (int(radius * 1.25) + 16)
    image, disparity = psf.point_light_scene(size)
    out = optics.render(image, disparity, -1.0, float(radius), gamma=1.0, max_radius=max_radius)
    results[str(radius)] = psf.measure(np.asarray(out)[..., 0], radius).as_dict()
  return results


def _point_lights(batch: int, size: int, radius: float, lights: int = 16):
  """A night scene at one depth: ``lights`` point lights per image on black, CoC ``radius``.
  Returns the renderer's arguments (image, disparity, focus, blur)."""
  rng = np.random.default_rng(0)
  image = np.zeros((batch, size, size, 3), np.float32)
  for i in range(batch):
    ys, xs = rng.integers(0, size, (2, lights))
    image[i, ys, xs] = rng.uniform(0.5, 1.0, (lights, 3))
  disparity = np.ones((batch, size, size), np.float32)
  return (jnp.asarray(image), jnp.asarray(disparity), jnp.zeros(batch, jnp.float32),
          jnp.full(batch, radius, jnp.float32))


def _photo_render(megapixels: float, blurs) -> dict:
  """Seconds of the full-resolution render of one refocusing request on a procedural photo of
  ``megapixels`` (4:3), per requested blur K (pixels): the program the refocuser compiles
  (`compose.render_in_strips`, whole frame), first call (compile included) and the next."""
  from diffcamera_jax.inference import compose
  width = int(round(np.sqrt(megapixels * 1e6 * 4 / 3)))
  height = int(round(width * 3 / 4))
  image, disparity = procedural.make_scene(0, 0, height, width)
  out = {"height": height, "width": width}
  for blur in blurs:
    radius = compose.radius_bucket(blur)
    focus = float(np.median(disparity))
    run = lambda: compose.render_in_strips(image, disparity, focus, float(blur), max_radius=radius,
                                           budget=2 ** 40)
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    out[str(blur)] = {"max_radius": radius, "first_call_seconds": round(first, 2),
                      "seconds": round(seconds, 2),
                      "seconds_per_megapixel": round(seconds / (height * width / 1e6), 3)}
  return out


def _bytes_accessed(jitted, *args) -> float | None:
  """Bytes read and written by one call of `jitted`, from XLA's cost analysis of its program."""
  analysis = jitted.lower(*args).compile().cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  value = (analysis or {}).get("bytes accessed")
  return None if value is None else float(value)


def _coverage(radius: float, supersample: int = 16) -> np.ndarray:
  half = int(np.ceil(radius + 1))
  sub = (np.arange(supersample) + 0.5) / supersample - 0.5
  c = (np.arange(-half, half + 1)[:, None] + sub[None, :]).reshape(-1)
  hit = np.hypot(c[None, :], c[:, None]) <= radius
  k = hit.reshape(2 * half + 1, supersample, 2 * half + 1, supersample).mean(axis=(1, 3))
  return k / k.sum()


def _fft_convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  h, w, _ = image.shape
  k = kernel.shape[0]
  placed = np.zeros((h + k, w + k))
  placed[:k, :k] = kernel
  placed = np.roll(placed, (-(k // 2), -(k // 2)), axis=(0, 1))
  padded = np.pad(image, ((0, k), (0, k), (0, 0)))
  spectrum = np.fft.rfft2(padded, axes=(0, 1)) * np.fft.rfft2(placed)[..., None]
  return np.fft.irfft2(spectrum, s=placed.shape, axes=(0, 1))[:h, :w]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--size", type=int, default=512)
  parser.add_argument("--radii", type=int, nargs="+", default=[8, 32, 64])
  parser.add_argument("--baseline_radius", type=int, default=32)
  parser.add_argument("--baseline_batch", type=int, default=1,
                      help="examples for the (slow, linear in batch) baseline; scaled per pixel")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--psf_radii", type=int, nargs="+", default=[15, 30, 60, 100, 150])
  parser.add_argument("--point_light_radius", type=float, default=100.0,
                      help="CoC radius of the timed point-light render (batch and size as above)")
  parser.add_argument("--photo_megapixels", type=float, default=12.0,
                      help="size of the photo whose full-resolution render is timed (0: skip)")
  parser.add_argument("--photo_blurs", type=float, nargs="+", default=[24.0, 100.0])
  parser.add_argument("--peak_bandwidth_gbs", type=float, default=None,
                      help="the device's memory bandwidth (GB/s), for the share used")
  parser.add_argument("--out", default="benchmarks/results/render.json")
  parser.add_argument("--cpu_devices", type=int, default=os.cpu_count() or 1,
                      help="XLA CPU devices (one per core) the batch is split over")
  args = parser.parse_args()
  jax.config.update("jax_num_cpu_devices", args.cpu_devices)  # before the backend starts

  load_before = os.getloadavg()[0]
  image, disparity, focus, spread = _scenes(args.batch, args.size)
  pixels = args.batch * args.size * args.size
  fn = lambda i, d, f, k: optics.render(i, d, f, k)
  blurs = {r: jnp.asarray(r / np.maximum(spread, 1e-3), jnp.float32) for r in args.radii}
  # variant -> (jitted renderer, placed inputs per radius)
  variants = {"single_device": (jax.jit(fn), {r: (image, disparity, focus, b) for r, b in blurs.items()})}
  parallel = _data_parallel(fn, args.batch)
  if parallel is not None:
    sharded, place = parallel
    variants["data_parallel"] = (sharded, {r: place(image, disparity, focus, b) for r, b in blurs.items()})
  for render, inputs in variants.values():
    for args_r in inputs.values():
      jax.block_until_ready(render(*args_r))  # compile and warm up
  # Radii and variants are timed round-robin, so that a change in the shared machine's load hits
  # them alike.
  wall = {(v, r): [] for v in variants for r in args.radii}
  cpu = {(v, r): [] for v in variants for r in args.radii}
  for _ in range(args.repeats):
    for r in args.radii:
      for v, (render, inputs) in variants.items():
        start, start_cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(render(*inputs[r]))
        wall[v, r].append(time.perf_counter() - start)
        cpu[v, r].append(time.process_time() - start_cpu)
  timings = {}
  for v in variants:
    timings[v] = {}
    for r in args.radii:
      seconds = statistics.median(wall[v, r])
      timings[v][str(r)] = {"seconds": round(seconds, 4),
                            "mpix_per_s": round(pixels / seconds / 1e6, 3),
                            "cpu_seconds": round(statistics.median(cpu[v, r]), 4)}
  headline = "data_parallel" if "data_parallel" in variants else "single_device"
  candidate = timings[headline]
  for r in args.radii:  # whole-batch bytes of one single-device program
    moved = _bytes_accessed(variants["single_device"][0], image, disparity, focus, blurs[r])
    if moved is not None:
      entry = candidate[str(r)]
      entry["bytes_accessed"] = moved
      entry["gb_per_s"] = round(moved / entry["seconds"] / 1e9, 2)
      if args.peak_bandwidth_gbs:
        entry["bandwidth_share"] = round(entry["gb_per_s"] / args.peak_bandwidth_gbs, 4)

  # a point-light (night) scene at one large CoC radius, the headline variant
  lights = _point_lights(args.batch, args.size, args.point_light_radius)
  render_lights = variants[headline][0]
  placed = lights if headline == "single_device" else parallel[1](*lights)
  light_seconds = _time(render_lights, *placed, repeats=args.repeats)
  point_light_render = {"radius": args.point_light_radius, "seconds": round(light_seconds, 4),
                        "mpix_per_s": round(pixels / light_seconds / 1e6, 3)}

  nb = args.baseline_batch
  blur = jnp.asarray(args.baseline_radius / np.maximum(spread[:nb], 1e-3), jnp.float32)
  coc = optics.signed_coc(disparity[:nb], focus[:nb], blur)
  baseline_fn = jax.jit(lambda i, c: scatter_baseline(i, c, args.baseline_radius))
  baseline_seconds = _time(baseline_fn, image[:nb] ** 2.2, coc, repeats=1)
  baseline_mpix = nb * args.size ** 2 / baseline_seconds / 1e6

  r_lo, r_hi = str(min(args.radii)), str(max(args.radii))
  key = str(args.baseline_radius)
  result = {
      "device": jax.devices()[0].device_kind, "platform": platform.platform(),
      "cpu_count": os.cpu_count(), "batch": args.batch, "size": args.size,
      # the CPU is shared: 1-minute load averages around the run put the timings in context
      "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
      # the headline: the batch split over one CPU device per core (see the module docstring)
      "candidate_variant": headline,
      "cpu_devices": len(jax.devices()),
      "candidate": candidate,
      "single_device": timings["single_device"],
      "baseline": {"max_radius": args.baseline_radius, "batch": nb,
                   "seconds": round(baseline_seconds, 3), "mpix_per_s": round(baseline_mpix, 4)},
      "ratios": {
          f"time_r{r_hi}_over_r{r_lo}": round(candidate[r_hi]["seconds"] / candidate[r_lo]["seconds"], 3),
          f"cpu_time_r{r_hi}_over_r{r_lo}":
              round(candidate[r_hi]["cpu_seconds"] / candidate[r_lo]["cpu_seconds"], 3),
          f"speedup_vs_baseline_r{key}": round(candidate[key]["mpix_per_s"] / baseline_mpix, 1)
          if key in candidate else None,
      },
      "accuracy_psnr_db_constant_depth_256px": _accuracy(256, [1.0, 5.0, 12.0, 24.0, 40.0]),
      "point_light_disk": _point_light(args.psf_radii, max_radius=float(max(args.psf_radii))),
      "point_light_render": point_light_render,
      "photo_render": _photo_render(args.photo_megapixels, args.photo_blurs)
      if args.photo_megapixels > 0 else None,
      "peak_bandwidth_gbs": args.peak_bandwidth_gbs,
      "targets": {"time_ratio_max": 1.3, "speedup_min": 20, "mpix_per_s_min": 8.0},
  }
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
