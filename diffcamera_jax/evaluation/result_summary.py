"""Per-scene differences with standard errors from `evaluate` results (for the README tables;
`tools/summarize_results.py` prints them).

For every method and task: mean PSNR, and the mean per-scene difference to each baseline with its
standard error and the share of scenes where the method is better; LVCorr, focus accuracy and
stacking consistency means. With `evaluate --depth-corruption` rows (`NAME (depth: KIND)`), also
each method's margin over the renderer given the same corrupted map, per kind and averaged over
the kinds (per scene first, then mean ± standard error over scenes).
"""
import json

import numpy as np


def standard_error(x: np.ndarray) -> float:
  """Standard error of the mean of `x` (NaN for fewer than two values)."""
  return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def summarize(path: str) -> str:
  """The summary text of an `evaluate` `results.json` (its procedural benchmark's methods)."""
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
        cells.append(f"vs {b} {d.mean():+.3f} ± {standard_error(d):.3f} "
                     f"(better {np.mean(d > 0):.0%})")
      if task == "refocus":
        best = np.maximum(per["input unchanged"]["refocus/psnr"],
                          per[next(b for b in per if b.startswith("renderer"))]["refocus/psnr"])
        d = p - best
        cells.append(f"vs per-scene better classical {d.mean():+.3f} ± {standard_error(d):.3f}")
      if f"{task}/focus_accuracy" in s:
        cells.append(f"focus acc {np.nanmean(s[f'{task}/focus_accuracy']):.2f}")
      lines.append("  " + "; ".join(cells))
    lines.append(f"  LVCorr {np.nanmean(s['sweep/lvcorr']):.3f}; stacking PSNR "
                 f"{np.nanmean(s['stacking/psnr']):.2f}")
  lines += corrupted_depth_margins(per)
  return "\n".join(lines)


def corrupted_depth_margins(per: dict) -> list[str]:
  """Lines: each method's PSNR minus the renderer's, both given the same corrupted map."""
  kinds = sorted({m.rsplit("(depth: ", 1)[1][:-1] for m in per if "(depth: " in m})
  if not kinds:
    return []
  names = sorted({m.rsplit(" (depth: ", 1)[0] for m in per if "(depth: " in m} - {"renderer"})
  lines = ["## corrupted depth: margin over the renderer given the same map"]
  for name in names:
    for task in ("bokeh", "refocus", "deblur"):
      diffs = {k: per[f"{name} (depth: {k})"][f"{task}/psnr"]
               - per[f"renderer (depth: {k})"][f"{task}/psnr"] for k in kinds}
      mean = np.mean(np.stack(list(diffs.values())), axis=0)
      cells = [f"{k} {d.mean():+.2f}" for k, d in diffs.items()]
      lines.append(f"  {name} {task}: mean over kinds {mean.mean():+.3f} ± "
                   f"{standard_error(mean):.3f} ({', '.join(cells)})")
  return lines
