"""`GenfocusRefocuser`: the released Genfocus LoRAs (deblurNet, bokehNet) on FLUX.1-dev, refocusing
photos of any size through the same stages as `Refocuser`.

    g = GenfocusRefocuser.load("genfocus/")
    frames = g.refocus(photo, focus=[(0.5, 0.4)], blur=12.0, disparity=disparity)   # [1, H, W, 3]

The directory (`--genfocus DIR`) holds:

| file | what |
|---|---|
| `deblurNet.safetensors`, `bokehNet.safetensors` | the released LoRAs |
| `deblur_prompt.safetensors`, `bokeh_prompt.safetensors` | their prompt embeddings (docs/genfocus.md) |
| `transformer/` | FLUX.1-dev (diffusers folder with `config.json`, or a single file) unless `base_weights` |
| `vae/` | the FLUX VAE (diffusers folder or `ae.safetensors`) unless `vae_weights` |

A call: `prepare` (the shared checks and depth source) -> the working size (long side at most
`max_side`, padded to the stages' multiple) -> the deblur stage once per photo -> the bokeh stage
per camera, on the deblurred photo and the defocus map of the working disparity (CoC in working
pixels / 100, Genfocus's condition) -> the photo's size by `compose` (the working frame plus the
renderer's finer band) or a cubic upscale. A camera with K = 0 gets the deblurred photo, as in
Genfocus's demo. Genfocus needs a disparity map for bokeh: given, or the `depth_model`'s.
"""
from __future__ import annotations

import functools
import json
import os
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from diffcamera_jax import optics, sharding, weights
from diffcamera_jax.configs import flux_lora
from diffcamera_jax.inference import compose, memory, prepare as prepare_lib
from diffcamera_jax.inference.resize import downscale, pad_to, upscale, working_size
from diffcamera_jax.models import flux, genfocus, lora
from diffcamera_jax.models.autoencoder import VAE_PRESETS, AutoencoderConfig, AutoencoderKL
from diffcamera_jax.models.flux_diffcamera import load_text_embeddings, pack_latents
from diffcamera_jax.weights import genfocus_layout

GAMMA = 2.2  # the composition's linear-light decoding of sRGB photos
DEFAULT_MAX_SIDE = 1024


def flux_config(transformer: str) -> flux.FluxConfig:
  """The transformer's config: its diffusers `config.json`, else FLUX.1-dev's."""
  path = os.path.join(transformer, "config.json")
  if os.path.isdir(transformer) and os.path.exists(path):
    with open(path) as f:
      return flux.FluxConfig.from_diffusers(json.load(f))
  return flux.FLUX_PRESETS["dev"]


def vae_config(vae: str) -> AutoencoderConfig:
  """The VAE's config: its diffusers `config.json`, else the FLUX VAE's."""
  path = os.path.join(vae, "config.json")
  if os.path.isdir(vae) and os.path.exists(path):
    with open(path) as f:
      return AutoencoderConfig.from_diffusers(json.load(f))
  return VAE_PRESETS["flux"]


@functools.lru_cache(maxsize=32)
def _stage_program(stage: str, config: flux.FluxConfig, vae: AutoencoderKL, dtype: Any,
                   num_steps: int) -> Callable:
  """One jitted stage per (stage, model, steps), shared by every refocuser of that model."""
  return jax.jit(lambda params, vae_params, text, images, noise: genfocus.run_stage(
      stage, params, config, vae, vae_params, text, images, noise, num_steps=num_steps,
      dtype=dtype))


_COMPILED: dict[tuple, Any] = {}  # (program, argument shapes) -> its compiled executable


def _compiled(program: Callable, *args) -> Any:
  """`program` compiled for `args` (ahead of time, so its memory is known before it runs)."""
  shapes = jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), args)
  key = (program, str(shapes))
  if key not in _COMPILED:
    if len(_COMPILED) >= 32:  # bounded like the programs' own cache: drop the oldest
      _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[key] = program.lower(*args).compile()
  return _COMPILED[key]


def noise_key(seed: int, stage: str, index: int) -> jax.Array:
  """The initial-noise key of one stage run: photo `index` (deblur) or frame `index` (bokeh)."""
  stream = list(genfocus.STAGES).index(stage)
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), stream), index)


def _default_dtype() -> Any:
  """float32 on a CPU, bfloat16 on an accelerator (as Genfocus runs on CPU and CUDA)."""
  return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16


def _require(path: str, what: str) -> str:
  if not os.path.exists(path):
    raise FileNotFoundError(f"{what} {path} does not exist")
  return path


class GenfocusRefocuser:
  """Genfocus's deblur and bokeh stages: `refocus(image, focus, blur, disparity=...)` -> frames
  `[N, H, W, 3]`, the same call as `Refocuser.refocus`."""

  def __init__(self, stage_params: dict[str, Any], config: flux.FluxConfig, vae: AutoencoderKL,
               vae_params: Any, texts: dict[str, dict[str, np.ndarray]], *,
               dtype: Any = None, num_steps: int = genfocus.NUM_STEPS,
               max_side: int = DEFAULT_MAX_SIDE, full_resolution: bool = True,
               max_memory: int | None = None, depth_model: Any = None):
    self.stage_params, self.config, self.vae, self.vae_params = stage_params, config, vae, vae_params
    self.texts = texts
    self.dtype = dtype or _default_dtype()
    self.num_steps, self.max_side = int(num_steps), int(max_side)
    self.full_resolution = bool(full_resolution)
    self.budget = int(max_memory or memory.default_memory_budget())
    self.host_budget = memory.host_budget()
    self.depth_model = prepare_lib.depth_estimator(depth_model)
    self.multiple = 2 * vae.config.downsample_factor  # VAE latents are packed 2 x 2

  @classmethod
  def load(cls, directory: str, *, base_weights: str | None = None,
           vae_weights: str | None = None, dtype: Any = None, **kwargs) -> "GenfocusRefocuser":
    """Loads the directory described in the module docstring; keywords as the class."""
    if not os.path.isdir(directory):
      raise FileNotFoundError(f"Genfocus directory {directory} does not exist")
    transformer = _require(base_weights or os.path.join(directory, "transformer"),
                           "FLUX.1-dev transformer (--base-weights)")
    vae_path = _require(vae_weights or os.path.join(directory, "vae"), "FLUX VAE (--vae-weights)")
    compute = dtype or _default_dtype()
    config = flux_config(transformer)
    model = flux.FluxTransformer(config, scan_layers=True, param_dtype=compute)
    example = (np.zeros((1, 4, config.in_channels)), np.zeros((4, 3)),
               np.zeros((1, 2, config.context_in_dim)), np.zeros((2, 3)), np.zeros(1),
               np.zeros((1, config.vec_in_dim)), np.zeros(1))
    # The base is sharded over this host's devices by the FLUX logical axis rules (FSDP, as a
    # FLUX export's base is placed); the adapters, VAE and prompts are replicated.
    mesh_config = flux_lora.get_config("1024")
    mesh, rules = sharding.make_mesh(mesh_config), sharding.logical_rules(mesh_config)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      boxed = jax.eval_shape(lambda key: model.init({"params": key}, *example)["params"],
                             jax.random.key(0))
    abstract = nn.unbox(boxed)
    placed = sharding.logical_shardings(boxed, mesh, rules)
    replicated = lambda tree: jax.tree.map(lambda _: sharding.replicated(mesh), tree)
    base = weights.load_flux_transformer(transformer, abstract, shardings=placed)  # in `compute`
    adapter_shardings = replicated(genfocus_layout.adapter_shapes(abstract, 1, compute))
    stage_params, texts = {}, {}
    for name, stage in genfocus.STAGES.items():
      lora_file = _require(os.path.join(directory, stage.lora_file), f"{name} LoRA")
      adapters = weights.load_genfocus_lora(lora_file, abstract, dtype=compute,
                                            shardings=adapter_shardings)
      stage_params[name] = lora.merge_params(base, adapters)
      texts[name] = load_text_embeddings(
          _require(os.path.join(directory, f"{name}_prompt.safetensors"),
                   f"{name} prompt embeddings (docs/genfocus.md)"),
          config.context_in_dim, config.vec_in_dim)
    vae = AutoencoderKL(vae_config(vae_path))
    vae_abstract = jax.eval_shape(vae.init, jax.random.key(0), np.zeros((1, 16, 16, 3)))["params"]
    vae_params = weights.load_autoencoder(vae_path, vae_abstract,
                                          shardings=replicated(vae_abstract))
    return cls(stage_params, config, vae, vae_params, texts, dtype=compute, **kwargs)

  # ---------------------------------------------------------------------------- public calls

  def refocus(self, image: np.ndarray, focus, blur, *, disparity: np.ndarray | None = None,
              blades: int = 0, rotation: float = 0.0, num_steps: int | None = None,
              seed: int = 0, on_step: Callable[[], None] | None = None,
              on_frame: Callable[[], None] | None = None) -> np.ndarray:
    """One photo `[H, W, 3]` in [0, 1] for every (focus, blur) combination, focus-major, as
    `Refocuser.refocus`. `on_step` is called once per stage run, `on_frame` once per frame."""
    return self.sample(*prepare_lib.one_photo(image, disparity, focus, blur), blades=blades,
                       rotation=rotation, num_steps=num_steps, seed=seed, on_step=on_step,
                       on_frame=on_frame)

  __call__ = refocus

  def sample(self, reference: np.ndarray, disparity: np.ndarray | None, focus: np.ndarray,
             blur: np.ndarray, *, blades: int = 0, rotation: float = 0.0,
             num_steps: int | None = None, seed: int = 0,
             on_step: Callable[[], None] | None = None,
             on_frame: Callable[[], None] | None = None) -> np.ndarray:
    """Batched form: references `[1 or N, H, W, 3]`, disparity like it or None, focus `[N, 2]`,
    blur `[N]` (K, pixels at the photo's size) -> `[N, H, W, 3]`."""
    request = prepare_lib.prepare(
        reference, disparity, focus, blur, blades=blades, rotation=rotation,
        num_steps=num_steps or self.num_steps, seed=seed, host_budget=self.host_budget,
        depth_model=self.depth_model)
    if request.blades != 0:
      raise ValueError(f"Genfocus renders a round aperture only; got {request.blades} blades")
    if request.disparity is None and np.any(request.blur > 0):
      raise ValueError("Genfocus's bokeh stage needs a disparity map: give one (--depth) or a "
                       "depth model (--depth-model)")
    on_step = on_step or (lambda: None)
    height, width = request.image_hw
    hw = working_size(height, width, self.max_side)
    photos_w = np.clip(downscale(request.photos, hw), 0.0, 1.0)
    scale = np.float32(max(hw) / max(height, width))
    sharp = []
    for i, photo in enumerate(photos_w):
      sharp.append(self._stage("deblur", [photo], request.num_steps, noise_key(seed, "deblur", i)))
      on_step()
    frames = np.empty((request.frames, *hw, 3), np.float32)
    pick = lambda a, i: a[min(i, len(a) - 1)]
    disparity_w = None if request.disparity is None else downscale(request.disparity, hw,
                                                                   "nearest")
    for i in range(request.frames):
      if request.blur[i] <= 0:
        frames[i] = pick(sharp, i)
        continue
      disp = pick(disparity_w, i)
      # the focal plane as our renderer reads it (window median), so the composition agrees
      d_f = float(optics.focus_disparity(disp, jnp.asarray(request.focus[i])))
      defocus = genfocus.defocus_map(disp, d_f, float(request.blur[i] * scale))
      condition = np.asarray(genfocus.defocus_condition_image(defocus))
      frames[i] = self._stage("bokeh", [pick(sharp, i), condition], request.num_steps,
                              noise_key(seed, "bokeh", i))
      on_step()
    if hw == request.image_hw:
      return np.clip(frames, 0.0, 1.0)
    if not self.full_resolution or request.disparity is None:
      return np.clip(upscale(frames, request.image_hw), 0.0, 1.0)
    return compose.compose_frames(
        request.photos, request.disparity, frames, photos_w, request.focus, request.blur,
        blades=0, rotation=0.0, gamma=GAMMA, budget=self.budget,
        on_frame=on_frame or (lambda: None))

  def as_method(self, *, num_steps: int | None = None, seed: int = 0):
    """This pipeline as a benchmark method `(reference, disparity, focus, blur) -> images`."""
    def method(reference, disparity, focus, blur):
      return self.sample(reference, disparity, focus, blur, num_steps=num_steps, seed=seed)
    return method

  # ---------------------------------------------------------------------------- stages

  def _stage(self, stage: str, images: list[np.ndarray], num_steps: int,
             key: jax.Array) -> np.ndarray:
    """One stage on one photo's condition images `[h, w, 3]` -> `[h, w, 3]`: padded to the
    stages' multiple, sampled from the noise of `key`, cropped back."""
    h, w = images[0].shape[:2]
    padded = [pad_to(np.asarray(im, np.float32)[None], self.multiple) for im in images]
    hp, wp = padded[0].shape[1:3]
    f = self.vae.config.downsample_factor
    noise = pack_latents(jax.random.normal(
        key, (1, hp // f, wp // f, self.vae.config.latent_channels)))
    args = (self.stage_params[stage], self.vae_params, self.texts[stage],
            [jnp.asarray(p) for p in padded], noise)
    run = _compiled(_stage_program(stage, self.config, self.vae, self.dtype, num_steps), *args)
    need = memory.compiled_bytes(run)
    if need > self.budget:
      raise memory.MemoryBudgetError(
          f"Genfocus's {stage} stage at {wp}x{hp} needs {need / 2**20:.1f} MiB (weights "
          f"included), over the memory budget of {self.budget / 2**20:.1f} MiB: lower max_side "
          "(--max-side) or raise max_memory (--max-memory)")
    out = run(*args)
    return np.asarray(out, np.float32)[0, :h, :w]

__all__ = ["GenfocusRefocuser", "flux_config", "noise_key", "vae_config"]
