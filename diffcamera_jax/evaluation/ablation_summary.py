"""The summary of an ablation study across training seeds (`tools/ablations.py` runs the study):
per evaluation, arm and model row, each metric's mean over seeds with the standard error across
seeds, and the per-scene standard error of each seed's mean, from per-scene evaluation results.
"""
import numpy as np

from diffcamera_jax.evaluation.result_summary import standard_error

METRICS = ("bokeh/psnr", "bokeh/focus_accuracy", "deblur/psnr", "refocus/psnr",
           "refocus/focus_accuracy", "stacking/psnr", "sweep/lvcorr")
CORRUPTED_MEAN = "model (depth: mean over corruptions)"


def model_rows(methods: dict) -> dict:
  """The model's rows of one evaluation (`model`, `model (depth: KIND)`, ...), and where there are
  corrupted-depth rows, their per-scene mean as `CORRUPTED_MEAN`."""
  rows = {name: r for name, r in methods.items() if name.startswith("model")}
  corrupted = [r for name, r in rows.items() if name.startswith("model (depth:")]
  if corrupted:
    rows[CORRUPTED_MEAN] = {
        metric: [None if any(r[metric][i] is None for r in corrupted)
                 else float(np.mean([r[metric][i] for r in corrupted]))
                 for i in range(len(corrupted[0][metric]))]
        for metric in METRICS}
  return rows


def summarise(results: dict, arms: dict, seeds: list[int], evaluations: list[str]) -> dict:
  """Per evaluation, arm and model row (`model_rows`): each metric's mean over seeds ± SE across
  seeds, and each seed's per-scene SE."""
  out = {}
  for args in evaluations:
    table = {}
    for arm in arms:
      per_row: dict = {}
      for seed in seeds:
        for name, scores in model_rows(results[arm][seed][args]).items():
          for metric in METRICS:
            v = np.asarray([np.nan if x is None else x for x in scores[metric]], np.float64)
            v = v[np.isfinite(v)]
            entry = per_row.setdefault(name, {}).setdefault(metric, ([], []))
            entry[0].append(float(v.mean()))
            entry[1].append(standard_error(v))
      table[arm] = {name: {metric: {"mean": float(np.mean(m)),
                                    "se_seeds": standard_error(np.asarray(m)),
                                    "per_seed": m, "per_scene_se": se}
                           for metric, (m, se) in rows.items()}
                    for name, rows in per_row.items()}
    out[args] = table
  return out
