"""Under corrupted depth: each model's per-scene margin over the renderer given the same map.

    python tools/corruption_margins.py RESULTS.json [RESULTS.json ...] [--out MARGINS.json]

Reads `evaluate --depth-corruption ...` results (`results.json` of the run, or a committed copy)
and prints, for each file, the model's bokeh and refocus PSNR margin over the renderer per kind
and averaged over the kinds, as mean ± per-scene standard error (the summary
`tools/ablations.py` writes across seeds, for one model: `ablation_summary.renderer_margins`).
"""
from __future__ import annotations

import argparse
import json
import sys

from diffcamera_jax.evaluation import ablation_summary

METRICS = ("bokeh/psnr", "refocus/psnr")


def margins(path: str) -> dict:
  """`{row: {metric: {"mean", "per_scene_se"}}}` of the model rows of one results file."""
  with open(path, encoding="utf-8") as f:
    methods = json.load(f)["benchmarks"]["procedural"]["methods"]
  scores = {name: r["per_scene"] for name, r in methods.items()}
  table = ablation_summary.renderer_margins({"model": {0: {"e": scores}}}, ["model"], [0], ["e"])
  if not table:
    raise ValueError(f"{path}: no corrupted-depth rows of a model and the renderer")
  return {row: {m: {"mean": v[m]["mean"], "per_scene_se": v[m]["per_scene_se"][0]}
                for m in METRICS}
          for row, v in table["e"]["model"].items()}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("results", nargs="+")
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  out = {}
  for path in args.results:
    try:
      out[path] = margins(path)
    except (OSError, KeyError, ValueError) as e:
      print(f"corruption_margins: {path}: {e}", file=sys.stderr)
      return 2
    print(path)
    for row, metrics in out[path].items():
      print(f"  {row:40s} " + "  ".join(
          f"{m} {v['mean']:+.2f} ± {v['per_scene_se']:.2f}" for m, v in metrics.items()))
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(out, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
