"""`Refocuser`: load an exported model once, refocus photos of any size many times.

    r = Refocuser.load("exported/")
    frames = r.refocus(image, focus=[(0.3, 0.7), (0.8, 0.2)], blur=12.0)   # [2, H, W, 3]
    print(r.plan_for(image.shape[:2], 2).describe())

A call runs five stages, each its own module:
1. `prepare`: check the inputs on the host; the depth source (given, the depth model's, none);
2. `physics_deblur` (the optics pre-pass, `InferenceOptions.optics_prepass`): deblur the photo
   where the optics explain its blur;
3. `plan`: the working size, the compiled sampler and the batch that fit the memory budget;
4. `plan.sample_in_batches`: the model's frames at the working size;
5. `compose`: frames at the photo's own size (the working frame plus the renderer's finer band).
The model family (`families`: DiT or FLUX + LoRA) is settled once, at load.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import ml_collections
import numpy as np

from diffcamera_jax.inference import compose, memory, physics_deblur, prepare as prepare_lib
from diffcamera_jax.inference.families import LoadedModel, load_model
from diffcamera_jax.inference.options import InferenceOptions
from diffcamera_jax.inference.plan import Plan, Planner, sample_in_batches, to_working
from diffcamera_jax.inference.resize import pad_to, upscale, working_size
from diffcamera_jax.models import camera_features


class Refocuser:
  """A loaded refocusing model: `refocus(image, focus, blur, ...)` -> frames `[N, H, W, 3]`.

  Keyword options are the fields of `InferenceOptions`. `depth_model` (a `DepthEstimator` or
  its weights) supplies disparity for photos given none. A FLUX export rebuilds its frozen base
  from the paths its config records (`base_weights` / `vae_weights` override them; `fold_lora`
  folds the adapters in).
  """

  def __init__(self, config: ml_collections.ConfigDict, params: Any, *,
               depth_model: Any = None, base_weights: str | None = None,
               vae_weights: str | None = None, fold_lora: bool = False, **options):
    options = InferenceOptions(**options)
    prepare_lib.trained_size(config)
    config, loaded = load_model(config, params, base_weights=base_weights,
                                vae_weights=vae_weights, fold_lora=fold_lora)
    self._setup(config, loaded, options, depth_model)

  @classmethod
  def from_model(cls, config: ml_collections.ConfigDict, model: Any, codec: Any, params: Any,
                 **options) -> "Refocuser":
    """A Refocuser of a model already built (evaluation during training); `set_params` swaps in
    newer params without recompiling."""
    self = object.__new__(cls)
    self._setup(config, LoadedModel(model, codec, params), InferenceOptions(**options), None)
    return self

  def set_params(self, params: Any) -> None:
    """Samples with `params` from now on (same tree and shardings as before)."""
    self.loaded.params = params

  def _setup(self, config, loaded, options: InferenceOptions, depth_model) -> None:
    self.config, self.loaded, self.options = config, loaded, options
    self.trained_hw = prepare_lib.trained_size(config)
    self.max_side = int(self.options.max_side or max(self.trained_hw))
    self.budget = int(self.options.max_memory or memory.default_memory_budget())
    self.host_budget = memory.host_budget()
    self.num_steps = int(self.options.num_steps or self.config.objective.sample_steps)
    self.planner = Planner(self.loaded, self.config, trained_hw=self.trained_hw,
                           batch_size=self.options.batch_size, budget=self.budget)
    self.prepass = physics_deblur.Deblurrer(
        self.config.data, self.max_side, threshold=self.options.camera_search_threshold,
        min_gain=self.options.uniform_search_min_gain)
    self.depth_model = prepare_lib.depth_estimator(depth_model)

  @classmethod
  def load(cls, model_dir: str, **kwargs) -> "Refocuser":
    """Loads an exported model directory (`diffcamera_jax.export`); keywords as the class."""
    from diffcamera_jax.exported import load_exported  # orbax is only needed here
    config, params = load_exported(model_dir)
    return cls(config, params, **kwargs)

  @property
  def params(self) -> Any:
    return self.loaded.params

  # ---------------------------------------------------------------------------- public calls

  def refocus(self, image: np.ndarray, focus, blur, *, disparity: np.ndarray | None = None,
              blades: int = 0, rotation: float = 0.0, num_steps: int | None = None,
              seed: int = 0, on_step: Callable[[], None] | None = None,
              on_frame: Callable[[], None] | None = None) -> np.ndarray:
    """Refocuses one photo for every (focus, blur) combination: returns `[N, H, W, 3]` in [0, 1].

    `image` `[H, W, 3]` in [0, 1]; `focus` (x, y) or a list of them; `blur` K (pixels at this
    image's size) or a list; frames are ordered focus-major. `disparity` `[H, W]` in [0, 1]
    (1 = near) or None (the depth model's estimate, else the no-depth path). `on_step` is called
    once per sampler step, `on_frame` once per frame composed at full resolution.
    """
    return self.sample(*prepare_lib.one_photo(image, disparity, focus, blur), blades=blades,
                       rotation=rotation, num_steps=num_steps, seed=seed, on_step=on_step,
                       on_frame=on_frame)

  __call__ = refocus

  def sample(self, reference: np.ndarray, disparity: np.ndarray | None, focus: np.ndarray,
             blur: np.ndarray, *, blades: int = 0, rotation: float = 0.0,
             num_steps: int | None = None, seed: int = 0, optics_prepass: bool | None = None,
             on_step: Callable[[], None] | None = None,
             on_frame: Callable[[], None] | None = None) -> np.ndarray:
    """Batched form: references `[1 or N, H, W, 3]`, disparity like it or None, focus `[N, 2]`,
    blur `[N]` -> `[N, H, W, 3]`, through the five stages (module docstring).
    `optics_prepass` overrides the option for this call."""
    request = prepare_lib.prepare(
        reference, disparity, focus, blur, blades=blades, rotation=rotation,
        num_steps=num_steps or self.num_steps, seed=seed, host_budget=self.host_budget,
        depth_model=self.depth_model)
    photos = request.photos
    if self.options.optics_prepass if optics_prepass is None else optics_prepass:
      photos = self.deblur(photos, request.disparity if request.depth_given else None)
    working = to_working(photos, request.disparity, request.focus, request.blur,
                         self.max_side, self.loaded.multiple)
    plan, compiled, arguments = self.planner.program(
        request.image_hw, working.hw, working.photos.shape[1:3], request.frames,
        working.disparity is not None, len(working.photos))
    n = request.frames
    camera = np.asarray(camera_features(
        working.focus, working.blur, working.photos.shape[1:3],
        np.full((n,), request.blades, np.int32), np.full((n,), request.rotation, np.float32)))
    self.planner.on_step = on_step or (lambda: None)
    try:
      frames = sample_in_batches(plan, compiled, arguments, self.params, working, camera,
                                 request.seed, request.num_steps)
    finally:
      self.planner.on_step = lambda: None
    if working.hw == request.image_hw:
      return np.clip(frames, 0.0, 1.0)
    if not self.options.full_resolution:
      return np.clip(upscale(frames, request.image_hw), 0.0, 1.0)
    photos_w = working.photos[:, : working.hw[0], : working.hw[1]]
    disparity = request.disparity
    if disparity is None:
      disparity = self._estimated_disparity(photos_w, request.image_hw)
    return compose.compose_frames(
        photos, disparity, frames, photos_w, request.focus, request.blur,
        blades=request.blades, rotation=request.rotation, gamma=float(self.config.data.gamma),
        budget=self.budget, on_frame=on_frame or (lambda: None))

  def deblur(self, photos: np.ndarray, disparity: np.ndarray | None) -> np.ndarray:
    """The optics pre-pass (`physics_deblur.Deblurrer`) on photos `[N, H, W, 3]`: with their
    disparity `[N, H, W]`, by the camera that explains them; without (None), when defocused as a
    whole by one disk. Unchanged otherwise; each photo searched once per loaded model."""
    return self.prepass(photos, disparity)

  def estimate_disparity(self, images: np.ndarray) -> np.ndarray:
    """Disparity `[N, H, W]` of photos `[N, H, W, 3]` from the `depth_model`."""
    if self.depth_model is None:
      raise ValueError("no depth_model: pass depth_model= to estimate disparity")
    return np.stack(self.depth_model.estimate_many(list(np.asarray(images, np.float32))))

  def plan_for(self, image_hw: tuple[int, int], frames: int, *, depth: bool = True) -> Plan:
    """The plan of a call on one photo of `image_hw` with `frames` cameras (compiles the sampler
    for it, which the call then reuses)."""
    host = memory.check_host(image_hw, frames, self.host_budget)
    work_hw = working_size(*image_hw, self.max_side)
    m = self.loaded.multiple
    padded = tuple(-(-v // m) * m for v in work_hw)
    plan = self.planner.program(tuple(image_hw), work_hw, padded, frames, depth, 1)[0]
    return dataclasses.replace(plan, host_bytes=host)

  def as_method(self, *, use_depth: bool = True, num_steps: int | None = None, seed: int = 0,
                optics_prepass: bool | None = None):
    """This model as a benchmark method `(reference, disparity, focus, blur) -> images`
    (`optics_prepass`: None for the option's setting)."""
    def method(reference, disparity, focus, blur):
      return self.sample(reference, disparity if use_depth else None, focus, blur,
                         num_steps=num_steps, seed=seed, optics_prepass=optics_prepass)
    return method

  def _estimated_disparity(self, photos_w: np.ndarray, image_hw) -> np.ndarray | None:
    """The restoration stage's disparity of the working photos, upscaled to the photo's size
    (None for a model without the stage)."""
    estimate = self.loaded.estimate_disparity(pad_to(photos_w, self.loaded.multiple))
    if estimate is None:
      return None
    estimate = estimate[:, : photos_w.shape[1], : photos_w.shape[2]]
    return np.clip(upscale(estimate, image_hw), 0.0, 1.0)


MemoryBudgetError = memory.MemoryBudgetError
camera_grid = prepare_lib.camera_grid
check_cameras = prepare_lib.check_cameras

__all__ = ["InferenceOptions", "MemoryBudgetError", "Refocuser", "camera_grid", "check_cameras"]
