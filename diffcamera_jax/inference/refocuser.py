"""`Refocuser`: load an exported model once, refocus photos of any size many times.

    r = Refocuser.load("exported/")
    frames = r.refocus(image, focus=[(0.3, 0.7), (0.8, 0.2)], blur=12.0)   # [2, H, W, 3]
    print(r.plan_for(image.shape[:2], 2).describe())

The model works at a working resolution: by default the one it was trained at (the export's
`data.image_size`; `max_side` overrides it). Larger photos are downscaled for the model (blur
scaled with them, since K is in pixels) and padded (reflect) to the patch grid, with the focus
point moved accordingly. The frames come back at the photo's own size, composed by
`full_resolution.compose`: the model's working-resolution frame plus the finer band of the
classical renderer's frame at full resolution (with the given disparity, or the model's own
estimate upsampled), so regions kept in focus keep the photo's pixels and blurred regions are
blurred at full resolution (`full_resolution=False`: the working frame upscaled instead).

Memory is planned, not guessed: for each working size the sampler is compiled ahead of time and
its memory plan read; attention runs in query blocks sized from the sequence length, and the
frames of one call go through in batches that fit `max_memory` (default: 80 % of the
accelerator's memory, half of the free host memory on a CPU). The full-resolution render runs
in strips when one frame does not fit.

Photos without a disparity map get one from `depth_model` when given (Depth Anything V2,
`diffcamera_jax.depth`). A FLUX export rebuilds its frozen base from the paths its config records
(`base_weights` / `vae_weights` override them; `fold_lora` folds the adapters in).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from diffcamera_jax.inference import full_resolution as fullres
from diffcamera_jax.inference import physics_deblur
from diffcamera_jax import optics
from diffcamera_jax.cli import MAX_BLUR, MAX_FRAMES
from diffcamera_jax.models import CAMERA_FEATURES, build_model, camera_features
from diffcamera_jax.inference.sampler import make_sampler

_SCORE_SHARE = 8  # attention scores may take 1/_SCORE_SHARE of the budget


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
  """Raises ValueError naming the argument unless focus `[N, 2]` is in [0, 1]^2 and blur `[N]` in
  [0, `cli.MAX_BLUR`]."""
  if focus.ndim != 2 or focus.shape[-1] != 2 or len(focus) == 0:
    raise ValueError(f"focus must be (x, y) or a list of (x, y), got shape {focus.shape}")
  if not np.all(np.isfinite(focus)) or focus.min() < 0 or focus.max() > 1:
    raise ValueError(f"focus must lie in [0, 1]^2 (x right, y down), got {focus.tolist()}")
  if blur.ndim != 1 or len(blur) == 0:
    raise ValueError(f"blur must be a number or a list of numbers, got shape {blur.shape}")
  if not np.all(np.isfinite(blur)) or blur.min() < 0 or blur.max() > MAX_BLUR:
    raise ValueError(f"blur must lie in [0, {MAX_BLUR:g}] (pixels), got {blur.tolist()[:8]}")


def _trained_size(config: ml_collections.ConfigDict) -> tuple[int, int]:
  """The model config's `data.image_size` as (height, width), or ValueError naming the field."""
  size = config.data.get("image_size")
  try:
    hw = tuple(int(v) for v in size)
  except (TypeError, ValueError):
    hw = ()
  if len(hw) != 2 or min(hw) < 1 or any(isinstance(v, (bool, float)) and v != int(v)
                                          for v in size):
    raise ValueError(f"model config: data.image_size {size!r} must be two positive integers")
  return hw


def camera_grid(focus, blur) -> tuple[np.ndarray, np.ndarray]:
  """All (focus, blur) combinations, focus-major: `[N, 2]`, `[N]` (validated; at most
  `cli.MAX_FRAMES` of them)."""
  f = np.asarray(focus, np.float32)
  f = f[None] if f.ndim == 1 else f
  k = np.atleast_1d(np.asarray(blur, np.float32))
  check_cameras(f, k)
  if len(f) * len(k) > MAX_FRAMES:
    raise ValueError(f"{len(f)} focus points x {len(k)} blur levels: over {MAX_FRAMES} frames")
  return np.repeat(f, len(k), axis=0), np.tile(k, len(f))


def _pad_to(x: np.ndarray, multiple: int) -> np.ndarray:
  """Pads axes 1, 2 (H, W) at the bottom/right to a multiple (reflect where it fits, else edge)."""
  h, w = x.shape[1:3]
  ph, pw = -h % multiple, -w % multiple
  pad = [(0, 0), (0, ph), (0, pw)] + [(0, 0)] * (x.ndim - 3)
  mode = "reflect" if ph < h and pw < w else "edge"
  return np.pad(x, pad, mode=mode)


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
  host_bytes: int = 0  # numpy arrays at the photo's size (`full_resolution.host_bytes`)

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


def _build(config: ml_collections.ConfigDict):
  """`build_model`, with a missing FLUX VAE or text-embeddings file named as the export's."""
  try:
    return build_model(config)
  except FileNotFoundError as e:
    if config.model.name != "flux":
      raise
    raise ValueError(f"{e} (recorded in the export's config.json; override the VAE with "
                     "vae_weights / --vae-weights)") from None


def _flux_with_base(config: ml_collections.ConfigDict, model, codec, trained: Any,
                    fold: bool) -> tuple[Any, Any]:
  """(model, params) of an exported FLUX run: its LoRA and condition params merged with the
  frozen base streamed from `config.flux.transformer_weights` into the mesh of this host's
  devices (the "tiny" variant without weights: its seeded random base, as in training). With
  `fold`, the adapters are folded into the base kernels and the model runs without them."""
  from diffcamera_jax.training import state as train_state
  from diffcamera_jax.cli import one_line
  from diffcamera_jax.models import lora
  from diffcamera_jax.sharding import make_mesh
  path = config.flux.transformer_weights
  try:
    frozen, _ = train_state.frozen_base(config, model, codec, make_mesh(config))
  except (FileNotFoundError, ValueError) as e:
    raise ValueError(f"FLUX base transformer {path or '(none recorded)'} (the export's "
                     f"config.flux.transformer_weights; override with base_weights / "
                     f"--base-weights): {one_line(str(e))}") from None
  try:
    params = lora.merge_params(trained, frozen)
  except ValueError as e:
    raise ValueError(f"the exported params do not fit the FLUX model of its config: {e}") from None
  if fold and model.lora is not None:
    params = lora.fold_lora(params, model.lora)
    model = model.clone(lora=None)
  return model, params


class MemoryBudgetError(ValueError):
  """The working resolution needs more memory than the budget allows, even one frame at a time."""


class Refocuser:
  """A loaded refocusing model: `refocus(image, focus, blur, ...)` -> frames `[N, H, W, 3]`."""

  def __init__(self, config: ml_collections.ConfigDict, params: Any, *,
               max_side: int | None = None, batch_size: int = 8, num_steps: int | None = None,
               max_memory: int | None = None, full_resolution: bool = True,
               depth_model: Any = None, base_weights: str | None = None,
               vae_weights: str | None = None, fold_lora: bool = False,
               camera_search: bool | None = None):
    if config.model.name != "flux" and (base_weights or vae_weights):
      raise ValueError("base_weights / vae_weights (--base-weights / --vae-weights) apply to "
                       f"FLUX exports only; this is a {config.model.name!r} model")
    if config.model.name == "flux" and (base_weights or vae_weights):
      config = ml_collections.ConfigDict(config.to_dict())
      config.flux.transformer_weights = base_weights or config.flux.transformer_weights
      config.flux.vae_weights = vae_weights or config.flux.vae_weights
    self.trained_hw = _trained_size(config)
    max_side = max(self.trained_hw) if max_side is None else int(max_side)
    if max_side < 8:
      raise ValueError(f"max_side must be >= 8 pixels, got {max_side}")
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_memory is not None and max_memory < 2 ** 20:
      raise ValueError(f"max_memory must be at least 1 MiB, got {max_memory} bytes")
    self.config, self.params = config, params
    self.max_side, self.batch_size = max_side, int(batch_size)
    self.full_resolution = bool(full_resolution)
    self.budget = int(max_memory or fullres.default_memory_budget())
    self.host_budget = fullres.host_budget()  # the host arrays' (`full_resolution.host_bytes`)
    self.num_steps = int(num_steps or config.objective.sample_steps)
    self._model, self._codec = _build(config)
    if config.model.name == "flux":
      self._model, self.params = _flux_with_base(config, self._model, self._codec, params,
                                                 fold_lora)
    self._multiple = self._codec.downsample * int(config.model.patch_size)
    self._on_step: Callable[[], None] = lambda: None
    self._compiled: dict[tuple, tuple[Plan, Any, Callable]] = {}
    self._estimate = None
    if isinstance(depth_model, (str, os.PathLike)):
      from diffcamera_jax.depth import DepthEstimator
      depth_model = DepthEstimator.load(depth_model)
    self.depth_model = depth_model  # a DepthEstimator: disparity for photos given none
    # Deblur the photo first where the optics explain its blur (`physics_deblur`: the camera with
    # a given disparity map, one disk without): default from `config.objective.camera_search`.
    self.camera_search = bool(config.objective.get("camera_search", False)
                              if camera_search is None else camera_search)
    self._deblurrer = physics_deblur.Deblurrer(config, max_side)

  @classmethod
  def load(cls, model_dir: str, **kwargs) -> "Refocuser":
    """Loads an exported model directory (`diffcamera_jax.export`). A FLUX export holds its
    LoRA and condition params; the base transformer, VAE and text embeddings are read from the
    paths its config records (`base_weights=` / `vae_weights=` override them; `fold_lora=True`
    folds the adapters into the base)."""
    from diffcamera_jax.export import load_exported  # orbax is only needed here
    config, params = load_exported(model_dir)
    return cls(config, params, **kwargs)

  # ---------------------------------------------------------------------------- public calls

  def refocus(self, image: np.ndarray, focus, blur, *, disparity: np.ndarray | None = None,
              blades: int = 0, rotation: float = 0.0, num_steps: int | None = None,
              seed: int = 0, on_step: Callable[[], None] | None = None,
              on_frame: Callable[[], None] | None = None) -> np.ndarray:
    """Refocuses one photo for every (focus, blur) combination: returns `[N, H, W, 3]` in [0, 1].

    `image` `[H, W, 3]` in [0, 1]; `focus` (x, y) or a list of them; `blur` K (pixels at this
    image's size) or a list; frames are ordered focus-major. `disparity` `[H, W]` in [0, 1]
    (1 = near) or None for the no-depth path. `on_step` is called once per sampler step,
    `on_frame` once per frame composed at full resolution. With no disparity and a
    `depth_model`, the photo's disparity is estimated first (`estimate_disparity`).
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
      raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
    points, levels = camera_grid(focus, blur)
    return self.sample(image[None], None if disparity is None else np.asarray(disparity)[None],
                       points, levels, blades=blades, rotation=rotation, num_steps=num_steps,
                       seed=seed, on_step=on_step, on_frame=on_frame)

  __call__ = refocus

  def estimate_disparity(self, images: np.ndarray) -> np.ndarray:
    """Disparity `[N, H, W]` of photos `[N, H, W, 3]` from the `depth_model`."""
    if self.depth_model is None:
      raise ValueError("no depth_model: pass depth_model= to estimate disparity")
    return np.stack(self.depth_model.estimate_many(list(np.asarray(images, np.float32))))

  def plan_for(self, image_hw: tuple[int, int], frames: int, *, depth: bool = True) -> Plan:
    """The plan of a call on one photo of `image_hw` with `frames` cameras (compiles the sampler
    for it, which the call then reuses)."""
    host = self._check_host(image_hw, frames)
    work_hw = fullres.working_size(*image_hw, self.max_side)
    padded = tuple(-(-v // self._multiple) * self._multiple for v in work_hw)
    plan = self._program(tuple(image_hw), work_hw, padded, frames, depth, 1)[0]
    return dataclasses.replace(plan, host_bytes=host)

  def _check_host(self, image_hw: tuple[int, int], frames: int) -> int:
    """Host bytes of a call (`full_resolution.host_bytes`); MemoryBudgetError over the budget."""
    host = fullres.host_bytes(image_hw, frames)
    if host > self.host_budget:
      raise MemoryBudgetError(
          f"a {image_hw[1]}x{image_hw[0]} photo with {frames} frame(s) needs "
          f"{host / 2 ** 30:.2f} GiB of host memory, over its {self.host_budget / 2 ** 30:.2f} GiB "
          "budget (half the host memory available): ask for fewer frames or pass a smaller "
          "photo")
    return host

  def sample(self, reference: np.ndarray, disparity: np.ndarray | None, focus: np.ndarray,
             blur: np.ndarray, *, blades: int = 0, rotation: float = 0.0,
             num_steps: int | None = None, seed: int = 0,
             on_step: Callable[[], None] | None = None,
             on_frame: Callable[[], None] | None = None) -> np.ndarray:
    """Batched form: references `[1 or N, H, W, 3]`, disparity like it or None, focus `[N, 2]`,
    blur `[N]` -> `[N, H, W, 3]`. Validates on the host first (errors name the argument).
    Without disparity, a `depth_model` supplies it."""
    reference = np.asarray(reference, np.float32)
    focus, blur = np.asarray(focus, np.float32), np.asarray(blur, np.float32)
    n = len(focus)
    if reference.ndim != 4 or reference.shape[0] not in (1, n):
      raise ValueError(f"reference must be [1 or {n}, H, W, 3], got shape {reference.shape}")
    if disparity is not None and np.shape(disparity) != reference.shape[:-1]:
      raise ValueError(f"disparity must have shape {reference.shape[:-1]} to match the image, got "
                       f"{np.shape(disparity)}")
    self._check_host(reference.shape[1:3], n)
    optics.validate(reference, np.zeros(reference.shape[:-1]) if disparity is None else disparity,
                    aperture=optics.Aperture(blades, rotation))
    given_depth = disparity is not None
    if disparity is None and self.depth_model is not None:
      disparity = self.estimate_disparity(reference)
    check_cameras(focus, blur)
    if len(blur) != n:
      raise ValueError(f"blur must be [{n}] like focus, got shape {blur.shape}")
    steps = int(num_steps or self.num_steps)
    if steps < 1:
      raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    image_hw = reference.shape[1:3]
    if self.camera_search:
      reference = self.deblur(reference,
                              np.asarray(disparity, np.float32) if given_depth else None)
    ref, disp, focus_w, blur_w, work_hw = self._to_working(reference, disparity, focus, blur)
    plan, compiled, arguments = self._program(image_hw, work_hw, ref.shape[1:3], n,
                                              disp is not None, ref.shape[0])
    blades_n = np.full((n,), int(blades), np.int32)
    rotation_n = np.full((n,), float(rotation), np.float32)
    camera = np.asarray(camera_features(focus_w, blur_w, ref.shape[1:3], blades_n, rotation_n))
    outputs = []
    self._on_step = on_step or (lambda: None)
    try:
      for start in range(0, n, plan.batch):
        idx = np.minimum(np.arange(start, start + plan.batch), n - 1)  # pad the last batch
        pick = (lambda a: a if a is None or a.shape[0] == 1 else a[idx])
        keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(seed), jnp.asarray(idx))
        out = compiled(*arguments(self.params, pick(ref), pick(disp), camera[idx], keys, steps))
        outputs.append(np.asarray(out)[: min(plan.batch, n - start)])
    finally:
      self._on_step = lambda: None
    frames = np.concatenate(outputs)[:, : work_hw[0], : work_hw[1]]
    if work_hw == tuple(image_hw):
      return np.clip(frames, 0.0, 1.0)
    if not self.full_resolution:
      return np.clip(fullres.upscale(frames, image_hw), 0.0, 1.0)
    return self._compose(reference, disparity, frames, ref[:, : work_hw[0], : work_hw[1]],
                         focus, blur, blades, rotation, on_frame or (lambda: None))

  def deblur(self, photos: np.ndarray, disparity: np.ndarray | None) -> np.ndarray:
    """Photos `[N, H, W, 3]` deblurred by the optics (`physics_deblur.Deblurrer`): with their
    disparity `[N, H, W]`, by the camera that explains them; without (None), when defocused as a
    whole by one disk. Unchanged otherwise; each photo searched once per loaded model."""
    return self._deblurrer(photos, disparity)

  def as_method(self, *, use_depth: bool = True, num_steps: int | None = None, seed: int = 0):
    """This model as a benchmark method `(reference, disparity, focus, blur) -> images`."""
    def method(reference, disparity, focus, blur):
      return self.sample(reference, disparity if use_depth else None, focus, blur,
                         num_steps=num_steps, seed=seed)
    return method

  # ---------------------------------------------------------------------------- internals

  def _to_working(self, reference, disparity, focus, blur):
    """Downscales to the working size, pads to the patch grid; returns the adjusted inputs +
    the working size (h, w) before padding."""
    height, width = reference.shape[1:3]
    h, w = fullres.working_size(height, width, self.max_side)
    ref = fullres.downscale(reference, (h, w))
    disp = None
    if disparity is not None:
      disp = fullres.downscale(np.asarray(disparity, np.float32), (h, w), "nearest")
    ref = _pad_to(np.clip(ref, 0.0, 1.0), self._multiple)
    disp = None if disp is None else _pad_to(disp, self._multiple)
    hp, wp = ref.shape[1:3]
    # Focus (x, y) is relative to the image; the padding sits at the bottom/right.
    focus_w = focus * np.asarray([w / wp, h / hp], np.float32)
    blur_w = blur * np.float32(max(h, w) / max(height, width))
    return ref, disp, focus_w, blur_w, (h, w)

  def _sequence(self, padded_hw) -> tuple[int, int]:
    """(tokens per example, attention heads) of the model at this padded working size."""
    m = self._model
    grid = (padded_hw[0] // self._codec.downsample // m.patch_size) * (
        padded_hw[1] // self._codec.downsample // m.patch_size)
    if self.config.model.name == "flux":  # text | target, reference, depth | camera
      return m.text_len + 3 * grid + m.camera_tokens, m.config.num_heads
    streams = 2 if m.depth_mode == "fold" else 3
    return m.size.num_camera_tokens + streams * grid, m.size.num_heads

  def _chunk(self, padded_hw, batch: int) -> int:
    """Query block size keeping the attention scores within their share of the budget."""
    length, heads = self._sequence(padded_hw)
    if not length:
      return 0
    share = self.budget // _SCORE_SHARE
    if batch * heads * length * length * 4 <= share:
      return 0
    return max(16, 16 * (share // (batch * heads * length * 4) // 16))

  def _program(self, image_hw, work_hw, padded_hw, frames: int, depth: bool, references: int):
    """(plan, compiled sampler, argument builder) for a working shape; the batch is the largest
    (up to `batch_size`, at most `frames`) whose compiled memory plan fits the budget."""
    batch = min(self.batch_size, frames)
    while True:
      key = (tuple(padded_hw), batch, depth, references == 1)
      if key not in self._compiled:
        chunk = self._chunk(padded_hw, batch)
        model = self._model.clone(attention_chunk=chunk) if chunk else self._model
        stepping = _SteppingModel(model, lambda: self._on_step())
        sampler = make_sampler(stepping, self._codec, self.config)
        ref = jax.ShapeDtypeStruct((1 if references == 1 else batch, *padded_hw, 3), jnp.float32)
        disp = jax.ShapeDtypeStruct(ref.shape[:3], jnp.float32) if depth else None
        camera = jax.ShapeDtypeStruct((batch, CAMERA_FEATURES), jnp.float32)
        keys = jax.random.split(jax.random.key(0), batch)
        compiled = sampler.compile(self.params, ref, disp, camera, keys, 1)
        length, _ = self._sequence(padded_hw)
        plan = Plan(tuple(image_hw), tuple(work_hw), self.trained_hw, batch, chunk, length,
                    fullres.compiled_bytes(compiled), self.budget)
        self._compiled[key] = (plan, compiled, sampler.arguments)
      plan, compiled, arguments = self._compiled[key]
      if plan.program_bytes <= self.budget:
        return dataclasses.replace(plan, image_hw=tuple(image_hw), work_hw=tuple(work_hw)), \
            compiled, arguments
      if batch == 1:
        raise MemoryBudgetError(
            f"the working resolution {work_hw[1]}x{work_hw[0]} needs "
            f"{plan.program_bytes / 2 ** 30:.2f} GiB for one frame, over the "
            f"{self.budget / 2 ** 30:.2f} GiB memory budget: lower max_side (--max-side) or raise "
            f"max_memory (--max-memory)")
      batch = max(1, batch // 2)

  def _disparity_estimate(self, work_reference: np.ndarray) -> np.ndarray | None:
    """The restoration stage's disparity estimates `[1 or N, h, w]` of the working references, or
    None for a model without the stage."""
    if self.config.objective.get("prior", "none") != "restore":
      return None
    if self._estimate is None:
      self._estimate = jax.jit(lambda params, image: self._model.apply(
          {"params": params}, image, None, jnp.zeros((image.shape[0],), bool),
          method="restore")[1])
    return np.asarray(self._estimate(self.params, jnp.asarray(work_reference)))

  def _compose(self, reference, disparity, frames_w, reference_w, focus, blur, blades, rotation,
               on_frame):
    """Frames at the photo's size: `full_resolution.compose` of each working frame with the
    full-resolution render of its camera (or, with no disparity at all, the photo's fine band
    scaled by the detail the model kept)."""
    n = len(frames_w)
    image_hw = reference.shape[1:3]
    if disparity is None:
      estimate = self._disparity_estimate(_pad_to(reference_w, self._multiple))
      if estimate is not None:
        estimate = estimate[:, : frames_w.shape[1], : frames_w.shape[2]]
        disparity = np.clip(fullres.upscale(estimate, image_hw), 0.0, 1.0)
    out = np.empty((n, *image_hw, 3), np.float32)
    max_radius = fullres.radius_bucket(float(blur.max()))
    gamma = float(self.config.data.gamma)
    for i in range(n):
      photo = reference[min(i, len(reference) - 1)]
      if disparity is None:
        frame = fullres.compose_without_depth(frames_w[i], reference_w[min(
            i, len(reference_w) - 1)], photo)
      else:
        disp = np.asarray(disparity[min(i, len(disparity) - 1)], np.float32)
        d_f = float(optics.focus_disparity(disp, jnp.asarray(focus[i])))
        render = fullres.render_in_strips(
            photo, disp, d_f, float(blur[i]), blades=int(blades), rotation=float(rotation),
            gamma=gamma, max_radius=max_radius, budget=self.budget)
        frame = fullres.compose(frames_w[i], render)
      out[i] = np.clip(frame, 0.0, 1.0)
      on_frame()
    return out
