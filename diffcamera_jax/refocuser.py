"""`Refocuser`: load an exported model once, refocus photos of any size many times.

    r = Refocuser.load("exported/")
    frames = r.refocus(image, focus=[(0.3, 0.7), (0.8, 0.2)], blur=12.0)   # [2, H, W, 3]

The model sees the photo at a working resolution: photos whose longer side exceeds `max_side` are
downscaled (blur scaled with them, since K is in pixels) and the result is upscaled back, and the
working image is padded (reflect) to a multiple of the model's patch grid, with the focus point
moved accordingly, then cropped. The output always has the input's size. All focus/blur
combinations of one call go through the jitted sampler in batches of `batch_size` (the last batch
padded, so one compiled program serves every call of the same image size).
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from diffcamera_jax import optics
from diffcamera_jax.models import build_model, camera_features
from diffcamera_jax.sampling import make_sampler


class _SteppingModel:
  """Forwards `apply` to the model and reports each sampler step to the host (progress bars)."""

  def __init__(self, model, on_step: Callable[[], None]):
    self._model, self._on_step = model, on_step

  def __getattr__(self, name):
    return getattr(self._model, name)

  def apply(self, *args, **kwargs):
    if kwargs.get("method") is None:  # a denoising step, not the restoration stage
      jax.debug.callback(lambda: self._on_step())
    return self._model.apply(*args, **kwargs)


def check_cameras(focus: np.ndarray, blur: np.ndarray) -> None:
  """Raises ValueError naming the argument unless focus `[N, 2]` is in [0, 1]^2 and blur `[N]` >= 0."""
  if focus.ndim != 2 or focus.shape[-1] != 2 or len(focus) == 0:
    raise ValueError(f"focus must be (x, y) or a list of (x, y), got shape {focus.shape}")
  if not np.all(np.isfinite(focus)) or focus.min() < 0 or focus.max() > 1:
    raise ValueError(f"focus must lie in [0, 1]^2 (x right, y down), got {focus.tolist()}")
  if blur.ndim != 1 or len(blur) == 0:
    raise ValueError(f"blur must be a number or a list of numbers, got shape {blur.shape}")
  if not np.all(np.isfinite(blur)) or blur.min() < 0:
    raise ValueError(f"blur must be finite and >= 0 (pixels), got {blur.tolist()}")


def camera_grid(focus, blur) -> tuple[np.ndarray, np.ndarray]:
  """All (focus, blur) combinations, focus-major: `[N, 2]`, `[N]` (validated)."""
  f = np.asarray(focus, np.float32)
  f = f[None] if f.ndim == 1 else f
  k = np.atleast_1d(np.asarray(blur, np.float32))
  check_cameras(f, k)
  return np.repeat(f, len(k), axis=0), np.tile(k, len(f))


def _pad_to(x: np.ndarray, multiple: int) -> np.ndarray:
  """Pads axes 1, 2 (H, W) at the bottom/right to a multiple (reflect where it fits, else edge)."""
  h, w = x.shape[1:3]
  ph, pw = -h % multiple, -w % multiple
  pad = [(0, 0), (0, ph), (0, pw)] + [(0, 0)] * (x.ndim - 3)
  mode = "reflect" if ph < h and pw < w else "edge"
  return np.pad(x, pad, mode=mode)


class Refocuser:
  """A loaded refocusing model: `refocus(image, focus, blur, ...)` -> frames `[N, H, W, 3]`."""

  def __init__(self, config: ml_collections.ConfigDict, params: Any, *, max_side: int = 512,
               batch_size: int = 8, num_steps: int | None = None):
    if max_side < 8:
      raise ValueError(f"max_side must be >= 8 pixels, got {max_side}")
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    self.config, self.params = config, params
    self.max_side, self.batch_size = int(max_side), int(batch_size)
    self.num_steps = int(num_steps or config.objective.sample_steps)
    self._model, self._codec = build_model(config)
    self._multiple = self._codec.downsample * int(config.model.patch_size)
    self._on_step: Callable[[], None] = lambda: None
    stepping = _SteppingModel(self._model, lambda: self._on_step())
    self._sample = make_sampler(stepping, self._codec, config)

  @classmethod
  def load(cls, model_dir: str, **kwargs) -> "Refocuser":
    """Loads an exported model directory (`diffcamera_jax.export`)."""
    from diffcamera_jax.export import load_exported  # orbax is only needed here
    config, params = load_exported(model_dir)
    return cls(config, params, **kwargs)

  # ---------------------------------------------------------------------------- public calls

  def refocus(self, image: np.ndarray, focus, blur, *, disparity: np.ndarray | None = None,
              blades: int = 0, rotation: float = 0.0, num_steps: int | None = None,
              seed: int = 0, on_step: Callable[[], None] | None = None) -> np.ndarray:
    """Refocuses one photo for every (focus, blur) combination: returns `[N, H, W, 3]` in [0, 1].

    `image` `[H, W, 3]` in [0, 1]; `focus` (x, y) or a list of them; `blur` K (pixels at this
    image's size) or a list; frames are ordered focus-major. `disparity` `[H, W]` in [0, 1]
    (1 = near) or None for the no-depth path. `on_step` is called once per sampler step.
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
      raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
    points, levels = camera_grid(focus, blur)
    return self.sample(image[None], None if disparity is None else np.asarray(disparity)[None],
                       points, levels, blades=blades, rotation=rotation, num_steps=num_steps,
                       seed=seed, on_step=on_step)

  __call__ = refocus

  def sample(self, reference: np.ndarray, disparity: np.ndarray | None, focus: np.ndarray,
             blur: np.ndarray, *, blades: int = 0, rotation: float = 0.0,
             num_steps: int | None = None, seed: int = 0,
             on_step: Callable[[], None] | None = None) -> np.ndarray:
    """Batched form: references `[1 or N, H, W, 3]`, disparity like it or None, focus `[N, 2]`,
    blur `[N]` -> `[N, H, W, 3]`. Validates on the host first (errors name the argument)."""
    reference = np.asarray(reference, np.float32)
    focus, blur = np.asarray(focus, np.float32), np.asarray(blur, np.float32)
    n = len(focus)
    if reference.ndim != 4 or reference.shape[0] not in (1, n):
      raise ValueError(f"reference must be [1 or {n}, H, W, 3], got shape {reference.shape}")
    if disparity is not None and np.shape(disparity) != reference.shape[:-1]:
      raise ValueError(f"disparity must have shape {reference.shape[:-1]} to match the image, got "
                       f"{np.shape(disparity)}")
    optics.validate(reference, np.zeros(reference.shape[:-1]) if disparity is None else disparity,
                    aperture=optics.Aperture(blades, rotation))
    check_cameras(focus, blur)
    if len(blur) != n:
      raise ValueError(f"blur must be [{n}] like focus, got shape {blur.shape}")
    steps = int(num_steps or self.num_steps)
    if steps < 1:
      raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    height, width = reference.shape[1:3]
    ref, disp, focus_w, blur_w, work_hw = self._to_working(reference, disparity, focus, blur)
    blades_n = np.full((n,), int(blades), np.int32)
    rotation_n = np.full((n,), float(rotation), np.float32)
    camera = np.asarray(camera_features(focus_w, blur_w, ref.shape[1:3], blades_n, rotation_n))
    outputs = []
    self._on_step = on_step or (lambda: None)
    try:
      for start in range(0, n, self.batch_size):
        idx = np.minimum(np.arange(start, start + self.batch_size), n - 1)  # pad the last batch
        pick = (lambda a: a if a is None or a.shape[0] == 1 else a[idx])
        rng = jax.random.fold_in(jax.random.key(seed), start)
        out = self._sample(self.params, pick(ref), pick(disp), camera[idx], rng, steps)
        outputs.append(np.asarray(out)[: min(self.batch_size, n - start)])
    finally:
      self._on_step = lambda: None
    frames = np.concatenate(outputs)[:, : work_hw[0], : work_hw[1]]
    if work_hw != (height, width):
      frames = np.asarray(jax.image.resize(jnp.asarray(frames), (n, height, width, 3), "cubic"))
    return np.clip(frames, 0.0, 1.0)

  def as_method(self, *, use_depth: bool = True, num_steps: int | None = None, seed: int = 0):
    """This model as a benchmark method `(reference, disparity, focus, blur) -> images`."""
    def method(reference, disparity, focus, blur):
      return self.sample(reference, disparity if use_depth else None, focus, blur,
                         num_steps=num_steps, seed=seed)
    return method

  # ---------------------------------------------------------------------------- internals

  def _to_working(self, reference, disparity, focus, blur):
    """Downscales to `max_side`, pads to the patch grid; returns the adjusted inputs + (h, w)."""
    height, width = reference.shape[1:3]
    scale = min(1.0, self.max_side / max(height, width))
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    ref, disp = reference, None if disparity is None else np.asarray(disparity, np.float32)
    if (h, w) != (height, width):
      ref = np.asarray(jax.image.resize(ref, (ref.shape[0], h, w, 3), "linear", antialias=True))
      if disp is not None:
        disp = np.asarray(jax.image.resize(disp, (disp.shape[0], h, w), "nearest"))
    ref = _pad_to(np.clip(ref, 0.0, 1.0), self._multiple)
    disp = None if disp is None else _pad_to(disp, self._multiple)
    hp, wp = ref.shape[1:3]
    # Focus (x, y) is relative to the image; the padding sits at the bottom/right.
    focus_w = focus * np.asarray([w / wp, h / hp], np.float32)
    blur_w = blur * np.float32(max(h, w) / max(height, width))
    return ref, disp, focus_w, blur_w, (h, w)
