"""The summary of an ablation study across training seeds (`tools/ablations.py` runs the study):
per evaluation, arm and model row, each metric's mean over seeds with the standard error across
seeds, and the per-scene standard error of each seed's mean, from per-scene evaluation results.

Two paired comparisons are summarised the same way, scene by scene within each seed (every arm is
scored on the same scenes): each arm against a reference arm (`contrasts`), and, under corrupted
depth, each arm's model against the renderer given the same corrupted map (`renderer_margins`).
"""
import numpy as np

from diffcamera_jax.evaluation.result_summary import standard_error

METRICS = ("bokeh/psnr", "bokeh/focus_accuracy", "deblur/psnr", "refocus/psnr",
           "refocus/focus_accuracy", "stacking/psnr", "sweep/lvcorr")
CORRUPTED_MEAN = "model (depth: mean over corruptions)"


def family_rows(methods: dict, family: str = "model") -> dict:
  """The rows of one method family in one evaluation (``family``, ``family (depth: KIND)``, ...),
  and where there are corrupted-depth rows, their per-scene mean as
  ``family (depth: mean over corruptions)``."""
  rows = {name: r for name, r in methods.items()
          if name == family or name.startswith(f"{family} (")}
  corrupted = [r for name, r in rows.items() if name.startswith(f"{family} (depth:")]
  if corrupted:
    rows[f"{family} (depth: mean over corruptions)"] = {
        metric: [None if any(r[metric][i] is None for r in corrupted)
                 else float(np.mean([r[metric][i] for r in corrupted]))
                 for i in range(len(corrupted[0][metric]))]
        for metric in METRICS}
  return rows


def model_rows(methods: dict) -> dict:
  """The model's rows of one evaluation (`family_rows` of ``"model"``)."""
  return family_rows(methods, "model")


def _scores(values) -> np.ndarray:
  return np.asarray([np.nan if x is None else x for x in values], np.float64)


def _across_seeds(per_seed: list[np.ndarray]) -> dict:
  """Mean over seeds ± SE across seeds of per-scene vectors (undefined scenes left out), with
  each seed's mean and per-scene SE."""
  finite = [v[np.isfinite(v)] for v in per_seed]
  means = [float(v.mean()) for v in finite]
  return {"mean": float(np.mean(means)), "se_seeds": standard_error(np.asarray(means)),
          "per_seed": means, "per_scene_se": [standard_error(v) for v in finite]}


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
            per_row.setdefault(name, {}).setdefault(metric, []).append(_scores(scores[metric]))
      table[arm] = {name: {metric: _across_seeds(v) for metric, v in rows.items()}
                    for name, rows in per_row.items()}
    out[args] = table
  return out


def contrasts(results: dict, arms: dict, seeds: list[int], evaluations: list[str],
              reference: str) -> dict:
  """Per evaluation, arm other than ``reference`` and model row: the per-scene difference
  (arm − reference, same seed, same scene) summarised across seeds like `summarise`."""
  out = {}
  for args in evaluations:
    table = {}
    for arm in arms:
      if arm == reference:
        continue
      per_row: dict = {}
      for seed in seeds:
        ours = model_rows(results[arm][seed][args])
        theirs = model_rows(results[reference][seed][args])
        for name in ours.keys() & theirs.keys():
          for metric in METRICS:
            diff = _scores(ours[name][metric]) - _scores(theirs[name][metric])
            per_row.setdefault(name, {}).setdefault(metric, []).append(diff)
      table[arm] = {name: {metric: _across_seeds(v) for metric, v in per_row[name].items()}
                    for name in sorted(per_row)}
    out[args] = table
  return out


def renderer_margins(results: dict, arms: dict, seeds: list[int], evaluations: list[str]) -> dict:
  """Per evaluation with corrupted-depth rows, and arm: for each corruption and their mean, the
  per-scene margin of the model over the renderer given the same corrupted map, summarised
  across seeds like `summarise`."""
  out = {}
  for args in evaluations:
    table = {}
    for arm in arms:
      per_row: dict = {}
      for seed in seeds:
        methods = results[arm][seed][args]
        models, renderers = model_rows(methods), family_rows(methods, "renderer")
        for name, scores in models.items():
          theirs = renderers.get(name.replace("model (depth:", "renderer (depth:", 1))
          if not name.startswith("model (depth:") or theirs is None:
            continue
          for metric in METRICS:
            diff = _scores(scores[metric]) - _scores(theirs[metric])
            per_row.setdefault(name, {}).setdefault(metric, []).append(diff)
      if per_row:
        table[arm] = {name: {metric: _across_seeds(v) for metric, v in rows.items()}
                      for name, rows in per_row.items()}
    if table:
      out[args] = table
  return out
