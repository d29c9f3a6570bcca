"""Per-scene differences with standard errors from `evaluate` results (for the README tables).

    python tools/summarize_results.py OUT/results.json

For every method and task: mean PSNR, and the mean per-scene difference to each baseline with its
standard error and the share of scenes where the method is better; LVCorr, focus accuracy and
stacking consistency means.
"""
import argparse
import json

import numpy as np


def _se(x: np.ndarray) -> float:
  return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def summarize(path: str) -> str:
  with open(path, encoding="utf-8") as f:
    methods = json.load(f)["benchmarks"]["procedural"]["methods"]
  per = {m: {k: np.asarray(v, np.float64) for k, v in r["per_scene"].items()}
         for m, r in methods.items()}
  baselines = [m for m in per if m.startswith(("input unchanged", "renderer", "learned baseline"))]
  lines = []
  for m, s in per.items():
    n = len(s["deblur/psnr"])
    lines.append(f"## {m} ({n} scenes)")
    for task in ("bokeh", "deblur", "refocus"):
      p = s[f"{task}/psnr"]
      cells = [f"{task}: PSNR {p.mean():.2f}"]
      for b in baselines:
        if b == m:
          continue
        d = p - per[b][f"{task}/psnr"]
        cells.append(f"vs {b} {d.mean():+.3f} ± {_se(d):.3f} (better {np.mean(d > 0):.0%})")
      if task == "refocus":
        best = np.maximum(per["input unchanged"]["refocus/psnr"],
                          per[next(b for b in per if b.startswith("renderer"))]["refocus/psnr"])
        d = p - best
        cells.append(f"vs per-scene better classical {d.mean():+.3f} ± {_se(d):.3f}")
      if f"{task}/focus_accuracy" in s:
        cells.append(f"focus acc {np.nanmean(s[f'{task}/focus_accuracy']):.2f}")
      lines.append("  " + "; ".join(cells))
    lines.append(f"  LVCorr {np.nanmean(s['sweep/lvcorr']):.3f}; stacking PSNR "
                 f"{np.nanmean(s['stacking/psnr']):.2f}")
  return "\n".join(lines)


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("results")
  print(summarize(parser.parse_args().results))
