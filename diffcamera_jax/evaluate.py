"""Run the refocusing benchmark on exported models and baselines; write JSON and an HTML report.

    python -m diffcamera_jax.evaluate --model DIR [--ablation NAME=DIR ...] [--baseline DIR] \
        [--genfocus DIR] \
        [--num-scenes N] \
        [--size HxW] [--no-depth] [--folder F] [--steps S] [--lpips-weights FILE] \
        [--clip-weights FILE] [--depth-model WEIGHTS] --out OUT

Methods scored side by side on the same scenes and cameras: "input unchanged", "renderer (true
depth)" (the classical renderer applied to the input with the true disparity), with `--baseline`
the learned regression baseline (`models/regression.py`, trained by
`train --config=configs/default.py:regression`), the model, each
ablation checkpoint and, with `--genfocus DIR`, the released Genfocus LoRAs on FLUX.1-dev
("Genfocus"; `diffcamera_jax.inference.genfocus_refocuser`; `--base-weights` / `--vae-weights`
apply to it as to FLUX exports). Each model is scored as it is ("model") and after the optics pre-pass that
deblurs the photo where the optics explain its blur ("optics deblur + model"; not learned;
`--optics-prepass on|off` keeps one of the two; models with the same data settings share the
pre-pass, so each photo is searched once). Writes `OUT/results.json` (summaries and per-scene scores), `OUT/report.html`
(tables, charts, image grids) and `OUT/images/*.png`. See `diffcamera_jax.evaluation.benchmark` for the tasks
and docs/evaluation.md for the metrics. With `--lpips-weights` (a local file, see
`diffcamera_jax.evaluation.lpips`) every task also gets an LPIPS score (`{task}/lpips`), with
`--clip-weights` (`diffcamera_jax.evaluation.clip_image`) a CLIP-I score (`{task}/clip_i`). With
`--depth-model` (Depth Anything V2 weights, `diffcamera_jax.depth`) the models, the learned
baseline and an added "renderer (estimated depth)" run on disparity estimated from each input
photo instead of the true one (the pipeline of a user without a depth map), and `--folder` accepts
photos without maps (their ground truth is then rendered with the estimate). Bad input prints one
line on stderr and exits with 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from data_pipeline.procedural import BENCHMARK_NUM_SCENES
from diffcamera_jax import imageio
from diffcamera_jax.evaluation import benchmark, depth_corruption
from diffcamera_jax.evaluation.report import render_report
from diffcamera_jax.inference.refocuser import Refocuser
from diffcamera_jax.cli import (EXIT_BAD_INPUT, ArgumentParser, add_model_weight_flags,
                                add_prepass_flags, ensure_writable_dir, one_line, prepass_options)

PREPASS_LABEL = "optics deblur + "  # rows of a model run after the optics pre-pass




def _size(text: str) -> tuple[int, int]:
  try:
    h, w = (int(v) for v in text.lower().split("x"))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected HxW, e.g. 64x64, got {text!r}") from None
  if h < 16 or w < 16:
    raise argparse.ArgumentTypeError(f"size must be at least 16x16 (SSIM window), got {text!r}")
  return h, w


def _ablation(text: str) -> tuple[str, str]:
  name, sep, path = text.partition("=")
  if not sep or not name or not path:
    raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
  return name, path


def build_parser() -> argparse.ArgumentParser:
  p = ArgumentParser(prog="python -m diffcamera_jax.evaluate", description=__doc__.split("\n\n")[0])
  p.add_argument("--model", help="exported model directory (omit to score the baselines only)")
  p.add_argument("--ablation", type=_ablation, action="append", default=[],
                 help="NAME=DIR: another exported model shown side by side (repeatable)")
  p.add_argument("--genfocus", help="also score the released Genfocus LoRAs on FLUX.1-dev from this "
                                    "directory (docs/genfocus.md); needs depth")
  p.add_argument("--baseline", help="exported learned baseline (configs/default.py:regression):"
                 " a plain regression network scored beside the model")
  p.add_argument("--num-scenes", type=int, default=150, help="procedural scenes (1-150)")
  p.add_argument("--scene-seed", type=int, default=None,
                 help="procedural scene seed (default: the benchmark's; a config's "
                      "eval.procedural_seed gives its validation scenes, for design choices)")
  p.add_argument("--size", type=_size, default=None,
                 help="HxW of the scenes (default: the model's training size, else 64x64)")
  p.add_argument("--no-depth", action="store_true", help="run the models without depth")
  p.add_argument("--depth-corruption", default=None, metavar="KIND[,KIND...]",
                 help="also score the renderer, baseline and models given corrupted depth, one "
                      "row per kind: 'all' or a list of blur, warp, noise, coarse, holes "
                      "(diffcamera_jax/evaluation/depth_corruption.py); scored against the true "
                      "depth")
  p.add_argument("--folder", help="also score image+depth pairs from this folder")
  p.add_argument("--steps", type=int, default=None, help="sampling steps (default: each model's)")
  p.add_argument("--batch-size", type=int, default=8)
  p.add_argument("--seed", type=int, default=0, help="sampling noise seed")
  p.add_argument("--examples", type=int, default=4, help="scenes shown in the image grids")
  p.add_argument("--lpips-weights", default=None,
                 help="local LPIPS weights (.npz/.safetensors, see diffcamera_jax.evaluation.lpips): adds "
                      "an LPIPS score per task")
  p.add_argument("--clip-weights", default=None,
                 help="local CLIP vision weights (HF CLIPVisionModelWithProjection .safetensors, "
                      "config.json beside it; see diffcamera_jax.evaluation.clip_image): adds CLIP-I per task")
  add_model_weight_flags(p)
  add_prepass_flags(p, both=True)
  p.add_argument("--quiet", action="store_true", help="no progress bars")
  p.add_argument("--out", required=True, help="output directory")
  return p


def check_args(args: argparse.Namespace) -> None:
  if not 1 <= args.num_scenes <= BENCHMARK_NUM_SCENES:
    raise ValueError(f"--num-scenes {args.num_scenes}: must be in [1, {BENCHMARK_NUM_SCENES}]")
  for flag, path in ([("--model", args.model), ("--baseline", args.baseline),
                      ("--genfocus", args.genfocus)]
                     + [(f"--ablation {n}", d) for n, d in args.ablation]):
    if path is not None and not os.path.isdir(path):
      raise ValueError(f"{flag} {path}: no such directory")
  names = [n for n, _ in args.ablation]
  if len(set(names)) != len(names):
    raise ValueError(f"--ablation: names must be unique, got {names}")
  if args.folder is not None and not os.path.isdir(args.folder):
    raise ValueError(f"--folder {args.folder}: no such directory")
  if args.lpips_weights is not None and not os.path.isfile(args.lpips_weights):
    raise ValueError(f"--lpips-weights {args.lpips_weights}: no such file")
  if args.clip_weights is not None and not os.path.isfile(args.clip_weights):
    raise ValueError(f"--clip-weights {args.clip_weights}: no such file")
  if args.depth_model is not None and not os.path.exists(args.depth_model):
    raise ValueError(f"--depth-model {args.depth_model}: no such file or folder")
  if args.depth_model is not None and args.no_depth:
    raise ValueError("--depth-model and --no-depth exclude each other: the first supplies "
                     "estimated depth, the second none")
  if args.genfocus is not None and args.no_depth:
    raise ValueError("--genfocus: Genfocus's bokeh stage needs a disparity map; it excludes "
                     "--no-depth (give --depth-model for estimated depth)")
  if args.depth_corruption is not None:
    depth_corruption.parse_kinds(args.depth_corruption)
    if args.no_depth or args.depth_model is not None:
      raise ValueError("--depth-corruption corrupts the true depth: it excludes --no-depth and "
                       "--depth-model")
  if (args.steps is not None and args.steps < 1) or args.batch_size < 1 or args.examples < 0:
    raise ValueError("--steps and --batch-size must be >= 1, --examples >= 0")
  prepass_options(args)
  ensure_writable_dir(args.out, "--out")


class EstimatedDepth:
  """Wraps benchmark methods so they receive disparity estimated from the input photo; each
  distinct photo is estimated once (the benchmark asks for the same inputs several times)."""

  def __init__(self, estimator):
    self.estimator = estimator
    self._cache: dict[bytes, np.ndarray] = {}

  def disparity(self, reference: np.ndarray) -> np.ndarray:
    reference = np.asarray(reference, np.float32)
    keys = [hashlib.blake2b(np.ascontiguousarray(r).tobytes(), digest_size=16).digest()
            for r in reference]
    todo = [i for i, k in enumerate(keys) if k not in self._cache]
    for i, d in zip(todo, self.estimator.estimate_many([reference[i] for i in todo])):
      self._cache[keys[i]] = d
    return np.stack([self._cache[k] for k in keys])

  def wrap(self, method: Callable) -> Callable:
    return lambda reference, disparity, focus, blur: method(
        reference, self.disparity(reference), focus, blur)


def load_methods(args: argparse.Namespace, estimator=None
                 ) -> tuple[dict[str, Callable], tuple[int, int] | None]:
  """Baselines first, then the model and ablations (in the order given); and the model's size.
  With a depth `estimator`, the renderer, baseline and models also run on estimated depth."""
  methods = {"input unchanged": benchmark.identity_method,
             "renderer (true depth)": benchmark.make_renderer_method()}
  estimated = EstimatedDepth(estimator) if estimator is not None else None
  if estimated is not None:
    methods["renderer (estimated depth)"] = estimated.wrap(benchmark.make_renderer_method())
  if args.baseline:
    try:
      baseline = load_baseline(args.baseline, use_depth=not args.no_depth,
                               batch_size=args.batch_size)
    except FileNotFoundError as e:
      raise ValueError(f"--baseline {args.baseline}: {e}") from None
    label = "learned baseline (regression)"
    if estimated is not None:
      label, baseline = f"{label} (estimated depth)", estimated.wrap(baseline)
    methods[f"{label} (no depth)" if args.no_depth else label] = baseline
  size = None
  models = ([("model", args.model)] if args.model else []) + list(args.ablation)
  options = prepass_options(args)
  prepass = {"on": (True,), "off": (False,), "both": (False, True)}[args.optics_prepass]
  options.pop("optics_prepass", None)
  deblurrers = {}  # the optics pre-pass is not learned: models with equal settings share its searches
  for name, path in models:
    try:
      refocuser = Refocuser.load(path, batch_size=args.batch_size, num_steps=args.steps,
                                 base_weights=args.base_weights, vae_weights=args.vae_weights,
                                 **options)
    except FileNotFoundError as e:
      raise ValueError(f"{path}: {e}") from None
    refocuser.prepass = deblurrers.setdefault(refocuser.prepass.settings, refocuser.prepass)
    for deblur in prepass:
      label = f"{PREPASS_LABEL}{name}" if deblur else name
      method = refocuser.as_method(use_depth=not args.no_depth, seed=args.seed,
                                   optics_prepass=deblur)
      if estimated is not None:
        label, method = f"{label} (estimated depth)", estimated.wrap(method)
      elif args.no_depth:
        label = f"{label} (no depth)"
      methods[label] = method
    size = size or tuple(refocuser.config.data.image_size)
  if getattr(args, "genfocus", None):
    from diffcamera_jax.inference.genfocus_refocuser import GenfocusRefocuser
    try:
      genfocus = GenfocusRefocuser.load(args.genfocus, base_weights=args.base_weights,
                                        vae_weights=args.vae_weights,
                                        **({"num_steps": args.steps} if args.steps else {}))
    except FileNotFoundError as e:
      raise ValueError(f"--genfocus {args.genfocus}: {e}") from None
    label, method = "Genfocus", genfocus.as_method(seed=args.seed)
    if estimated is not None:
      label, method = f"{label} (estimated depth)", estimated.wrap(method)
    methods[label] = method
  if getattr(args, "depth_corruption", None):
    methods = with_corrupted_depth(methods, args.depth_corruption, seed=args.seed)
  return methods, size


def load_baseline(path: str, use_depth: bool = True, **options) -> Callable:
  """An exported learned baseline (`model.name="regression"`, `models/regression.py`) as a
  benchmark method: a `Refocuser` without the optics pre-pass (`options`: `InferenceOptions`)."""
  from diffcamera_jax.exported import load_exported
  config, params = load_exported(path)
  if config.model.name != "regression":
    raise ValueError(f"--baseline {path}: not a regression baseline export (its model is "
                     f"{config.model.name!r})")
  return Refocuser(config, params, **{"optics_prepass": False, **options}).as_method(
      use_depth=use_depth)


def with_corrupted_depth(methods: dict[str, Callable], kinds: str, seed: int = 0
                         ) -> dict[str, Callable]:
  """`methods` plus, for each corruption kind, a row `NAME (depth: KIND)` of every method that
  reads depth (all but the input unchanged) given the corrupted map."""
  out = dict(methods)
  for kind in depth_corruption.parse_kinds(kinds):
    for name, method in methods.items():
      if name != "input unchanged":
        label = name.replace(" (true depth)", "")
        out[f"{label} (depth: {kind})"] = depth_corruption.wrap(method, kind, seed)
  return out


def _enlarge(frames: list[np.ndarray], min_width: int = 128) -> list[np.ndarray]:
  """Nearest-neighbour upscaling by an integer factor so small benchmark images stay visible."""
  factor = max(1, -(-min_width // frames[0].shape[1]))
  return [np.repeat(np.repeat(f, factor, 0), factor, 1) for f in frames]


def save_grids(out_dir: str, bench_name: str, scenes, spec, runs: dict, num_examples: int) -> dict:
  """Example grids (rows = scenes; input | truth | methods) and the sweep grid; returns paths."""
  if num_examples == 0:
    return {}
  inputs = benchmark.example_inputs(scenes, spec, num_examples)
  n = len(inputs["disparity"])
  paths = {}
  os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
  for task in benchmark.TASKS:
    frames, labels = [], []
    for i in range(n):
      row = [("input", inputs[task]["input"][i]), ("ground truth", inputs[task]["target"][i])]
      row += [(m, r["examples"][task][i]) for m, r in runs.items()]
      frames += [f for _, f in row]
      labels += [label for label, _ in row]
    rel = f"images/{bench_name}_{task}.png"
    imageio.save_image(os.path.join(out_dir, rel),
                       imageio.contact_sheet(_enlarge(frames), labels, columns=2 + len(runs)))
    paths[f"{task}: input | ground truth | methods"] = rel
  levels = spec.sweep(*inputs["disparity"].shape[1:3])
  frames = [f for r in runs.values() for f in r["examples"]["sweep"][0]]
  labels = [f"K={k:.3g} {m}" for m in runs for k in levels]
  rel = f"images/{bench_name}_sweep.png"
  imageio.save_image(os.path.join(out_dir, rel),
                     imageio.contact_sheet(_enlarge(frames), labels, columns=len(levels)))
  paths["blur sweep of the first scene (rows = methods)"] = rel
  return paths


def evaluate(args: argparse.Namespace) -> dict:
  """Scores every method on every benchmark; writes the JSON, report and images; returns results."""
  from diffcamera_jax.depth import load_depth_model
  estimator = load_depth_model(args.depth_model)
  methods, model_size = load_methods(args, estimator)
  height, width = args.size or model_size or (64, 64)
  spec = benchmark.BenchmarkSpec()
  scene_seed = {} if args.scene_seed is None else {"seed": args.scene_seed}
  benches = {"procedural": benchmark.procedural_scenes(args.num_scenes, height, width,
                                                       **scene_seed)}
  if args.folder:
    benches["folder"] = benchmark.folder_scenes(args.folder, height, width,
                                                depth_model=estimator)
  from diffcamera_jax.evaluation.clip_image import ClipImageEncoder
  from diffcamera_jax.evaluation.lpips import LPIPS
  extra = {}  # metric name -> fn(output, target)
  for flag, path, name, cls in (("--lpips-weights", args.lpips_weights, "lpips", LPIPS),
                                ("--clip-weights", args.clip_weights, "clip_i", ClipImageEncoder)):
    if path:
      try:
        extra[name] = cls.load(path)
      except Exception as e:  # an unreadable or foreign file: one line, exit 2
        raise ValueError(f"{flag} {path}: {e}") from None
  results = {"settings": {k: v for k, v in vars(args).items() if k != "ablation"}
             | {"ablations": dict(args.ablation), "spec": dataclasses.asdict(spec)}, "benchmarks": {}}
  for bench_name, scenes in benches.items():
    runs = {}
    for name, method in methods.items():
      progress = lambda it, d=f"{bench_name} / {name}": tqdm(it, desc=d, disable=args.quiet,
                                                             file=sys.stderr)
      runs[name] = benchmark.run(method, scenes, spec, batch_size=args.batch_size,
                                 num_examples=args.examples, metrics=extra, progress=progress)
    results["benchmarks"][bench_name] = {
        "num_scenes": len(scenes), "size": [height, width],
        "sweep_levels": spec.sweep(height, width).tolist(),
        "methods": {m: {"summary": r["summary"], "per_scene": r["per_scene"]} for m, r in runs.items()},
        "images": save_grids(args.out, bench_name, scenes, spec, runs, args.examples)}
  results = to_json(results)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
    json.dump(results, f, indent=1, allow_nan=False)
  with open(os.path.join(args.out, "report.html"), "w", encoding="utf-8") as f:
    f.write(render_report(results))
  return results


def to_json(value):
  """Plain JSON types; NaN/inf (undefined scores) become None so the file is standard JSON."""
  if isinstance(value, dict):
    return {str(k): to_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_json(v) for v in value]
  if isinstance(value, (np.floating, float)):
    return float(value) if np.isfinite(value) else None
  if isinstance(value, np.integer):
    return int(value)
  return value


def _fmt(v) -> str:
  return "n/a" if v is None else f"{v:.3f}"


def main(argv: Sequence[str] | None = None) -> int:
  try:
    args = build_parser().parse_args(argv)
    check_args(args)
    results = evaluate(args)
  except ValueError as e:
    print(f"evaluate: error: {one_line(str(e))}", file=sys.stderr)
    return EXIT_BAD_INPUT
  for bench_name, bench in results["benchmarks"].items():
    for method, r in bench["methods"].items():
      s = r["summary"]
      keys = ["bokeh/psnr", "deblur/psnr", "refocus/psnr", "sweep/lvcorr"]
      keys += [f"{t}/{m}" for m in ("lpips", "clip_i") for t in ("bokeh", "deblur", "refocus")
               if f"{t}/{m}" in s]
      cells = "  ".join(f"{k} {_fmt(s.get(k))}" for k in keys)
      print(f"{bench_name:10s} {method:24s} {cells}")
  print(os.path.join(args.out, "report.html"))
  return 0


if __name__ == "__main__":
  sys.exit(main())
