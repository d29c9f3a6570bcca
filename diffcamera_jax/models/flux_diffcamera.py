"""DiffCamera conditioning on a (frozen, LoRA-adapted) FLUX.1 transformer.

The image stream holds `[noisy target | reference | depth | camera]` tokens:
- target and reference latents are packed 2x2 (FLUX's 64-channel tokens) and embedded by FLUX's own
  `img_in`; their position ids share (y, x) and differ in the index axis (0 vs. 1), so attention
  sees them as aligned but distinct images (the role the index axis plays in FLUX's RoPE);
- the disparity map (image resolution) is cut into the patches each token covers and projected by a
  learned `depth_in` layer (index 2, same (y, x)); examples whose depth is dropped get the learned
  `depth_null` embedding — our formulation: no VAE pass over a one-channel map, and the same model
  contract as the DiT;
- camera features go through Fourier features and a learned projection (`camera_in`, index 3).
Text: fixed precomputed T5 tokens and pooled CLIP vector (one prompt suits refocusing), stored as
frozen params `text_tokens` / `text_pooled` (zeros unless loaded with `load_text_embeddings`).
The call contract is the DiT's (docs/architecture.md): the train step and sampler need no change.
"""
import io
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from jax.sharding import Mesh

from diffcamera_jax.models.inputs import config_dtype, example_inputs
from diffcamera_jax.models import lora as lora_lib
from diffcamera_jax.models.autoencoder import VAE_PRESETS, AutoencoderKL, FluxCodec
from diffcamera_jax.models.camera import CameraEmbedder
from diffcamera_jax.models.flux import FLUX_PRESETS, FluxConfig, FluxTransformer, lora_targets
from diffcamera_jax.models.lora import LoRAConfig, LoRADense
from diffcamera_jax.sharding import logical_rules, logical_shardings
from diffcamera_jax.weights import load_autoencoder, load_flux_transformer
from diffcamera_jax import user_files
from diffcamera_jax.weights.safetensors_io import SafetensorsCheckpoint

Dtype = Any
CONDITION_MODULES = ("depth_in", "depth_null", "camera_in")  # trained along with the adapters
TEXT_PARAMS = ("text_tokens", "text_pooled")
TEXT_LEN = {"dev": 512, "schnell": 256, "tiny": 8}  # T5 tokens when no embeddings file is given
ATTENTION_CHUNK = 1024  # query block for the full-size variants
GUIDANCE = 1.0  # FLUX.1-dev's distilled-guidance input while fine-tuning and refocusing


def pack_latents(latents: jnp.ndarray) -> jnp.ndarray:
  """`[B, h, w, C]` VAE latents -> `[B, (h/2)(w/2), 4C]` tokens (channel-major 2x2 patches)."""
  b, h, w, c = latents.shape
  if h % 2 or w % 2:
    raise ValueError(f"pack_latents: latent size {(h, w)} must be even")
  x = latents.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4)
  return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(tokens: jnp.ndarray, h: int, w: int) -> jnp.ndarray:
  """Inverse of `pack_latents`: `[B, (h/2)(w/2), 4C]` -> `[B, h, w, C]`."""
  b, _, c4 = tokens.shape
  x = tokens.reshape(b, h // 2, w // 2, c4 // 4, 2, 2).transpose(0, 1, 4, 2, 5, 3)
  return x.reshape(b, h, w, c4 // 4)


def image_ids(h: int, w: int, index: int = 0) -> jnp.ndarray:
  """Position ids `[(h/2)(w/2), 3]` = (index, row, col) of the packed tokens of an h x w latent."""
  rows, cols = jnp.meshgrid(jnp.arange(h // 2), jnp.arange(w // 2), indexing="ij")
  ids = jnp.stack([jnp.full_like(rows, index), rows, cols], axis=-1)
  return ids.reshape(-1, 3).astype(jnp.float32)


class FluxDiffCamera(nn.Module):
  """`apply(x_t, t, reference, disparity, camera, depth_keep, train) -> v_hat [B, h, w, C]`.

  x_t, reference: FLUX VAE latents `[B, h, w, 16]` (h, w even); t `[B]` in [0, 1];
  disparity `[B, H, W]` with H/h = W/w an integer, or None; camera `[B, F]` from
  `camera_features`; depth_keep `[B]` bool.
  """
  config: FluxConfig
  lora: LoRAConfig | None = None
  text_len: int = 512
  guidance: float = 1.0  # guidance-distilled (dev) models take a guidance strength
  camera_tokens: int = 1
  camera_frequencies: int = 8
  scan_layers: bool = False
  remat: str = "none"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32  # the frozen base (bf16 on accelerators)
  condition_param_dtype: Dtype = jnp.float32  # trained condition projections
  patch_size: int = 2  # latent pixels per token side (FLUX packs 2x2); read by the train step
  attention_chunk: int = 0  # query block size in attention (bounds score memory at 1024^2)

  def sequence_length(self, grid_tokens: int) -> int:
    """Tokens per example for `grid_tokens` packed latent patches: text, target, reference,
    depth and camera."""
    return self.text_len + 3 * grid_tokens + self.camera_tokens

  @property
  def attention_heads(self) -> int:
    return self.config.num_heads

  def _check(self, x_t, t, reference, disparity, camera, depth_keep) -> None:
    b, h, w, c = x_t.shape
    if self.patch_size != 2:
      raise ValueError(f"FluxDiffCamera.patch_size must be 2 (FLUX packs 2x2), got {self.patch_size}")
    if 4 * c != self.config.in_channels or h % 2 or w % 2:
      raise ValueError(f"FluxDiffCamera: x_t must be [B, h, w, {self.config.in_channels // 4}] with "
                       f"h, w even; got {x_t.shape}")
    if reference.shape != x_t.shape:
      raise ValueError(f"FluxDiffCamera: reference {reference.shape} must match x_t {x_t.shape}")
    if t.shape != (b,) or depth_keep.shape != (b,) or camera.ndim != 2 or camera.shape[0] != b:
      raise ValueError(f"FluxDiffCamera: t {t.shape}, depth_keep {depth_keep.shape} must be [{b}] "
                       f"and camera [{b}, F], got {camera.shape}")
    if disparity is not None and (
        disparity.ndim != 3 or disparity.shape[0] != b or disparity.shape[1] % h
        or disparity.shape[2] % w or disparity.shape[1] // h != disparity.shape[2] // w):
      raise ValueError(f"FluxDiffCamera: disparity must be [{b}, H, W] with H/h = W/w an integer "
                       f"for latents {h}x{w}; got {disparity.shape}")

  def _depth_tokens(self, disparity, depth_keep, latent_hw) -> jnp.ndarray:
    b = depth_keep.shape[0]
    null = self.param("depth_null",
                      nn.with_logical_partitioning(nn.initializers.normal(0.02), ("embed",)),
                      (self.config.hidden_size,), self.condition_param_dtype)
    if disparity is None:  # no depth at all: every example takes the null embedding
      num = (latent_hw[0] // 2) * (latent_hw[1] // 2)
      return jnp.broadcast_to(null.astype(self.dtype), (b, num, self.config.hidden_size))
    p = 2 * (disparity.shape[1] // latent_hw[0])  # image pixels per token side
    gh, gw = disparity.shape[1] // p, disparity.shape[2] // p
    patches = (2.0 * disparity - 1.0).reshape(b, gh, p, gw, p).transpose(0, 1, 3, 2, 4)
    tokens = LoRADense(self.config.hidden_size, ("channels", "embed"), dtype=self.dtype,
                       param_dtype=self.condition_param_dtype, name="depth_in")(
                           patches.reshape(b, gh * gw, p * p))
    return jnp.where(depth_keep[:, None, None], tokens, null.astype(tokens.dtype))

  @nn.compact
  def __call__(self, x_t: jnp.ndarray, t: jnp.ndarray, reference: jnp.ndarray,
               disparity: jnp.ndarray | None, camera: jnp.ndarray, depth_keep: jnp.ndarray,
               train: bool = False) -> jnp.ndarray:
    del train  # no dropout in FLUX
    self._check(x_t, t, reference, disparity, camera, depth_keep)
    c = self.config
    b, h, w, _ = x_t.shape
    img = jnp.concatenate([pack_latents(x_t), pack_latents(reference)], axis=1)
    img_ids = jnp.concatenate([image_ids(h, w, 0), image_ids(h, w, 1)])

    depth = self._depth_tokens(disparity, depth_keep, (h, w))
    cam = CameraEmbedder(self.camera_tokens, c.hidden_size, self.camera_frequencies,
                         dtype=self.dtype, param_dtype=self.condition_param_dtype,
                         name="camera_in")(camera)
    extra = jnp.concatenate([depth, cam.astype(depth.dtype)], axis=1)
    cam_ids = jnp.zeros((self.camera_tokens, 3), jnp.float32).at[:, 0].set(3.0)
    extra_ids = jnp.concatenate([image_ids(h, w, 2), cam_ids])

    zeros = nn.initializers.zeros_init()
    txt = self.param("text_tokens", nn.with_logical_partitioning(zeros, (None, "channels")),
                     (self.text_len, c.context_in_dim), self.param_dtype)
    pooled = self.param("text_pooled", nn.with_logical_partitioning(zeros, ("channels",)),
                        (c.vec_in_dim,), self.param_dtype)
    txt = jnp.broadcast_to(txt.astype(self.dtype), (b, *txt.shape))
    pooled = jnp.broadcast_to(pooled.astype(self.dtype), (b, *pooled.shape))
    guidance = jnp.full((b,), self.guidance, jnp.float32) if c.guidance_embed else None

    out = FluxTransformer(c, lora=self.lora, dtype=self.dtype, param_dtype=self.param_dtype,
                          scan_layers=self.scan_layers, remat=self.remat,
                          attention_chunk=self.attention_chunk, name="flux")(
                              img, img_ids, txt, jnp.zeros((self.text_len, 3), jnp.float32), t,
                              pooled, guidance, extra, extra_ids)
    return unpack_latents(out[:, :(h // 2) * (w // 2)], h, w).astype(jnp.float32)


def load_text_embeddings(path: str, context_dim: int, pooled_dim: int) -> dict[str, np.ndarray]:
  """`{"text_tokens": [Lt, context_dim], "text_pooled": [pooled_dim]}` from a file.

  `.safetensors` / `.npz`: arrays `txt` (T5 tokens, `[Lt, C]` or `[1, Lt, C]`) and optionally
  `y` (pooled CLIP, `[C']` or `[1, C']`; zeros if absent). `.npy`: the T5 tokens only. Build the
  model with `text_len = Lt` (FLUX's T5 outputs include the padded positions, which are not zero).
  Local or in a bucket (`gs://...`, any `etils.epath` path).
  """
  if not epath.Path(path).exists():
    raise FileNotFoundError(f"text embeddings file {path!r} (config.flux.text_embeddings) not found")
  if not user_files.is_remote(path):
    user_files.regular_file(path, "text embeddings file")  # a FIFO would block the read
  if path.endswith(".safetensors"):
    f = SafetensorsCheckpoint(path)
    arrays = {n: np.asarray(f.read(n)) for n in f.names()}
  elif path.endswith((".npz", ".npy")):
    loaded = np.load(io.BytesIO(epath.Path(path).read_bytes()), allow_pickle=False)
    arrays = dict(loaded) if path.endswith(".npz") else {"txt": loaded}
  else:
    raise ValueError(f"text embeddings {path!r}: expected .safetensors, .npz or .npy")
  if "txt" not in arrays:
    raise ValueError(f"text embeddings {path!r}: no array named 'txt' (found {sorted(arrays)})")
  txt = np.asarray(arrays["txt"], np.float32)
  txt = txt[0] if txt.ndim == 3 and txt.shape[0] == 1 else txt
  if txt.ndim != 2 or txt.shape[1] != context_dim:
    raise ValueError(f"text embeddings {path!r}: 'txt' must be [Lt, {context_dim}], "
                     f"got {arrays['txt'].shape}")
  y = np.asarray(arrays.get("y", np.zeros(pooled_dim)), np.float32).reshape(-1)
  if y.shape != (pooled_dim,):
    raise ValueError(f"text embeddings {path!r}: 'y' must have {pooled_dim} values, got {y.shape}")
  return {"text_tokens": txt, "text_pooled": y}


# ----------------------------------------------------------------------------- factory


def build_flux_model(config: ml_collections.ConfigDict,
                     rng: jax.Array | None = None) -> tuple[FluxDiffCamera, FluxCodec]:
  """(FluxDiffCamera, FluxCodec) for `config.flux` / `config.model` (model.name="flux").

  The VAE params are loaded from `config.flux.vae_weights` (diffusers layout) or, when empty,
  randomly initialised (tests). The transformer's params come from `init_flux_params`.
  """
  f, m = config.flux, config.model
  if f.variant not in FLUX_PRESETS:
    raise ValueError(f"config.flux.variant must be one of {sorted(FLUX_PRESETS)}, got {f.variant!r}")
  dtype, param_dtype = config_dtype(m.dtype, "dtype"), config_dtype(m.param_dtype, "param_dtype")
  flux_config = FLUX_PRESETS[f.variant]
  lora = None
  if f.lora_rank:
    lora = LoRAConfig(rank=f.lora_rank, alpha=f.lora_alpha, targets=lora_targets(f.lora_targets))
  text_len = TEXT_LEN[f.variant]
  if f.text_embeddings:
    text_len = load_text_embeddings(f.text_embeddings, flux_config.context_in_dim,
                                    flux_config.vec_in_dim)["text_tokens"].shape[0]
  model = FluxDiffCamera(flux_config, lora=lora, text_len=text_len, guidance=GUIDANCE,
                         camera_frequencies=m.camera_frequencies, scan_layers=m.scan_layers,
                         remat=m.remat, dtype=dtype, param_dtype=param_dtype,
                         attention_chunk=ATTENTION_CHUNK if f.variant != "tiny" else 0)

  vae = AutoencoderKL(VAE_PRESETS["tiny" if f.variant == "tiny" else "flux"])
  rng = jax.random.key(config.seed) if rng is None else rng
  example = jnp.zeros((1, 2 * vae.config.downsample_factor, 2 * vae.config.downsample_factor, 3))
  if f.vae_weights:
    vae_params = load_autoencoder(f.vae_weights, jax.eval_shape(vae.init, rng, example)["params"])
  else:
    vae_params = jax.jit(vae.init)(rng, example)["params"]
  return model, FluxCodec(params=vae_params, config=vae.config)


def init_flux_params(model: FluxDiffCamera, codec: FluxCodec, config: ml_collections.ConfigDict,
                     mesh: Mesh, rng: jax.Array,
                     image_hw: tuple[int, int] | None = None) -> tuple[dict, Any]:
  """(params, shardings): the base from `config.flux.transformer_weights`, the rest initialised.

  Everything is created sharded: the checkpoint streams leaf by leaf into the shardings the
  logical axis rules give, and the adapters / condition layers / text come from a jitted init that
  returns only them (XLA drops the unused random base). Text embeddings are loaded if configured.
  """
  rules = logical_rules(config)
  inputs = example_inputs(codec, tuple(image_hw or config.data.image_size))
  init_boxed = lambda r: model.init({"params": r}, *inputs)["params"]
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    abstract_boxed = jax.eval_shape(init_boxed, rng)
  shardings = logical_shardings(abstract_boxed, mesh, rules)
  abstract = nn.unbox(abstract_boxed)

  loaded: dict = {}
  if config.flux.transformer_weights:
    loaded = {"flux": load_flux_transformer(config.flux.transformer_weights, abstract["flux"],
                                            shardings=shardings["flux"])}
  skip = set(lora_lib.flatten_paths(loaded))
  rest_shardings = lora_lib.drop_paths(shardings, skip)

  def init_rest(r):
    return lora_lib.drop_paths(nn.unbox(init_boxed(r)), skip)

  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    rest = jax.jit(init_rest, out_shardings=rest_shardings)(rng)
  params = lora_lib.merge_params(loaded, rest)
  if config.flux.text_embeddings:
    text = load_text_embeddings(config.flux.text_embeddings, model.config.context_in_dim,
                                model.config.vec_in_dim)
    for name, value in text.items():
      params[name] = jax.device_put(value.astype(abstract[name].dtype), shardings[name])
  return params, shardings


def load_frozen_base(config: ml_collections.ConfigDict, model: FluxDiffCamera, codec: FluxCodec,
                     mesh: Mesh, image_hw: tuple[int, int] | None = None) -> tuple[Any, Any]:
  """`(frozen_params, frozen_sharding)`: the parts of a FLUX model that are not trained.

  The base transformer streams from `config.flux.transformer_weights` into its shardings (text
  embeddings from `config.flux.text_embeddings`). Without weights only the "tiny" variant is
  allowed: its base is then randomly initialised from `config.seed` (the same every call, so a
  resumed run, and inference on its export, see the same base).
  """
  if not config.flux.transformer_weights and config.flux.variant != "tiny":
    raise ValueError("config.flux.transformer_weights must name the FLUX weights (only the 'tiny' "
                     "variant may start from a random base)")
  rng = jax.random.fold_in(jax.random.key(config.seed), 0x5EED)
  params, shardings = init_flux_params(model, codec, config, mesh, rng, image_hw)
  mask = lora_lib.trainable_mask(params, CONDITION_MODULES)
  return lora_lib.split_params(params, mask)[1], lora_lib.split_params(shardings, mask)[1]
