"""Planning a refocusing call: the working size, the attention blocks and the batch that fit.

The photo goes to the model at its working size (`to_working`: downscaled so its longer side is
at most `max_side`, blur scaled with it since K is in pixels, padded to the token grid, focus
moved accordingly). For that shape the `Planner` compiles the sampler ahead of time and reads
its memory plan: attention runs in query blocks sized from the sequence length, and the frames
go through in the largest batch whose program fits the budget.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from diffcamera_jax.inference.families import LoadedModel
from diffcamera_jax.inference.memory import MemoryBudgetError, compiled_bytes
from diffcamera_jax.inference.resize import downscale, pad_to, working_size
from diffcamera_jax.inference.sampler import make_sampler
from diffcamera_jax.models import CAMERA_FEATURES

SCORE_SHARE = 8  # attention scores may take 1/SCORE_SHARE of the budget


@dataclasses.dataclass(frozen=True)
class Plan:
  """How one call runs: the working size, frames per batch, attention blocks, planned bytes."""

  image_hw: tuple[int, int]
  work_hw: tuple[int, int]
  trained_hw: tuple[int, int]
  batch: int
  attention_chunk: int  # 0: all queries at once
  sequence: int
  program_bytes: int
  budget: int
  host_bytes: int = 0  # numpy arrays at the photo's size (`memory.host_bytes`)

  def describe(self) -> str:
    attention = ("unchunked" if not self.attention_chunk
                 else f"in blocks of {self.attention_chunk} queries")
    composed = ("" if self.work_hw == self.image_hw else
                f"; frames composed at {self.image_hw[1]}x{self.image_hw[0]}")
    return (f"working resolution {self.work_hw[1]}x{self.work_hw[0]} (trained at "
            f"{self.trained_hw[1]}x{self.trained_hw[0]}), {self.batch} frame(s) per batch, "
            f"{self.sequence} tokens, attention {attention}, sampler planned at "
            f"{self.program_bytes / 2 ** 30:.2f} GiB of a {self.budget / 2 ** 30:.1f} GiB budget"
            f"{composed}, host arrays {self.host_bytes / 2 ** 30:.2f} GiB")


@dataclasses.dataclass(frozen=True)
class Working:
  """The model's inputs at the working size: photos `[1 or N, hp, wp, 3]` and disparity (or
  None) padded to the token grid, focus `[N, 2]` relative to the padded image, blur `[N]` in
  pixels at the working size, and the working size `hw` before padding."""

  photos: np.ndarray
  disparity: np.ndarray | None
  focus: np.ndarray
  blur: np.ndarray
  hw: tuple[int, int]


def to_working(photos: np.ndarray, disparity: np.ndarray | None, focus: np.ndarray,
               blur: np.ndarray, max_side: int, multiple: int) -> Working:
  """Downscales to the working size and pads to a `multiple` of the token grid."""
  height, width = photos.shape[1:3]
  h, w = working_size(height, width, max_side)
  ref = pad_to(np.clip(downscale(photos, (h, w)), 0.0, 1.0), multiple)
  disp = None
  if disparity is not None:
    disp = pad_to(downscale(np.asarray(disparity, np.float32), (h, w), "nearest"), multiple)
  hp, wp = ref.shape[1:3]
  # Focus (x, y) is relative to the image; the padding sits at the bottom/right.
  focus_w = np.asarray(focus, np.float32) * np.asarray([w / wp, h / hp], np.float32)
  blur_w = np.asarray(blur, np.float32) * np.float32(max(h, w) / max(height, width))
  return Working(ref, disp, focus_w, blur_w, (h, w))


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


class Planner:
  """Compiled samplers of one loaded model, one per (padded size, batch, depth, references)."""

  def __init__(self, loaded: LoadedModel, config: ml_collections.ConfigDict, *,
               trained_hw: tuple[int, int], batch_size: int, budget: int):
    self.loaded, self.config = loaded, config
    self.trained_hw, self.batch_size, self.budget = trained_hw, int(batch_size), int(budget)
    self.on_step: Callable[[], None] = lambda: None
    self._compiled: dict[tuple, tuple[Plan, Any, Callable]] = {}

  def attention_chunk(self, padded_hw: tuple[int, int], batch: int) -> int:
    """Query block size keeping the attention scores within their share of the budget."""
    length, heads = self.loaded.sequence(padded_hw)
    if not length:
      return 0
    share = self.budget // SCORE_SHARE
    if batch * heads * length * length * 4 <= share:
      return 0
    return max(16, 16 * (share // (batch * heads * length * 4) // 16))

  def program(self, image_hw, work_hw, padded_hw, frames: int, depth: bool, references: int
              ) -> tuple[Plan, Any, Callable]:
    """(plan, compiled sampler, argument builder) for a working shape; the batch is the largest
    (up to `batch_size`, at most `frames`) whose compiled memory plan fits the budget."""
    batch = min(self.batch_size, frames)
    while True:
      key = (tuple(padded_hw), batch, depth, references == 1)
      if key not in self._compiled:
        self._compiled[key] = self._compile(padded_hw, batch, depth, references)
      plan, compiled, arguments = self._compiled[key]
      if plan.program_bytes <= self.budget:
        return (dataclasses.replace(plan, image_hw=tuple(image_hw), work_hw=tuple(work_hw)),
                compiled, arguments)
      if batch == 1:
        raise MemoryBudgetError(
            f"the working resolution {work_hw[1]}x{work_hw[0]} needs "
            f"{plan.program_bytes / 2 ** 30:.2f} GiB for one frame, over the "
            f"{self.budget / 2 ** 30:.2f} GiB memory budget: lower max_side (--max-side) or raise "
            f"max_memory (--max-memory)")
      batch = max(1, batch // 2)

  def _compile(self, padded_hw, batch: int, depth: bool, references: int):
    chunk = self.attention_chunk(padded_hw, batch)
    model = self.loaded.model.clone(attention_chunk=chunk) if chunk else self.loaded.model
    sampler = make_sampler(_SteppingModel(model, lambda: self.on_step()), self.loaded.codec,
                           self.config)
    ref = jax.ShapeDtypeStruct((1 if references == 1 else batch, *padded_hw, 3), jnp.float32)
    disp = jax.ShapeDtypeStruct(ref.shape[:3], jnp.float32) if depth else None
    camera = jax.ShapeDtypeStruct((batch, CAMERA_FEATURES), jnp.float32)
    keys = jax.random.split(jax.random.key(0), batch)
    compiled = sampler.compile(self.loaded.params, ref, disp, camera, keys, 1)
    length, _ = self.loaded.sequence(padded_hw)
    plan = Plan(tuple(padded_hw), tuple(padded_hw), self.trained_hw, batch, chunk, length,
                compiled_bytes(compiled), self.budget)
    return plan, compiled, sampler.arguments


def _to_host(x: jax.Array) -> np.ndarray:
  """A (possibly multi-host) array on this host, whole."""
  if jax.process_count() > 1 and not x.is_fully_addressable:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def sample_in_batches(plan: Plan, compiled: Any, arguments: Callable, params: Any,
                      working: Working, camera: np.ndarray, seed: int,
                      num_steps: int) -> np.ndarray:
  """Frames `[N, h, w, 3]` (cropped to the working size) of N cameras `[N, F]`, `plan.batch` at a
  time; frame i's noise comes from `fold_in(key(seed), i)`, so it does not depend on its batch."""
  n = len(camera)
  outputs = []
  for start in range(0, n, plan.batch):
    idx = np.minimum(np.arange(start, start + plan.batch), n - 1)  # pad the last batch
    pick = lambda a: a if a is None or a.shape[0] == 1 else a[idx]
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(seed), jnp.asarray(idx))
    out = compiled(*arguments(params, pick(working.photos), pick(working.disparity),
                              camera[idx], keys, num_steps))
    outputs.append(_to_host(out)[: min(plan.batch, n - start)])
  h, w = working.hw
  return np.concatenate(outputs)[:, :h, :w]


__all__ = ["Plan", "Planner", "Working", "sample_in_batches", "to_working"]
