"""How far a model's restoration stage corrects inaccurate depth maps, on validation scenes.

    python tools/refine_depth_check.py MODEL [NUM_SCENES]

For each corruption of `evaluation/depth_corruption.py` (and the true map), the mean absolute
error against the true disparity of the map given and of the stage's disparity output, and their
mean difference. Scenes come from the validation seed (`config.eval.procedural_seed`, 20 000),
never the benchmark's.
"""
from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

from diffcamera_jax.configs import default as default_config
from diffcamera_jax.evaluation import benchmark, depth_corruption
from diffcamera_jax.exported import load_exported
from diffcamera_jax.models import build_model


def check(model_dir: str, num_scenes: int = 32, size: int = 64) -> dict[str, dict[str, float]]:
  """`{kind: {"given_err", "refined_err", "change"}}`, kinds "none" (the true map), the
  corruptions, and "photo only" (no map: `refined_err` of the estimate from the photo alone)."""
  config, params = load_exported(model_dir)
  model, _ = build_model(config)
  seed = int(default_config.get_config().eval.procedural_seed)
  scenes = benchmark.procedural_scenes(num_scenes, size, size, seed=seed)
  images = jnp.asarray(np.stack([s.image for s in scenes]), jnp.float32)
  true = np.stack([s.disparity for s in scenes]).astype(np.float32)
  keep = jnp.ones((num_scenes,), bool)
  restore = jax.jit(lambda d: model.apply({"params": params}, images, d, keep,
                                          method="restore")[1])
  out = {}
  for kind in ("none",) + tuple(depth_corruption.CORRUPTIONS):
    given = true if kind == "none" else depth_corruption.corrupt(true, kind)
    refined = np.asarray(restore(jnp.asarray(given)))
    out[kind] = {"given_err": float(np.abs(given - true).mean()),
                 "refined_err": float(np.abs(refined - true).mean()),
                 "change": float(np.abs(refined - given).mean())}
  alone = jax.jit(lambda: model.apply({"params": params}, images, None, ~keep,
                                      method="restore")[1])()
  out["photo only"] = {"refined_err": float(np.abs(np.asarray(alone) - true).mean())}
  return out


def main(argv: list[str]) -> int:
  if not 1 <= len(argv) <= 2:
    print(__doc__.splitlines()[2].strip(), file=sys.stderr)
    return 2
  for kind, errors in check(argv[0], int(argv[1]) if len(argv) > 1 else 32).items():
    print(kind, " ".join(f"{k} {v:.5f}" for k, v in errors.items()))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
