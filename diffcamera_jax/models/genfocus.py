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
leaves of `weights.load_genfocus_lora`. Details and sources: docs/genfocus.md.
"""
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffcamera_jax.models.autoencoder import AutoencoderKL
from diffcamera_jax.models.flux import (FluxConfig, apply_rope, chunked_attention, rope,
                                        timestep_embedding)
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
CONDITION_TIMESTEP = 0.0
CONDITION_GUIDANCE = 1.0
MAX_COC = 100.0  # defocus normalisation of the bokeh condition
TILE_TOKENS = 32  # tile side in packed tokens (512 pixels)
MIN_TILED_SIDE = 512  # pixels: their scripts never tile an image with a shorter side
# FLUX.1-dev's FlowMatchEulerDiscreteScheduler (dynamic, exponential shift).
BASE_SEQ_LEN, MAX_SEQ_LEN, BASE_SHIFT, MAX_SHIFT = 256, 4096, 0.5, 1.15
NUM_TRAIN_TIMESTEPS = 1000


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


# ----------------------------------------------------------------------------- transformer
#
# Token layout: [text | image | condition 1 | condition 2 ...]. Text and image tokens are
# modulated by `vec` (t, guidance) and never see an adapter; condition tokens are modulated by
# `cond_vec` (t = 0, guidance 1) and see the adapters. Image and condition tokens go through the
# same (image-side) base weights, so each layer runs one base matmul over all of them and the
# low-rank update over the condition rows only.


def _dense(p: Mapping, x: jnp.ndarray, dtype: Dtype) -> jnp.ndarray:
  """`x W + b`."""
  y = jnp.dot(x.astype(dtype), p["kernel"].astype(dtype))
  return y + p["bias"].astype(dtype) if "bias" in p else y


def _adapted(p: Mapping, x: jnp.ndarray, plain: int, dtype: Dtype) -> jnp.ndarray:
  """`x W + b` for all tokens, plus `(x a) b` (scale 1) for tokens from index `plain` on."""
  y = _dense(p, x, dtype)
  if "lora_a" not in p or plain == x.shape[1]:
    return y
  delta = jnp.dot(jnp.dot(x[:, plain:].astype(dtype), p["lora_a"].astype(dtype)),
                  p["lora_b"].astype(dtype))
  return jnp.concatenate([y[:, :plain], y[:, plain:] + delta], axis=1)


def _layer_norm(x: jnp.ndarray) -> jnp.ndarray:
  x32 = x.astype(jnp.float32)
  mean = x32.mean(-1, keepdims=True)
  var = jnp.square(x32 - mean).mean(-1, keepdims=True)
  return ((x32 - mean) * jax.lax.rsqrt(var + 1e-6)).astype(x.dtype)


def _by_part(x: jnp.ndarray, plain: int, fn: Callable, main: tuple, cond: tuple) -> jnp.ndarray:
  """`fn(tokens, *main)` on tokens before `plain`, `fn(tokens, *cond)` on the rest."""
  if plain == x.shape[1]:
    return fn(x, *main)
  return jnp.concatenate([fn(x[:, :plain], *main), fn(x[:, plain:], *cond)], axis=1)


def _modulate(x: jnp.ndarray, shift: jnp.ndarray, scale: jnp.ndarray) -> jnp.ndarray:
  return (1 + scale[:, None]) * _layer_norm(x) + shift[:, None]


def _gate(y: jnp.ndarray, gate: jnp.ndarray) -> jnp.ndarray:
  return gate[:, None] * y


def _rms_norm(scale: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
  x32 = x.astype(jnp.float32)
  x32 = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + 1e-6)
  return x32.astype(x.dtype) * scale.astype(x.dtype)


def _mlp_embed(p: Mapping, x: jnp.ndarray, dtype: Dtype) -> jnp.ndarray:
  return _dense(p["out_layer"], jax.nn.silu(_dense(p["in_layer"], x, dtype)), dtype)


def _vector(params: Mapping, config: FluxConfig, t: jnp.ndarray, guidance: jnp.ndarray | None,
            y: jnp.ndarray, dtype: Dtype) -> jnp.ndarray:
  """The modulation vector of (timestep, guidance, pooled text), as `FluxTransformer` builds it."""
  vec = _mlp_embed(params["time_in"], timestep_embedding(t).astype(dtype), dtype)
  if config.guidance_embed:
    vec = vec + _mlp_embed(params["guidance_in"], timestep_embedding(guidance).astype(dtype), dtype)
  return vec + _mlp_embed(params["vector_in"], y.astype(dtype), dtype)


def _modulation(p: Mapping, vec: jnp.ndarray, cond_vec: jnp.ndarray, n: int,
                dtype: Dtype) -> tuple[list, list]:
  """(shift, scale, gate) chunks for the plain tokens (base) and the conditions (adapted)."""
  main = jnp.split(_dense(p, jax.nn.silu(vec), dtype), n, -1)
  return main, jnp.split(_adapted(p, jax.nn.silu(cond_vec)[:, None], 0, dtype)[:, 0], n, -1)


def _heads(qkv: jnp.ndarray, config: FluxConfig, norm: Mapping) -> tuple[jnp.ndarray, ...]:
  q, k, v = jnp.split(qkv.reshape(*qkv.shape[:2], 3, config.num_heads, config.head_dim), 3, axis=2)
  return (_rms_norm(norm["query_norm"]["scale"], q[:, :, 0]),
          _rms_norm(norm["key_norm"]["scale"], k[:, :, 0]), v[:, :, 0])


def _attention(q, k, v, rope_cs, plain: int, cond_lengths: tuple[int, ...], isolate: bool,
               chunk: int) -> jnp.ndarray:
  """Attention over [text | image | conditions]: text and image queries see every token; each
  condition's queries see text, image and itself only (Genfocus's `group_mask`) when `isolate`."""
  q, k = apply_rope(q, *rope_cs), apply_rope(k, *rope_cs)
  if not isolate or len(cond_lengths) < 2:
    return chunked_attention(q, k, v, chunk)
  outs, start = [chunked_attention(q[:, :plain], k, v, chunk)], plain
  for n in cond_lengths:
    own = lambda x: jnp.concatenate([x[:, :plain], x[:, start:start + n]], axis=1)
    outs.append(chunked_attention(q[:, start:start + n], own(k), own(v), chunk))
    start += n
  return jnp.concatenate(outs, axis=1)


def _double_block(p, carry, vec, cond_vec, rope_cs, cond_lengths, isolate, config, dtype, chunk):
  """One double-stream block. `carry = (txt, x)` with x = [image | conditions]: text through the
  `txt_*` weights, x through the `img_*` weights, adapters on the conditions."""
  txt, x = carry
  lt, li = txt.shape[1], x.shape[1] - sum(cond_lengths)
  t_mod = jnp.split(_dense(p["txt_mod"]["lin"], jax.nn.silu(vec), dtype), 6, -1)
  i_mod, c_mod = _modulation(p["img_mod"]["lin"], vec, cond_vec, 6, dtype)
  tq, tk, tv = _heads(_dense(p["txt_attn"]["qkv"], _modulate(txt, *t_mod[:2]), dtype), config,
                      p["txt_attn"]["norm"])
  h = _by_part(x, li, _modulate, i_mod[:2], c_mod[:2])
  iq, ik, iv = _heads(_adapted(p["img_attn"]["qkv"], h, li, dtype), config, p["img_attn"]["norm"])
  cat = lambda a, b: jnp.concatenate([a, b], axis=1)
  out = _attention(cat(tq, iq), cat(tk, ik), cat(tv, iv), rope_cs, lt + li, cond_lengths,
                   isolate, chunk)
  txt = txt + _gate(_dense(p["txt_attn"]["proj"], out[:, :lt], dtype), t_mod[2])
  mlp = lambda h, f: _dense(f["fc2"], jax.nn.gelu(_dense(f["fc1"], h, dtype), approximate=True),
                            dtype)
  txt = txt + _gate(mlp(_modulate(txt, *t_mod[3:5]), p["txt_mlp"]), t_mod[5])
  x = x + _by_part(_adapted(p["img_attn"]["proj"], out[:, lt:], li, dtype), li, _gate,
                   i_mod[2:3], c_mod[2:3])
  h = _by_part(x, li, _modulate, i_mod[3:5], c_mod[3:5])
  h = jax.nn.gelu(_dense(p["img_mlp"]["fc1"], h, dtype), approximate=True)
  x = x + _by_part(_adapted(p["img_mlp"]["fc2"], h, li, dtype), li, _gate, i_mod[5:], c_mod[5:])
  return txt, x


def _single_block(p, x, vec, cond_vec, rope_cs, cond_lengths, isolate, config, dtype, chunk):
  """One single-stream block on x = [text | image | conditions]: text and image share `vec`, the
  conditions have their own modulation (Genfocus's per-branch `single_block_forward`)."""
  d, plain = config.hidden_size, x.shape[1] - sum(cond_lengths)
  mod, c_mod = _modulation(p["modulation"]["lin"], vec, cond_vec, 3, dtype)
  h = _adapted(p["linear1"], _by_part(x, plain, _modulate, mod[:2], c_mod[:2]), plain, dtype)
  q, k, v = _heads(h[..., :3 * d], config, p["norm"])
  attn = _attention(q, k, v, rope_cs, plain, cond_lengths, isolate, chunk)
  mlp = jax.nn.gelu(h[..., 3 * d:], approximate=True)
  out = _adapted(p["linear2"], jnp.concatenate([attn, mlp], -1), plain, dtype)
  return x + _by_part(out, plain, _gate, mod[2:], c_mod[2:])


def _blocks(params: Mapping, name: str, count: int, step: Callable, carry: Any) -> Any:
  """`step(block_params, carry)` over a stack: scanned (`name`) or numbered (`name_0`, ...)."""
  if name in params:
    return jax.lax.scan(lambda c, p: (step(p, c), None), carry, params[name])[0]
  for i in range(count):
    carry = step(params[f"{name}_{i}"], carry)
  return carry


def velocity(params: Mapping, config: FluxConfig, img: jnp.ndarray, img_ids: jnp.ndarray,
             conditions: Sequence[jnp.ndarray], cond_ids: Sequence[jnp.ndarray],
             txt: jnp.ndarray, txt_ids: jnp.ndarray, y: jnp.ndarray, t: jnp.ndarray,
             guidance: jnp.ndarray | None = None, *, condition_t: float = CONDITION_TIMESTEP,
             condition_guidance: float = CONDITION_GUIDANCE, isolate_conditions: bool = True,
             dtype: Dtype = jnp.float32, attention_chunk: int = 0) -> jnp.ndarray:
  """Velocity `[B, L, out_channels]` of the image tokens, Genfocus's `transformer_forward`.

  img `[B, L, in_channels]` packed noisy latents; conditions: packed condition latents
  `[B, L_i, in_channels]`; *_ids `[L, 3]` position ids; txt `[B, Lt, C]` and its ids (zeros);
  y `[B, vec_in_dim]` pooled text; t `[B]` in [0, 1]; guidance `[B]` (guidance-distilled
  configs). Image and text tokens see the base weights at (t, guidance); condition tokens the
  adapters at (`condition_t`, `condition_guidance`); conditions attend to each other only if not
  `isolate_conditions`. `params`: base FLUX params (scanned or not) with the adapter leaves of
  `weights.load_genfocus_lora` merged in.
  """
  if len(conditions) != len(cond_ids):
    raise ValueError(f"velocity: {len(conditions)} conditions but {len(cond_ids)} id arrays")
  if config.guidance_embed and guidance is None:
    raise ValueError("velocity: `guidance` is required by a guidance-distilled config")
  b, li = img.shape[:2]
  cond_lengths = tuple(c.shape[1] for c in conditions)
  x = _adapted(params["img_in"], jnp.concatenate([img, *conditions], axis=1), li, dtype)
  txt = _dense(params["txt_in"], txt, dtype)
  vec = _vector(params, config, t, guidance, y, dtype)
  cond_vec = _vector(params, config, jnp.full((b,), condition_t, jnp.float32),
                     jnp.full((b,), condition_guidance, jnp.float32), y, dtype)
  ids = jnp.concatenate([jnp.broadcast_to(i, (b, *i.shape[-2:]))
                         for i in (txt_ids, img_ids, *cond_ids)], axis=1)
  rope_cs = rope(ids, config.axes_dim, config.theta)
  kw = dict(vec=vec, cond_vec=cond_vec, rope_cs=rope_cs, cond_lengths=cond_lengths,
            isolate=isolate_conditions, config=config, dtype=dtype, chunk=attention_chunk)
  txt, x = _blocks(params, "double_blocks", config.depth,
                   lambda p, c: _double_block(p, c, **kw), (txt, x))
  x = _blocks(params, "single_blocks", config.depth_single,
              lambda p, c: _single_block(p, c, **kw), jnp.concatenate([txt, x], axis=1))
  final = params["final_layer"]
  shift, scale = jnp.split(_dense(final["adaLN_modulation"], jax.nn.silu(vec), dtype), 2, -1)
  lt = txt.shape[1]
  return _dense(final["linear"], _modulate(x[:, lt:lt + li], shift, scale), dtype)


# ----------------------------------------------------------------------------- sampler


def calculate_shift(image_tokens: int) -> float:
  """FLUX.1-dev's `mu`: linear in the number of image tokens (0.5 at 256, 1.15 at 4096)."""
  m = (MAX_SHIFT - BASE_SHIFT) / (MAX_SEQ_LEN - BASE_SEQ_LEN)
  return image_tokens * m + (BASE_SHIFT - m * BASE_SEQ_LEN)


def sigma_schedule(num_steps: int, image_tokens: int) -> tuple[np.ndarray, np.ndarray]:
  """(sigmas `[num_steps + 1]` ending at 0, model timesteps `[num_steps]` in [0, 1]), float32.

  `linspace(1, 1/N, N)` shifted by `e^mu / (e^mu + 1/s - 1)`, computed in float32 like diffusers'
  scheduler; the model sees `(1000 s) / 1000` as Genfocus passes it.
  """
  if num_steps < 1:
    raise ValueError(f"sigma_schedule: num_steps must be >= 1, got {num_steps}")
  s = np.linspace(1.0, 1 / num_steps, num_steps).astype(np.float32)
  e = math.exp(calculate_shift(image_tokens))
  s = (e / (e + (1 / s - 1) ** 1.0)).astype(np.float32)
  t = (s * np.float32(NUM_TRAIN_TIMESTEPS)).astype(np.float32) / np.float32(NUM_TRAIN_TIMESTEPS)
  return np.append(s, np.float32(0.0)).astype(np.float32), t.astype(np.float32)


def euler_sample(velocity_fn: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray],
                 noise: jnp.ndarray, sigmas: np.ndarray, timesteps: np.ndarray) -> jnp.ndarray:
  """`x <- x + (s_{i+1} - s_i) v(x, t_i)` from `noise` over the schedule (one traced step)."""
  def step(x, i):
    v = velocity_fn(x, jnp.asarray(timesteps)[i])
    return (x.astype(jnp.float32) + (jnp.asarray(sigmas)[i + 1] - jnp.asarray(sigmas)[i])
            * v.astype(jnp.float32)), None

  return jax.lax.scan(step, noise.astype(jnp.float32), jnp.arange(len(timesteps)))[0]


# ----------------------------------------------------------------------------- tiling


def use_tiling(image_hw: tuple[int, int], tile: int = TILE_TOKENS) -> bool:
  """Whether Genfocus's scripts tile an `image_hw` photo: short side >= 512 pixels (and, at the
  FLUX VAE's 16 pixels per token, at least one tile's worth of tokens)."""
  grid_h, grid_w = image_hw[0] // 16, image_hw[1] // 16
  return min(image_hw) >= MIN_TILED_SIDE and grid_h * grid_w >= tile * tile


def tile_origins(grid_h: int, grid_w: int, tile: int = TILE_TOKENS) -> list[tuple[int, int]]:
  """(row, col) token origins of the tiles, in Genfocus's order: stride `tile - tile/8`, the last
  tile flush with the far edge."""
  if grid_h < tile or grid_w < tile:
    raise ValueError(f"tile_origins: grid {grid_h}x{grid_w} is smaller than a {tile}-token tile")
  stride = tile - tile // 8

  def axis(n):
    starts = list(range(0, max(1, n - tile + 1), stride))
    return starts + [n - tile] if starts[-1] + tile < n else starts

  rows, cols = np.meshgrid(axis(grid_h), axis(grid_w))  # 'xy': columns outer, rows inner
  return list(zip(rows.ravel().tolist(), cols.ravel().tolist()))


def tile_weights(tile: int = TILE_TOKENS) -> np.ndarray:
  """Blend weights `[tile·tile]`: `exp(-(u² + v²))` over u, v in linspace(-2, 2, tile)."""
  d = np.linspace(-2.0, 2.0, tile, dtype=np.float32)
  return np.exp(-(d[:, None] ** 2 + d[None] ** 2)).reshape(-1).astype(np.float32)


def tiled_velocity(velocity_fn: Callable, img: jnp.ndarray, conditions: Sequence[jnp.ndarray],
                   grid_hw: tuple[int, int], tile: int = TILE_TOKENS) -> jnp.ndarray:
  """Velocity of all image tokens from overlapping tiles, Genfocus's tiled denoising.

  Each tile takes the same token window of the image and of every condition, with the position
  ids of a tile at the origin (`image_ids(2 tile, 2 tile)`, condition offsets dropped), and calls
  `velocity_fn(img_tile, cond_tiles, ids)`; predictions are averaged with `tile_weights`.
  """
  grid_h, grid_w = grid_hw
  origins = tile_origins(grid_h, grid_w, tile)
  index = np.arange(grid_h * grid_w).reshape(grid_h, grid_w)
  tiles = jnp.asarray(np.stack([index[r:r + tile, c:c + tile].reshape(-1) for r, c in origins]))
  weights = jnp.asarray(tile_weights(tile))
  ids = image_ids(2 * tile, 2 * tile)

  window = lambda idx: velocity_fn(img[:, idx], [c[:, idx] for c in conditions], ids)

  def one(carry, idx):
    acc, total = carry
    v = window(idx).astype(jnp.float32)
    return (acc.at[:, idx].add(v * weights[None, :, None]), total.at[idx].add(weights)), None

  channels = jax.eval_shape(window, tiles[0]).shape[-1]
  acc = jnp.zeros((*img.shape[:2], channels), jnp.float32)
  (acc, total), _ = jax.lax.scan(one, (acc, jnp.zeros(img.shape[1], jnp.float32)), tiles)
  return acc / total[None, :, None]


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
