"""Ablations of the paper variant across training seeds: train, export, score, summarise; resumable.

    nohup python tools/ablations.py --root W/ablations --steps 1800 \
        --arm "stack=" --arm "nostack=--config.objective.stack_weight=0" \
        --arm "drop=" --arm "nodrop=--config.objective.p_depth_drop=0" --seeds 0,1,2 \
        --evaluate "--num-scenes 150" --evaluate "--num-scenes 150 --no-depth" \
        --out docs/results/ablations.json > W/ablations.log 2>&1 &

Each arm is `NAME=EXTRA_FLAGS` on top of `configs/default.py:paper` (`--config` may be given in
EXTRA_FLAGS to change the base). Per arm and seed it runs `diffcamera_jax.train` in its own workdir
(`ROOT/NAME_sSEED`; an interrupted run resumes from its last checkpoint when started again),
`diffcamera_jax.export` (skipped when the export exists), then `diffcamera_jax.evaluate` once per
`--evaluate` argument set (skipped when its results exist). Arms with the same flags share runs
(`stack` and `drop` above are both the plain variant). `--out` gets, per evaluation, arm and model row
(`model`, each `model (depth: KIND)`, and their per-scene mean over the corruptions), each metric's
mean over seeds with the standard error across seeds, and the per-scene standard error of each
seed's mean (`diffcamera_jax.evaluation.ablation_summary`); then the same for the per-scene,
same-seed differences of each arm from the first one (`contrasts`), and under corrupted depth for
each arm's margin over the renderer given the same corrupted map (`renderer_margins`).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys

from diffcamera_jax.evaluation.ablation_summary import contrasts, renderer_margins, summarise


def _run(argv: list[str], log: str) -> None:
  print("$", shlex.join(argv), flush=True)
  with open(log, "a", encoding="utf-8") as f:
    subprocess.run(argv, check=True, stdout=f, stderr=subprocess.STDOUT)


def run_one(root: str, flags: str, seed: int, steps: int, evaluations: list[str]) -> dict:
  """Trains, exports and scores one (flags, seed); returns {evaluation: per-scene scores}."""
  key = "plain" if not flags.strip() else "".join(c if c.isalnum() else "_" for c in flags)[-60:]
  work = os.path.join(root, f"{key}_s{seed}")
  os.makedirs(work, exist_ok=True)
  log = os.path.join(work, "log.txt")
  export = os.path.join(work, "export")
  extra = shlex.split(flags)
  config = next((f for f in extra if f.startswith("--config=")),
                "--config=configs/default.py:paper")
  extra = [f for f in extra if not f.startswith("--config=")]
  py = sys.executable
  if not os.path.isfile(os.path.join(export, "config.json")):
    _run([py, "-m", "diffcamera_jax.train", config, f"--workdir={os.path.join(work, 'train')}",
          f"--config.seed={seed}", f"--config.train.num_steps={steps}",
          "--config.train.eval_every=1000000000"] + extra, log)
    _run([py, "-m", "diffcamera_jax.export", "--workdir", os.path.join(work, "train"),
          "--out", export], log)
  scores = {}
  for i, args in enumerate(evaluations):
    out = os.path.join(work, f"eval{i}")
    if not os.path.isfile(os.path.join(out, "results.json")):
      _run([py, "-m", "diffcamera_jax.evaluate", "--model", export, "--quiet", "--examples", "0",
            "--out", out] + shlex.split(args), log)
    with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
      methods = json.load(f)["benchmarks"]["procedural"]["methods"]
    scores[args] = {name: r["per_scene"] for name, r in methods.items()}
  return scores


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--root", required=True, help="folder of the runs")
  parser.add_argument("--arm", action="append", required=True, help="NAME=EXTRA_FLAGS")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--steps", type=int, required=True)
  parser.add_argument("--evaluate", action="append", default=[],
                      help="arguments of one `diffcamera_jax.evaluate` run per model")
  parser.add_argument("--out", required=True, help="summary JSON")
  args = parser.parse_args(argv)
  arms = dict(a.partition("=")[::2] for a in args.arm)
  seeds = [int(s) for s in args.seeds.split(",")]
  evaluations = args.evaluate or ["--num-scenes 150"]
  results = {arm: {} for arm in arms}
  for seed in seeds:  # seed-major: every arm has some seeds early when the study is stopped
    for arm, flags in arms.items():
      results[arm][seed] = run_one(args.root, flags, seed, args.steps, evaluations)
  reference = next(iter(arms))
  summary = {"steps": args.steps, "seeds": seeds, "arms": arms,
             "results": summarise(results, arms, seeds, evaluations),
             "reference_arm": reference,
             "contrasts": contrasts(results, arms, seeds, evaluations, reference),
             "renderer_margins": renderer_margins(results, arms, seeds, evaluations)}
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=1)
  for part, title in (("results", ""), ("contrasts", f" − {reference}"),
                      ("renderer_margins", " − renderer (same map)")):
    for evaluation, table in summary[part].items():
      print(f"## evaluate {evaluation}: arm{title}")
      for arm, models in table.items():
        for name, rows in models.items():
          print(f"  {arm} / {name}: " + "; ".join(f"{m} {r['mean']:.3f} ± {r['se_seeds']:.3f}"
                                                for m, r in rows.items()))
  return 0


if __name__ == "__main__":
  sys.exit(main())
