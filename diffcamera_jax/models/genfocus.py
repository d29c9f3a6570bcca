"""Genfocus (Generative Refocusing, arXiv 2512.16923) on our FLUX.1 transformer.

Genfocus publishes two LoRAs on FLUX.1-dev (`deblurNet.safetensors`, `bokehNet.safetensors`) and
runs them with OminiControl's condition-token scheme (`Genfocus/pipeline/flux.py`):

- every condition image is VAE-encoded and packed into its own token stream, with the image
  tokens' position ids (plus an optional (row, col) offset: none in the released stages);
- the streams are [text | image | condition 1 | condition 2 ...]; text and image tokens attend to
  every stream, each condition stream to text, image and itself only;
- image and text tokens are modulated by (t, guidance); condition tokens by t = 0, guidance 1;
- the LoRA acts on the condition streams only (image and text tokens see the base FLUX), at
  scale exactly 1, in the layers listed in `weights/genfocus_layout.py`;
- the output is the velocity of the image tokens, sampled with FLUX.1-dev's flow-matching Euler
  schedule, optionally in overlapping 32 x 32-token tiles blended with Gaussian weights.

Deblur stage: one condition, the blurred photo; prompt "a sharp photo with everything in focus",
guidance 3.5. Bokeh stage: two conditions, the all-in-focus photo and the defocus map
`clip(|K (d - d_f)| / 100, 0, 1)` of a disparity map d (as an RGB image fed to the VAE without
the [-1, 1] mapping); prompt "an excellent photo with a large aperture", guidance 1.

Everything here is a pure function of arrays and a params tree: the base FLUX params as
`weights.load_flux_transformer` builds them (scanned or not) merged with the `lora_a`/`lora_b`
leaves of `weights.load_genfocus_lora`. This module holds the stages, their conditions and the
defocus map; the forward is `genfocus_transformer`, the sampler and tiling `genfocus_sampling`.
Details and sources: docs/genfocus.md.
"""
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from diffcamera_jax.models.autoencoder import AutoencoderKL
from diffcamera_jax.models.flux import FluxConfig
from diffcamera_jax.models.genfocus_sampling import (euler_sample, sigma_schedule, tiled_velocity,
                                                     use_tiling)
from diffcamera_jax.models.genfocus_transformer import velocity
from diffcamera_jax.models.flux_diffcamera import image_ids, pack_latents, unpack_latents

Dtype = Any
DEBLUR, BOKEH = "deblur", "bokeh"


@dataclasses.dataclass(frozen=True)
class Stage:
  """One Genfocus LoRA and the settings its released inference scripts run it with."""
  lora_file: str
  adapter: str  # the adapter name their scripts load the file under
  prompt: str
  guidance: float  # FLUX.1-dev's distilled-guidance input of the image (and text) tokens
  num_conditions: int


STAGES = {
    DEBLUR: Stage("deblurNet.safetensors", "deblurring", "a sharp photo with everything in focus",
                  3.5, 1),
    BOKEH: Stage("bokehNet.safetensors", "bokeh", "an excellent photo with a large aperture",
                 1.0, 2),
}
NUM_STEPS = 28
MAX_COC = 100.0  # defocus normalisation of the bokeh condition


# ----------------------------------------------------------------------------- defocus map


def disparity_from_depth(depth: np.ndarray) -> np.ndarray:
  """`1 / depth` in float32; non-positive (invalid) depths count as infinitely far (≈ 0)."""
  depth = np.asarray(depth, np.float32)
  return 1.0 / np.where(depth > 0.0, depth, np.finfo(np.float32).max)


def focus_disparity(disparity: np.ndarray, point: tuple[int, int] | None = None,
                    mask: np.ndarray | None = None) -> float:
  """The disparity to focus on: the median over `mask > 0` (the whole map if the mask is
  empty), else the value at pixel `point = (x, y)` (clamped to the map), else at the centre."""
  disparity = np.asarray(disparity, np.float32)
  if mask is not None:
    inside = disparity[np.asarray(mask) > 0]
    return float(np.median(inside if inside.size else disparity))
  h, w = disparity.shape[-2:]
  x, y = point if point is not None else (w // 2, h // 2)
  return float(disparity[..., min(max(int(y), 0), h - 1), min(max(int(x), 0), w - 1)])


def defocus_map(disparity: jnp.ndarray, focus: float | jnp.ndarray, k: float | jnp.ndarray,
                max_coc: float = MAX_COC) -> jnp.ndarray:
  """`clip(|K (d - d_f)| / max_coc, 0, 1)` per pixel: the blur the bokeh stage is asked for."""
  d = jnp.asarray(disparity, jnp.float32)
  return jnp.clip(jnp.abs(k * (d - jnp.asarray(focus, jnp.float32))) / max_coc, 0.0, 1.0)


# ----------------------------------------------------------------------------- condition tokens


def encode_condition(vae: AutoencoderKL, vae_params: Any, images: jnp.ndarray, *,
                     normalize: bool = True, noise: jnp.ndarray | None = None) -> jnp.ndarray:
  """Packed tokens `[B, (h/2)(w/2), 4C]` of condition images `[B, H, W, 3]`.

  `normalize`: photos in [0, 1] are mapped to [-1, 1] first (as diffusers' image processor does);
  the bokeh stage's defocus map goes in unmapped. Genfocus draws a posterior sample: pass its
  standard-normal `noise` `[B, h, w, C]`; None takes the posterior mean.
  """
  x = 2.0 * images - 1.0 if normalize else images
  mean, logvar = vae.apply({"params": vae_params}, x.astype(jnp.float32),
                           method=AutoencoderKL.encode)
  z = mean if noise is None else mean + jnp.exp(0.5 * logvar) * noise
  c = vae.config
  return pack_latents((z - c.shift_factor) * c.scaling_factor)


def condition_ids(latent_h: int, latent_w: int, delta: tuple[float, float] = (0.0, 0.0)
                  ) -> jnp.ndarray:
  """Position ids `[(h/2)(w/2), 3]` of a condition: the image grid shifted by (row, col)."""
  return image_ids(latent_h, latent_w).at[:, 1:].add(jnp.asarray(delta, jnp.float32))


def defocus_condition_image(defocus: jnp.ndarray) -> jnp.ndarray:
  """`[..., H, W]` defocus map -> the 3-channel image `[..., H, W, 3]` the VAE encodes."""
  return jnp.repeat(jnp.asarray(defocus, jnp.float32)[..., None], 3, axis=-1)


# ----------------------------------------------------------------------------- stages


def generate(params: Mapping, config: FluxConfig, noise: jnp.ndarray, latent_hw: tuple[int, int],
             conditions: Sequence[jnp.ndarray], cond_ids: Sequence[jnp.ndarray],
             text: Mapping[str, np.ndarray], guidance: float, *, num_steps: int = NUM_STEPS,
             tiled: bool = False, dtype: Dtype = jnp.float32,
             attention_chunk: int = 0) -> jnp.ndarray:
  """Packed latents `[B, L, 4C]` sampled from `noise` (packed, `[B, L, 4C]`) for one stage.

  `text`: `{"text_tokens": [Lt, C], "text_pooled": [C']}` (`flux_diffcamera.load_text_embeddings`).
  `latent_hw`: the VAE latent size (h, w), the token grid being (h/2, w/2).
  """
  b = noise.shape[0]
  grid = (latent_hw[0] // 2, latent_hw[1] // 2)
  if noise.shape[1] != grid[0] * grid[1]:
    raise ValueError(f"generate: noise has {noise.shape[1]} tokens, latents {latent_hw} make "
                     f"{grid[0] * grid[1]}")
  txt = jnp.broadcast_to(jnp.asarray(text["text_tokens"]), (b, *np.shape(text["text_tokens"])))
  y = jnp.broadcast_to(jnp.asarray(text["text_pooled"]), (b, *np.shape(text["text_pooled"])))
  txt_ids = jnp.zeros((txt.shape[1], 3), jnp.float32)
  g = jnp.full((b,), guidance, jnp.float32)
  sigmas, timesteps = sigma_schedule(num_steps, grid[0] * grid[1])

  def v(x, t):
    tt = jnp.full((b,), t, jnp.float32)
    call = lambda img, conds, img_ids, ids: velocity(
        params, config, img, img_ids, conds, ids, txt, txt_ids, y, tt, g, dtype=dtype,
        attention_chunk=attention_chunk)
    if tiled:
      return tiled_velocity(lambda img, conds, ids: call(img, conds, ids, [ids] * len(conds)),
                            x, conditions, grid)
    return call(x, conditions, image_ids(*latent_hw), cond_ids)

  return euler_sample(v, noise, sigmas, timesteps)


def decode(vae: AutoencoderKL, vae_params: Any, tokens: jnp.ndarray,
           latent_hw: tuple[int, int]) -> jnp.ndarray:
  """Images `[B, H, W, 3]` in [0, 1] from packed latents."""
  c = vae.config
  z = unpack_latents(tokens, *latent_hw) / c.scaling_factor + c.shift_factor
  x = vae.apply({"params": vae_params}, z, method=AutoencoderKL.decode)
  return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)


def stage_latents(stage: str, params: Mapping, config: FluxConfig, vae: AutoencoderKL,
                  vae_params: Any, text: Mapping[str, np.ndarray], images: Sequence[jnp.ndarray],
                  noise: jnp.ndarray, *,
                  condition_noise: Sequence[jnp.ndarray | None] | None = None,
                  num_steps: int = NUM_STEPS, tiled: bool | None = None,
                  dtype: Dtype = jnp.float32, attention_chunk: int = 0) -> jnp.ndarray:
  """Packed latents `[B, L, 64]` of one Genfocus stage from its condition images `[B, H, W, 3]`
  in [0, 1].

  `stage="deblur"`: `images = [blurred photo]`. `stage="bokeh"`: `images = [all-in-focus photo,
  defocus_condition_image(defocus_map(...))]`. `params`: base + that stage's adapters; `text`: the
  stage's prompt embeddings; `noise`: packed initial latents `[B, (h/2)(w/2), 64]` for VAE latents
  h x w; `condition_noise`: the VAE posterior draws per condition (None: posterior means).
  `tiled` defaults to Genfocus's rule (`use_tiling`).
  """
  spec = STAGES[stage]
  if len(images) != spec.num_conditions:
    raise ValueError(f"{stage} stage: expects {spec.num_conditions} condition image(s), "
                     f"got {len(images)}")
  hw = images[0].shape[1:3]
  f = vae.config.downsample_factor
  latent_hw = (hw[0] // f, hw[1] // f)
  condition_noise = condition_noise or [None] * len(images)
  # The photo is normalised to [-1, 1]; the bokeh stage's defocus map is not.
  conds = [encode_condition(vae, vae_params, im, normalize=(i == 0), noise=n)
           for i, (im, n) in enumerate(zip(images, condition_noise))]
  ids = [condition_ids(*latent_hw)] * len(conds)
  tiled = use_tiling(tuple(hw)) if tiled is None else tiled
  return generate(params, config, noise, latent_hw, conds, ids, text, spec.guidance,
                  num_steps=num_steps, tiled=tiled, dtype=dtype, attention_chunk=attention_chunk)


def run_stage(stage: str, params: Mapping, config: FluxConfig, vae: AutoencoderKL,
              vae_params: Any, text: Mapping[str, np.ndarray], images: Sequence[jnp.ndarray],
              noise: jnp.ndarray, **kwargs) -> jnp.ndarray:
  """One Genfocus stage from pixels to pixels: `stage_latents` (same arguments), decoded to
  images `[B, H, W, 3]` in [0, 1]."""
  f = vae.config.downsample_factor
  latent_hw = (images[0].shape[1] // f, images[0].shape[2] // f)
  return decode(vae, vae_params, stage_latents(stage, params, config, vae, vae_params, text,
                                               images, noise, **kwargs), latent_hw)
