"""The refocusing benchmark: fixed scenes, three tasks with exact ground truth, any method.

Scenes are the 150 held-out procedural scenes (`data_pipeline.procedural.BENCHMARK_SEED`, never used
in training) or a user folder of all-in-focus images with depth maps. For each scene two focus
points A and B on clearly different depths and a blur level K are drawn deterministically from the
scene's index, and the optics renderer produces the ground truth:

| task      | input (reference)            | requested camera | ground truth            |
|-----------|------------------------------|------------------|-------------------------|
| `bokeh`   | all-in-focus image           | (A, K)           | render(A, K)            |
| `deblur`  | render(A, K)                 | (A, 0)           | all-in-focus image      |
| `refocus` | render(A, K)                 | (B, K)           | render(B, K)            |

plus the stacking check (outputs at (A, K) and (B, K) from the all-in-focus input, blended by the
nearer-plane mask, vs `render_multifocus(A, B, K)`) and an LVCorr blur sweep (all-in-focus input,
focus A, K from 0 to the top of the blur range). For a folder, the ground truth is the classical
render of the given image and depth (exact for the renderer's own physics, not for the real scene).

A *method* is any callable `(reference [B,H,W,3], disparity [B,H,W], focus [B,2], blur [B]) ->
[B,H,W,3]` on numpy arrays; `identity_method` and `renderer_method` are the two baselines.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from data_pipeline import procedural
from data_pipeline.cameras import blur_pixels
from diffcamera_jax import imageio, optics
from diffcamera_jax.objective.example import stack_mask
from diffcamera_jax.evaluation import metrics as metrics_lib

TASKS = ("bokeh", "deblur", "refocus")
PSNR_CAP = 100.0  # dB; exact reproductions (infinite PSNR) count as this when averaging
Method = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Scene:
  """One benchmark scene: all-in-focus sRGB image `[H, W, 3]` and disparity `[H, W]` (1 = near)."""
  name: str
  image: np.ndarray
  disparity: np.ndarray


@dataclasses.dataclass(frozen=True)
class BenchmarkSpec:
  """What is measured. Blur values are CoC radii in pixels at a longer side of `reference_size`."""
  blur_range: tuple[float, float] = (12.0, 32.0)
  sweep_max_blur: float = 40.0
  sweep_levels: int = 5
  reference_size: int = 512
  gamma: float = 2.2
  seed: int = 0  # camera draws; scenes have their own seed

  def __post_init__(self):
    lo, hi = self.blur_range
    if not 0 < lo <= hi:
      raise ValueError(f"blur_range must satisfy 0 < low <= high, got {self.blur_range}")
    if self.sweep_levels < 2:
      raise ValueError(f"sweep_levels must be >= 2, got {self.sweep_levels}")
    if self.sweep_max_blur <= 0:
      raise ValueError(f"sweep_max_blur must be > 0, got {self.sweep_max_blur}")

  def pixels(self, value: float, height: int, width: int) -> float:
    """A blur given at `reference_size` in pixels at an image of this size."""
    return blur_pixels(value, (height, width), self.reference_size)

  def sweep(self, height: int, width: int) -> np.ndarray:
    """Blur levels `[sweep_levels]` of the LVCorr sweep, in pixels at this size."""
    return np.linspace(0.0, self.pixels(self.sweep_max_blur, height, width),
                       self.sweep_levels).astype(np.float32)


# ------------------------------------------------------------------------------------ scenes


def procedural_scenes(num_scenes: int, height: int, width: int,
                      seed: int = procedural.BENCHMARK_SEED) -> list[Scene]:
  """The first `num_scenes` (<= 150) held-out procedural scenes at `height` x `width`."""
  if not 1 <= num_scenes <= procedural.BENCHMARK_NUM_SCENES:
    raise ValueError(f"num_scenes must be in [1, {procedural.BENCHMARK_NUM_SCENES}], got {num_scenes}")
  out = []
  for i in range(num_scenes):
    image, disparity = procedural.make_scene(seed, i, height, width)
    out.append(Scene(f"scene_{i:03d}", image, disparity))
  return out


def _fit(array: np.ndarray, height: int, width: int, method: str) -> np.ndarray:
  """Centre-crops to the target aspect ratio, then resizes (antialiased when shrinking)."""
  h, w = array.shape[:2]
  if h * width > w * height:  # too tall
    ch, cw = max(1, round(w * height / width)), w
  else:
    ch, cw = h, max(1, round(h * width / height))
  y, x = (h - ch) // 2, (w - cw) // 2
  crop = array[y:y + ch, x:x + cw]
  shape = (height, width) + crop.shape[2:]
  return np.asarray(jax.image.resize(jnp.asarray(crop), shape, method, antialias=True), np.float32)


def _depth_partner(folder: str, stem: str) -> tuple[str, str] | None:
  for kind in ("depth", "disparity"):
    for ext in imageio.DEPTH_EXTENSIONS:
      path = os.path.join(folder, f"{stem}_{kind}{ext}")
      if os.path.isfile(path):
        return path, kind
  return None


def folder_scenes(folder: str, height: int, width: int, depth_model=None) -> list[Scene]:
  """Image + depth pairs from `folder`, cropped and resized to `height` x `width`.

  Each image `NAME.{png,jpg,...}` needs `NAME_depth.{png,npy,tif}` (larger = farther) or
  `NAME_disparity.{...}` (larger = nearer) beside it, or a `depth_model`
  (`diffcamera_jax.depth.DepthEstimator`) estimates it at the photo's size; images are taken as
  all-in-focus.
  """
  if not os.path.isdir(folder):
    raise ValueError(f"folder {folder} does not exist")
  names = sorted(f for f in os.listdir(folder) if f.lower().endswith(imageio.IMAGE_EXTENSIONS))
  images = [f for f in names if not os.path.splitext(f)[0].endswith(("_depth", "_disparity"))]
  if not images:
    raise ValueError(f"folder {folder} holds no images ({', '.join(imageio.IMAGE_EXTENSIONS)})")
  scenes = []
  for name in images:
    stem = os.path.splitext(name)[0]
    partner = _depth_partner(folder, stem)
    if partner is None and depth_model is None:
      raise ValueError(f"image {os.path.join(folder, name)} has no depth map "
                       f"({stem}_depth.png/.npy or {stem}_disparity.png/.npy; or pass a depth "
                       "model, --depth-model)")
    image = imageio.load_image(os.path.join(folder, name))
    if partner is None:
      disparity = depth_model.estimate(image)
      partner = (f"{os.path.join(folder, name)} (estimated depth)", "disparity")
    else:
      disparity = imageio.load_disparity(partner[0], kind=partner[1])
    if disparity.shape != image.shape[:2]:
      raise ValueError(f"depth file {partner[0]} is {disparity.shape[::-1]} (W, H) but its image is "
                       f"{image.shape[1::-1]}")
    scenes.append(Scene(stem, np.clip(_fit(image, height, width, "cubic"), 0, 1),
                        _fit(disparity, height, width, "nearest")))
  return scenes


# ------------------------------------------------------------------------------------ cameras


@dataclasses.dataclass(frozen=True)
class Cameras:
  """Per-scene cameras `[B, ...]`: focus points A, B (x, y), their disparities, blur K (pixels)."""
  focus_a: np.ndarray
  focus_b: np.ndarray
  disparity_a: np.ndarray
  disparity_b: np.ndarray
  blur: np.ndarray


def draw_cameras(scenes: list[Scene], indices: Iterable[int], spec: BenchmarkSpec,
                 candidates: int = 16) -> Cameras:
  """Deterministic cameras: A is a random point, B the candidate whose depth differs most from A."""
  focus_a, focus_b, blur = [], [], []
  for scene, index in zip(scenes, indices):
    rng = np.random.default_rng([spec.seed, int(index)])
    points = rng.uniform(0.1, 0.9, size=(candidates, 2)).astype(np.float32)
    d = np.asarray(optics.focus_disparity(np.broadcast_to(scene.disparity, (candidates,) +
                                                          scene.disparity.shape), points))
    focus_a.append(points[0])
    focus_b.append(points[int(np.argmax(np.abs(d - d[0])))])
    h, w = scene.disparity.shape
    blur.append(spec.pixels(rng.uniform(*spec.blur_range), h, w))
  disparity = np.stack([s.disparity for s in scenes])
  fa, fb = np.stack(focus_a), np.stack(focus_b)
  return Cameras(fa, fb, np.asarray(optics.focus_disparity(disparity, fa)),
                 np.asarray(optics.focus_disparity(disparity, fb)), np.asarray(blur, np.float32))


# ------------------------------------------------------------------------------------ methods


def identity_method(reference, disparity, focus, blur) -> np.ndarray:
  """Baseline: return the input unchanged."""
  del disparity, focus, blur
  return np.asarray(reference)


def make_renderer_method(gamma: float = 2.2) -> Method:
  """Baseline: the classical renderer applied to the (possibly defocused) input with true depth."""
  render = jax.jit(lambda ref, d, f, k: optics.render(ref, d, optics.focus_disparity(d, f), k,
                                                      gamma=gamma))

  def renderer_method(reference, disparity, focus, blur) -> np.ndarray:
    return np.asarray(render(reference, disparity, focus, blur))
  return renderer_method


# ------------------------------------------------------------------------------------ scoring


@jax.jit
def _scores(output, target):
  return jnp.minimum(metrics_lib.psnr(output, target), PSNR_CAP), metrics_lib.ssim(output, target)


_focus_hits = jax.jit(jax.vmap(metrics_lib.focus_accuracy))


_render = jax.jit(optics.render, static_argnames=("gamma",))
_render_multifocus = jax.jit(optics.render_multifocus, static_argnames=("gamma",))


@dataclasses.dataclass
class GroundTruth:
  """Exact renders of one batch of scenes for every task."""
  image: np.ndarray
  disparity: np.ndarray
  cameras: Cameras
  render_a: np.ndarray
  render_b: np.ndarray
  multifocus: np.ndarray
  mask: np.ndarray


def ground_truth(scenes: list[Scene], indices: Iterable[int], spec: BenchmarkSpec) -> GroundTruth:
  """Renders the targets of all tasks for a batch of same-size scenes."""
  image = np.stack([s.image for s in scenes])
  disparity = np.stack([s.disparity for s in scenes])
  cams = draw_cameras(scenes, indices, spec)
  render = lambda d_f: np.asarray(_render(image, disparity, d_f, cams.blur, gamma=spec.gamma))
  multifocus = _render_multifocus(image, disparity, cams.disparity_a, cams.disparity_b, cams.blur,
                                  gamma=spec.gamma)
  mask = stack_mask(disparity, cams.disparity_a, cams.disparity_b)
  return GroundTruth(image, disparity, cams, render(cams.disparity_a), render(cams.disparity_b),
                     np.asarray(multifocus), np.asarray(mask))


def task_request(gt: GroundTruth, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(reference, focus, blur, target) of `task` for a ground-truth batch."""
  c = gt.cameras
  if task == "bokeh":
    return gt.image, c.focus_a, c.blur, gt.render_a
  if task == "deblur":
    return gt.render_a, c.focus_a, np.zeros_like(c.blur), gt.image
  if task == "refocus":
    return gt.render_a, c.focus_b, c.blur, gt.render_b
  raise ValueError(f"task must be one of {TASKS}, got {task!r}")


Metric = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (outputs, targets) [B, H, W, 3] -> [B]


def score_batch(method: Method, gt: GroundTruth, spec: BenchmarkSpec,
                metrics: dict[str, Metric] | None = None) -> tuple[dict, dict]:
  """Runs `method` on every task of one batch; returns (per-scene scores, outputs by task).
  Each of `metrics` adds a `{task}/{name}` score of the outputs against the targets."""
  scores, outputs = {}, {}
  for task in TASKS:
    reference, focus, blur, target = task_request(gt, task)
    out = np.asarray(method(reference, gt.disparity, focus, blur), np.float32)
    if out.shape != target.shape:
      raise ValueError(f"method returned shape {out.shape} for task {task}, expected {target.shape}")
    p, s = _scores(out, target)
    scores[f"{task}/psnr"], scores[f"{task}/ssim"] = np.asarray(p), np.asarray(s)
    for name, metric in (metrics or {}).items():
      scores[f"{task}/{name}"] = np.asarray(metric(out, target), np.float32)
    if task != "deblur":
      d_f = gt.cameras.disparity_a if task == "bokeh" else gt.cameras.disparity_b
      scores[f"{task}/focus_accuracy"] = np.asarray(_focus_hits(out, gt.image, gt.disparity, d_f))
    outputs[task] = out
  out_b = np.asarray(method(gt.image, gt.disparity, gt.cameras.focus_b, gt.cameras.blur), np.float32)
  blend = metrics_lib.stacking_consistency(outputs["bokeh"], out_b, gt.mask, gt.multifocus)
  scores["stacking/psnr"] = np.minimum(np.asarray(blend), PSNR_CAP)
  levels = spec.sweep(*gt.image.shape[1:3])
  sweep = np.stack([method(gt.image, gt.disparity, gt.cameras.focus_a,
                           np.full_like(gt.cameras.blur, k)) for k in levels], axis=1)
  scores["sweep/lvcorr"] = np.asarray(metrics_lib.lvcorr(levels, sweep))
  scores["sweep/lvcorr_pearson_log"] = np.asarray(metrics_lib.lvcorr(levels, sweep,
                                                                 method="pearson_log"))
  log_lv = np.log(np.asarray(metrics_lib.laplacian_variance(sweep)) + 1e-10)
  scores["sweep/log_lv_drop"] = log_lv - log_lv[:, :1]  # [B, levels]: 0 at K = 0
  outputs["sweep"] = sweep
  return scores, outputs


def summarize(per_scene: dict[str, np.ndarray]) -> dict[str, float | list[float]]:
  """Means over scenes, ignoring undefined (NaN) scores; the sweep curve stays a list over levels."""
  return {k: (np.nanmean(v, 0).tolist() if v.ndim > 1 else float(np.nanmean(v)))
          for k, v in per_scene.items()}


def run(method: Method, scenes: list[Scene], spec: BenchmarkSpec = BenchmarkSpec(), *,
        batch_size: int = 8, num_examples: int = 4,
        metrics: dict[str, Metric] | None = None,
        progress: Callable[[Iterable], Iterable] = lambda x: x) -> dict:
  """Scores `method` on `scenes`; returns {'summary', 'per_scene', 'examples'} (examples: arrays).

  `examples[task]` holds the outputs of the first `num_examples` scenes (for report grids).
  `metrics` (e.g. LPIPS, CLIP-I) are scored on every task beside PSNR and SSIM.
  """
  if not scenes:
    raise ValueError("scenes: need at least one scene")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  per_scene: dict[str, list] = {}
  examples: dict[str, list] = {}
  starts = list(range(0, len(scenes), batch_size))
  for start in progress(starts):
    batch = scenes[start:start + batch_size]
    gt = ground_truth(batch, range(start, start + len(batch)), spec)
    scores, outputs = score_batch(method, gt, spec, metrics)
    for k, v in scores.items():
      per_scene.setdefault(k, []).append(v)
    for k, v in outputs.items():
      examples.setdefault(k, []).extend(v[:max(0, num_examples - start)])
  stacked = {k: np.concatenate(v) for k, v in per_scene.items()}
  return {"summary": summarize(stacked),
          "per_scene": {k: v.tolist() for k, v in stacked.items()},
          "examples": {k: np.stack(v) for k, v in examples.items() if v}}


def example_inputs(scenes: list[Scene], spec: BenchmarkSpec, num_examples: int) -> dict:
  """Inputs and ground truth of the first scenes for report grids (method-independent)."""
  n = min(num_examples, len(scenes))
  gt = ground_truth(scenes[:n], range(n), spec)
  out = {}
  for task in TASKS:
    reference, _, _, target = task_request(gt, task)
    out[task] = {"input": reference, "target": target}
  out["disparity"] = gt.disparity
  return out
