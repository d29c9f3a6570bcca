"""Scalars of a training run's TensorBoard events as JSON: `{tag: [[step, value], ...]}`.

    python tools/read_events.py WORKDIR [--prefix eval/] [--out FILE]

Reads every `events.out.tfevents.*` in WORKDIR (the metric writer's files) with TensorBoard's
event reader; used to keep a run's validation curve (`eval/*`) as a result file.
"""
import argparse
import glob
import json
import os
import sys


def read_scalars(workdir: str, prefix: str = "") -> dict[str, list[list[float]]]:
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  from tensorboard.util import tensor_util
  out: dict[str, dict[int, float]] = {}
  for path in sorted(glob.glob(os.path.join(workdir, "events.out.tfevents.*"))):
    acc = EventAccumulator(path, size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in tags.get("tensors", []):
      if tag.startswith(prefix):
        for e in acc.Tensors(tag):
          out.setdefault(tag, {})[e.step] = float(tensor_util.make_ndarray(e.tensor_proto))
    for tag in tags.get("scalars", []):
      if tag.startswith(prefix):
        for e in acc.Scalars(tag):
          out.setdefault(tag, {})[e.step] = float(e.value)
  return {tag: [[s, v] for s, v in sorted(points.items())] for tag, points in out.items()}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdir")
  parser.add_argument("--prefix", default="")
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  scalars = read_scalars(args.workdir, args.prefix)
  text = json.dumps(scalars, indent=1)
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      f.write(text)
  else:
    print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
