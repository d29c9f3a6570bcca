"""A fixed-seed fingerprint of training and evaluation, to prove a change leaves behaviour alone.

Trains the default config for a few steps (fixed seed, one process), exports it, scores it on the
built-in benchmark with and without depth, and writes `OUT/fingerprint.json`: a SHA-256 of every
leaf of the final training state (params, EMA params, optimiser state) and of the exported params,
and the benchmark's per-scene scores. Run it before and after a change and compare the files:

    python tools/behaviour_fingerprint.py --out /tmp/before
    ... change ...
    python tools/behaviour_fingerprint.py --out /tmp/after
    python tools/behaviour_fingerprint.py --compare /tmp/before /tmp/after \
        [--rename "OLD ROW=NEW ROW"]

Only the public commands are used (train, export, evaluate), so the tool runs unchanged on both
sides of a restructuring.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys

import numpy as np


def _leaf_hashes(tree, prefix="") -> dict[str, str]:
  out = {}
  if isinstance(tree, dict):
    for k in sorted(tree):
      out.update(_leaf_hashes(tree[k], f"{prefix}/{k}"))
  elif isinstance(tree, (list, tuple)):
    for i, v in enumerate(tree):
      out.update(_leaf_hashes(v, f"{prefix}/{i}"))
  elif tree is not None:
    a = np.asarray(tree)
    out[prefix] = f"{a.dtype}{list(a.shape)}:" + hashlib.sha256(a.tobytes()).hexdigest()[:16]
  return out


def _run(args: list[str]) -> None:
  print("+", " ".join(args), flush=True)
  subprocess.run([sys.executable, *args], check=True)


def fingerprint(out: str, steps: int, scenes: int) -> dict:
  import orbax.checkpoint as ocp

  workdir, export = os.path.join(out, "workdir"), os.path.join(out, "export")
  if os.path.exists(workdir):
    raise FileExistsError(f"{workdir} exists: give a fresh --out")
  _run(["-m", "diffcamera_jax.train", "--config=configs/default.py", f"--workdir={workdir}",
        f"--config.train.num_steps={steps}", f"--config.train.checkpoint_every={steps}",
        "--config.train.eval_every=10", "--config.train.async_checkpointing=False",
        "--distributed=off"])
  _run(["-m", "diffcamera_jax.export", "--workdir", workdir, "--out", export])
  scores = {}
  for name, extra in (("depth", []), ("nodepth", ["--no-depth"])):
    dest = os.path.join(out, f"eval_{name}")
    _run(["-m", "diffcamera_jax.evaluate", "--model", export, "--num-scenes", str(scenes),
          "--quiet", "--out", dest, *extra])
    with open(os.path.join(dest, "results.json"), encoding="utf-8") as f:
      results = json.load(f)
    methods = results["benchmarks"]["procedural"]["methods"]
    scores[name] = {m: r["per_scene"] for m, r in methods.items()}
  step_dir = os.path.join(workdir, "checkpoints", str(steps), "state")
  with ocp.StandardCheckpointer() as checkpointer:
    state = checkpointer.restore(step_dir)
    exported = checkpointer.restore(os.path.join(export, "params"))
  return {"steps": steps, "scenes": scenes, "state": _leaf_hashes(state),
          "export": _leaf_hashes(exported), "scores": scores}


def compare(a: str, b: str, renames: dict[str, str] | None = None) -> int:
  """0 when `b` reproduces `a`. `renames` maps a method row of `a` to its name in `b`; rows only
  `b` has are listed (new rows), not counted as differences."""
  load = lambda d: json.load(open(os.path.join(d, "fingerprint.json"), encoding="utf-8"))
  fa, fb = load(a), load(b)
  renames = renames or {}
  fa["scores"] = {setting: {renames.get(m, m): v for m, v in rows.items()}
                  for setting, rows in fa["scores"].items()}
  for setting, rows in fb["scores"].items():
    new = sorted(set(rows) - set(fa["scores"].get(setting, {})))
    if new:
      print(f"new rows ({setting}): {new}")
    fb["scores"][setting] = {m: v for m, v in rows.items() if m not in new}
  problems = []
  for part in ("state", "export", "scores"):
    if fa[part] != fb[part]:
      if isinstance(fa[part], dict) and part != "scores":
        diff = sorted(k for k in set(fa[part]) | set(fb[part])
                      if fa[part].get(k) != fb[part].get(k))
        problems.append(f"{part}: {len(diff)} leaves differ, e.g. {diff[:3]}")
      else:
        problems.append(f"{part}: differ")
  n = len(fa["state"]) + len(fa["export"])
  print("identical" if not problems else "\n".join(problems),
        f"({n} leaves, scores of {fa['scenes']} scenes x 2 settings)")
  return 1 if problems else 0


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--scenes", type=int, default=150)
  p.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
  p.add_argument("--rename", action="append", default=[], metavar="OLD=NEW",
                 help="with --compare: a method row of BEFORE named NEW in AFTER (repeatable)")
  args = p.parse_args()
  if args.compare:
    return compare(*args.compare, dict(r.split("=", 1) for r in args.rename))
  if not args.out:
    p.error("--out or --compare is required")
  result = fingerprint(os.path.abspath(args.out), args.steps, args.scenes)
  with open(os.path.join(args.out, "fingerprint.json"), "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
  print(f"wrote {os.path.join(args.out, 'fingerprint.json')}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
