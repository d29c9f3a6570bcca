"""Per-scene differences with standard errors from `evaluate` results (for the README tables).

    python tools/summarize_results.py OUT/results.json

The summary (per method and task, margins over each baseline with standard errors; under
corrupted depth, margins over the renderer given the same map) is made by
`diffcamera_jax.evaluation.result_summary`.
"""
import argparse

from diffcamera_jax.evaluation.result_summary import summarize

if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("results")
  print(summarize(parser.parse_args().results))
