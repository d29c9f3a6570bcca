"""CLIP-I: cosine similarity of CLIP image embeddings, with a CLIP vision transformer in JAX.

The network is Hugging Face's `CLIPVisionModelWithProjection` (Radford et al. 2021): patch
embedding (no bias) + class token + learned positions, `pre_layrnorm`, pre-norm transformer layers
(`layer_norm1` -> self-attention -> residual, `layer_norm2` -> MLP -> residual), `post_layernorm`
of the class token, and the bias-free `visual_projection`. Weights come from a LOCAL
`.safetensors` (or `.npz`) file with the Hugging Face names, e.g. the `model.safetensors` of a
downloaded `openai/clip-vit-base-patch32` (text-tower tensors are ignored):

| name | shape |
|---|---|
| `vision_model.embeddings.class_embedding` | `[D]` |
| `vision_model.embeddings.patch_embedding.weight` | `[D, 3, P, P]` |
| `vision_model.embeddings.position_embedding.weight` | `[(S/P)^2 + 1, D]` |
| `vision_model.pre_layrnorm.{weight,bias}`, `vision_model.post_layernorm.{weight,bias}` | `[D]` |
| `vision_model.encoder.layers.{i}.layer_norm{1,2}.{weight,bias}` | `[D]` |
| `vision_model.encoder.layers.{i}.self_attn.{q,k,v,out}_proj.{weight,bias}` | `[D, D]`, `[D]` |
| `vision_model.encoder.layers.{i}.mlp.fc1.{weight,bias}`, `.fc2.{weight,bias}` | `[F, D]`, `[F]`; `[D, F]`, `[D]` |
| `visual_projection.weight` | `[E, D]` |

Sizes (D, P, S, layers, F, E) are read from the shapes. The number of heads, the activation and
the LayerNorm epsilon are not in the weights: they are read from a `config.json` next to the file
(its `vision_config`, as Hugging Face writes it) when there is one, else heads = D / 64,
`quick_gelu`, 1e-5 (OpenAI's CLIP models).

Preprocessing follows `CLIPImageProcessor` in JAX: resize the short side to S (bicubic, with
antialiasing when shrinking), centre crop S x S, normalise with the CLIP mean and std. Resizing is
`jax.image.resize`, not PIL, so embeddings differ slightly from the `transformers` pipeline on
images that need resizing; the network itself matches it (tested against `transformers`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
_PREFIX = "vision_model."
_ACTIVATIONS = {
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}


@dataclasses.dataclass(frozen=True)
class ClipVisionConfig:
  hidden_size: int
  num_layers: int
  num_heads: int
  patch_size: int
  image_size: int
  intermediate_size: int
  projection_dim: int
  hidden_act: str = "quick_gelu"
  layer_norm_eps: float = 1e-5


def infer_config(params: Mapping[str, np.ndarray], overrides: Mapping | None = None) -> ClipVisionConfig:
  """Sizes from the weight shapes; heads/activation/eps from `overrides` (a HF vision_config)."""
  overrides = dict(overrides or {})
  e = _PREFIX + "embeddings."
  needed = [e + "class_embedding", e + "patch_embedding.weight", e + "position_embedding.weight",
            "visual_projection.weight"]
  missing = [k for k in needed if k not in params]
  if missing:
    raise ValueError(f"CLIP weights lack {missing}")
  d = params[e + "class_embedding"].shape[0]
  p = params[e + "patch_embedding.weight"].shape[-1]
  grid = int(round(np.sqrt(params[e + "position_embedding.weight"].shape[0] - 1)))
  layers = 1 + max([int(m.group(1)) for k in params
                    if (m := re.match(re.escape(_PREFIX) + r"encoder\.layers\.(\d+)\.", k))],
                   default=-1)
  if layers == 0:
    raise ValueError("CLIP weights have no encoder layers")
  f = params[_PREFIX + "encoder.layers.0.mlp.fc1.weight"].shape[0]
  heads = int(overrides.get("num_attention_heads", max(1, d // 64)))
  config = ClipVisionConfig(
      hidden_size=d, num_layers=layers, num_heads=heads, patch_size=p, image_size=grid * p,
      intermediate_size=f, projection_dim=params["visual_projection.weight"].shape[0],
      hidden_act=str(overrides.get("hidden_act", "quick_gelu")),
      layer_norm_eps=float(overrides.get("layer_norm_eps", 1e-5)))
  if d % heads:
    raise ValueError(f"CLIP: hidden size {d} is not divisible by {heads} heads")
  if config.hidden_act not in _ACTIVATIONS:
    raise ValueError(f"CLIP: activation {config.hidden_act!r} unsupported; "
                     f"expected one of {sorted(_ACTIVATIONS)}")
  return config


def _layer_norm(x, w, b, eps):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / jnp.sqrt(var + eps) * w + b


def _linear(x, params, name):
  y = jnp.einsum("...i,oi->...o", x, params[name + ".weight"], precision="highest")
  b = params.get(name + ".bias")
  return y if b is None else y + b


def embed_pixels(params: Mapping[str, jax.Array], pixel_values: jax.Array,
                 config: ClipVisionConfig) -> jax.Array:
  """Image embeddings `[N, E]` (not normalised) of preprocessed `pixel_values` `[N, S, S, 3]`."""
  pre = _PREFIX
  d, h = config.hidden_size, config.num_heads
  x = jax.lax.conv_general_dilated(
      pixel_values, params[pre + "embeddings.patch_embedding.weight"],
      (config.patch_size,) * 2, "VALID", dimension_numbers=("NHWC", "OIHW", "NHWC"),
      precision=jax.lax.Precision.HIGHEST)
  n = x.shape[0]
  x = x.reshape(n, -1, d)
  cls = jnp.broadcast_to(params[pre + "embeddings.class_embedding"], (n, 1, d))
  x = jnp.concatenate([cls, x], 1) + params[pre + "embeddings.position_embedding.weight"]
  eps = config.layer_norm_eps
  x = _layer_norm(x, params[pre + "pre_layrnorm.weight"], params[pre + "pre_layrnorm.bias"], eps)
  act = _ACTIVATIONS[config.hidden_act]
  for i in range(config.num_layers):
    l = f"{pre}encoder.layers.{i}."
    y = _layer_norm(x, params[l + "layer_norm1.weight"], params[l + "layer_norm1.bias"], eps)
    split = lambda t: t.reshape(n, -1, h, d // h)
    q = split(_linear(y, params, l + "self_attn.q_proj")) * (d // h) ** -0.5
    k = split(_linear(y, params, l + "self_attn.k_proj"))
    v = split(_linear(y, params, l + "self_attn.v_proj"))
    w = jax.nn.softmax(jnp.einsum("nqhc,nkhc->nhqk", q, k, precision="highest"), axis=-1)
    y = jnp.einsum("nhqk,nkhc->nqhc", w, v, precision="highest").reshape(n, -1, d)
    x = x + _linear(y, params, l + "self_attn.out_proj")
    y = _layer_norm(x, params[l + "layer_norm2.weight"], params[l + "layer_norm2.bias"], eps)
    x = x + _linear(act(_linear(y, params, l + "mlp.fc1")), params, l + "mlp.fc2")
  pooled = _layer_norm(x[:, 0], params[pre + "post_layernorm.weight"],
                       params[pre + "post_layernorm.bias"], eps)
  return _linear(pooled, params, "visual_projection")


embed_pixels = jax.jit(embed_pixels, static_argnames=("config",))


def preprocess(images: jax.Array, size: int) -> jax.Array:
  """`[N, H, W, 3]` in [0, 1] -> CLIP input `[N, size, size, 3]` (short side resized, centre crop,
  CLIP mean/std)."""
  images = jnp.asarray(images, jnp.float32)
  n, height, width, _ = images.shape
  scale = size / min(height, width)
  new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
  if (new_h, new_w) != (height, width):
    images = jax.image.resize(images, (n, new_h, new_w, 3), "bicubic", antialias=True)
  top, left = (new_h - size) // 2, (new_w - size) // 2
  images = images[:, top:top + size, left:left + size]
  return (images - MEAN) / STD


@dataclasses.dataclass(frozen=True)
class ClipImageEncoder:
  """A CLIP vision tower; `embed(images)` -> unit image embeddings, `similarity(a, b)` -> CLIP-I."""
  config: ClipVisionConfig
  params: Mapping[str, jax.Array]

  @classmethod
  def load(cls, path: str) -> "ClipImageEncoder":
    params = load_params(path)
    config_path = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    overrides = {}
    if os.path.isfile(config_path):
      with open(config_path, encoding="utf-8") as f:
        cfg = json.load(f)
      overrides = cfg.get("vision_config", cfg)
    return cls(infer_config(params, overrides), {k: jnp.asarray(v) for k, v in params.items()})

  def embed(self, images) -> jax.Array:
    """Images `[..., H, W, 3]` in [0, 1] -> unit-length embeddings `[..., E]`."""
    images = jnp.asarray(images, jnp.float32)
    if images.ndim < 3 or images.shape[-1] != 3:
      raise ValueError(f"clip: expected [..., H, W, 3] images, got shape {images.shape}")
    batch = images.shape[:-3]
    x = preprocess(images.reshape((-1,) + images.shape[-3:]), self.config.image_size)
    e = embed_pixels(self.params, x, self.config)
    e = e / jnp.linalg.norm(e, axis=-1, keepdims=True)
    return e.reshape(batch + e.shape[-1:])

  def similarity(self, a, b) -> jax.Array:
    """CLIP-I: cosine similarity of the embeddings of `a` and `b` `[..., H, W, 3]` -> `[...]`."""
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    if a.shape != b.shape:
      raise ValueError(f"clip: images must have the same shape, got {a.shape} and {b.shape}")
    return jnp.sum(self.embed(a) * self.embed(b), axis=-1)

  __call__ = similarity


def load_params(path: str) -> dict[str, np.ndarray]:
  """The vision tower's tensors (float32) from a local `.safetensors` / `.npz` file."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"CLIP weights {path}: no such file")
  if path.endswith(".safetensors"):
    from safetensors.numpy import load_file
    raw = load_file(path)
  elif path.endswith(".npz"):
    with np.load(path) as f:
      raw = {k: f[k] for k in f.files}
  else:
    raise ValueError(f"CLIP weights {path}: expected a .safetensors or .npz file")
  return {k: np.asarray(v, np.float32) for k, v in raw.items()
          if k.startswith(_PREFIX) or k == "visual_projection.weight"}
