"""Disparity maps for photos that have none: `DepthEstimator` runs Depth Anything V2 in batches.

    estimator = DepthEstimator.load("Depth-Anything-V2-Small-hf/")     # or a .safetensors file
    disparity = estimator.estimate(photo)            # [H, W] in [0, 1], 1 = nearest
    maps = estimator.estimate_many(photos)           # any sizes; batched per network size

Pre-processing is the reference one: the photo is resized keeping its aspect ratio, by the
smaller change of scale that brings one side to 518 px (both sides then rounded to a multiple of
14; a large photo's shorter side becomes 518), bicubic with
antialiasing (Pillow, as the `transformers` processor), then normalised with the ImageNet mean and
std. The network runs jitted on the accelerator, one compiled program per network size and batch.
Post-processing: relative models predict inverse depth up to scale and shift, metric models depth
(inverted here); each map is resized (bicubic) to the photo's size and normalised robustly, its
1st and 99th percentiles mapped to 0 and 1 and clipped, so a few sky or specular pixels cannot
compress the rest and the map spans exactly [0, 1].
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from diffcamera_jax.depth import layout as layouts
from diffcamera_jax.depth.model import DepthAnything, DepthAnythingConfig
from diffcamera_jax.weights import loader
from diffcamera_jax.weights.safetensors_io import SafetensorsCheckpoint

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
INPUT_SIZE = 518
LOW_PERCENTILE, HIGH_PERCENTILE = 1.0, 99.0


def network_size(height: int, width: int, target: int = INPUT_SIZE,
                 multiple: int = 14) -> tuple[int, int]:
  """The reference resize: scale as little as possible so one side reaches `target`, keep the
  aspect ratio, round each side to a multiple of `multiple` (Python's rounding, as in
  `transformers`' DPT processor)."""
  scale_h, scale_w = target / height, target / width
  scale = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h
  return (max(multiple, round(scale * height / multiple) * multiple),
          max(multiple, round(scale * width / multiple) * multiple))


def _resize_plane(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Bicubic resize of one float plane `[H, W]` to `size` (h, w), antialiased when shrinking."""
  if plane.shape == tuple(size):
    return plane.astype(np.float32)
  img = Image.fromarray(np.ascontiguousarray(plane, np.float32), mode="F")
  return np.asarray(img.resize((size[1], size[0]), Image.Resampling.BICUBIC), np.float32)


def preprocess(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Photo `[H, W, 3]` in [0, 1] -> normalised network input `[h, w, 3]`."""
  resized = np.stack([_resize_plane(image[..., c], size) for c in range(3)], axis=-1)
  return (np.clip(resized, 0.0, 1.0) - IMAGENET_MEAN) / IMAGENET_STD


def to_disparity(prediction: jnp.ndarray, metric: bool) -> jnp.ndarray:
  """Network output -> inverse depth (larger = nearer): metric depth is inverted."""
  return 1.0 / jnp.maximum(prediction, 1e-6) if metric else prediction


def normalize_disparity(disparity: np.ndarray) -> np.ndarray:
  """Inverse depth `[H, W]` (any scale and shift) -> [0, 1], robustly: the 1st and 99th
  percentiles map to 0 and 1 and the rest is clipped, so the map spans exactly [0, 1] and a few
  extreme pixels cannot compress it. A flat map becomes all zeros."""
  lo, hi = np.percentile(disparity, [LOW_PERCENTILE, HIGH_PERCENTILE])
  if not hi - lo > 1e-6 * max(abs(hi), 1.0):
    return np.zeros(disparity.shape, np.float32)
  return np.clip((disparity - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


class DepthEstimator:
  """A loaded Depth Anything model: photos -> disparity maps at the photos' own sizes."""

  def __init__(self, config: DepthAnythingConfig, params, *, dtype=jnp.float32,
               batch_size: int = 4, input_size: int = INPUT_SIZE, name: str = "depth model"):
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if input_size < config.patch_size:
      raise ValueError(f"input_size must be >= {config.patch_size}, got {input_size}")
    self.config, self.params, self.name = config, params, name
    self.batch_size, self.input_size = int(batch_size), int(input_size)
    self.model = DepthAnything(config, dtype=jnp.dtype(dtype))
    metric = config.depth_estimation_type == "metric"
    self._run = jax.jit(lambda p, x: to_disparity(self.model.apply({"params": p}, x), metric))
    self._raw = jax.jit(lambda p, x: self.model.apply({"params": p}, x))

  @classmethod
  def load(cls, path: str | os.PathLike, *, variant: str = "auto", layout: str = "auto",
           **kwargs) -> "DepthEstimator":
    """Loads `path` (a `.safetensors` file, a sharded index, or a folder holding one, e.g. a
    Hugging Face download with its `config.json`). `variant` forces the sizes of a released
    model ("small", "base", "large"); a checkpoint of another size is then rejected with the
    tensors that differ. Raises FileNotFoundError or ValueError naming the file."""
    path = os.fspath(path)
    if not os.path.exists(path):
      raise FileNotFoundError(f"depth model weights {path}: no such file or folder")
    ckpt = SafetensorsCheckpoint(path)
    detected = layouts.detect_layout(ckpt.names())
    if layout not in ("auto", detected):
      raise ValueError(f"{ckpt.path}: layout {layout!r} requested but the tensors are in the "
                       f"{detected!r} layout")
    config = layouts.infer_config(ckpt, detected, variant)
    abstract = jax.eval_shape(
        lambda: DepthAnything(config).init(jax.random.key(0), jnp.zeros(
            (1, config.patch_size * 2, config.patch_size * 2, 3)))["params"])
    flat = loader.flatten(abstract)
    recipes = layouts.recipes({p: tuple(v.shape) for p, v in flat.items()}, detected,
                              len(config.neck_hidden_sizes))
    params = loader.load_params(ckpt, recipes, abstract, allow_unused=layouts.unused_tensor)
    return cls(config, params, name=ckpt.path, **kwargs)

  def predict(self, pixels: np.ndarray) -> np.ndarray:
    """The network's raw output `[B, h, w]` for normalised pixels `[B, h, w, 3]`."""
    return np.asarray(self._raw(self.params, jnp.asarray(pixels, jnp.float32)))

  def estimate(self, image: np.ndarray) -> np.ndarray:
    """Disparity `[H, W]` in [0, 1] (1 = nearest) of one photo `[H, W, 3]` in [0, 1]."""
    return self.estimate_many([image])[0]

  def estimate_many(self, images: Sequence[np.ndarray],
                    on_image: Callable[[], None] | None = None) -> list[np.ndarray]:
    """Disparity maps of photos of any sizes, in order. Photos with the same network size run
    together in batches of `batch_size` (the last batch padded, so each size compiles once);
    `on_image` is called once per photo done."""
    images = [self._check(i, image) for i, image in enumerate(images)]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
      groups.setdefault(network_size(*image.shape[:2], self.input_size,
                                     self.config.patch_size), []).append(i)
    out: list[np.ndarray | None] = [None] * len(images)
    for size, members in groups.items():
      for start in range(0, len(members), self.batch_size):
        chunk = members[start:start + self.batch_size]
        batch = np.stack([preprocess(images[i], size) for i in chunk])
        if len(chunk) < self.batch_size and len(members) > self.batch_size:
          batch = np.concatenate([batch, np.repeat(batch[-1:], self.batch_size - len(chunk), 0)])
        maps = np.asarray(self._run(self.params, jnp.asarray(batch)))
        if not np.all(np.isfinite(maps[: len(chunk)])):
          raise ValueError(f"{self.name}: the depth model produced NaN/inf (broken weights?)")
        for i, disparity in zip(chunk, maps):
          out[i] = normalize_disparity(_resize_plane(disparity, images[i].shape[:2]))
          if on_image is not None:
            on_image()
    return out  # type: ignore[return-value]

  @staticmethod
  def _check(index: int, image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 1:
      raise ValueError(f"photo {index}: expected [H, W, 3], got shape {image.shape}")
    if not np.all(np.isfinite(image)):
      raise ValueError(f"photo {index}: contains NaN/inf values")
    return image


def load_depth_model(path: str | os.PathLike | None, **kwargs) -> DepthEstimator | None:
  """`DepthEstimator.load(path)` with errors as one-line ValueErrors naming the flag's file;
  None for None (the CLIs' `--depth-model`)."""
  if path is None:
    return None
  try:
    return DepthEstimator.load(path, **kwargs)
  except (FileNotFoundError, KeyError, ValueError) as e:
    from diffcamera_jax.cli import one_line
    raise ValueError(f"--depth-model {os.fspath(path)}: {one_line(str(e), limit=8)}") from None


