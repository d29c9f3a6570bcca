"""The FLUX.1 rectified-flow MMDiT in Flax Linen (double- and single-stream blocks).

Numerically the reference model (black-forest-labs `flux`, diffusers `FluxTransformer2DModel`):
text and image tokens attend jointly; positions are 3-axis RoPE over `(index, y, x)` ids with
per-axis widths `axes_dim`; every block is modulated (shift, scale, gate) by one vector built from
the timestep, the guidance strength and the pooled text embedding; queries and keys are
RMS-normalised. The parameter tree mirrors the original single-file layout
(`double_blocks_0/img_attn/qkv/kernel` <-> `double_blocks.0.img_attn.qkv.weight`, fused QKV), so
loading that layout is a transpose, and the fused projections are one matmul each on TPU.

Every parameter carries logical axis names (`embed`, `heads`, `mlp`, `kv`, `modulation`,
`channels`, and `layers` when blocks are scanned); `config.mesh.logical_axis_rules` maps them to
mesh axes. Blocks optionally run under `nn.scan` (one compiled block, stacked params) and
`nn.remat` with a named policy.
"""
import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from diffcamera_jax.models.lora import LoRAConfig, LoRADense

Dtype = Any
REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@dataclasses.dataclass(frozen=True)
class FluxConfig:
  """Architecture of a FLUX.1 transformer (defaults: FLUX.1-dev, 11.9B parameters)."""
  in_channels: int = 64  # 16 latent channels x 2x2 packed patch
  out_channels: int = 64
  hidden_size: int = 3072
  num_heads: int = 24
  depth: int = 19  # double-stream blocks
  depth_single: int = 38  # single-stream blocks
  mlp_ratio: float = 4.0
  axes_dim: tuple[int, ...] = (16, 56, 56)  # RoPE widths over (index, y, x); sums to head_dim
  theta: float = 10_000.0
  context_in_dim: int = 4096  # T5 token embeddings
  vec_in_dim: int = 768  # pooled CLIP embedding
  guidance_embed: bool = True  # guidance-distilled (dev) vs. not (schnell)

  def __post_init__(self):
    if self.hidden_size % self.num_heads:
      raise ValueError(f"FluxConfig.hidden_size={self.hidden_size} is not a multiple of "
                       f"num_heads={self.num_heads}")
    if sum(self.axes_dim) != self.head_dim or any(d % 2 for d in self.axes_dim):
      raise ValueError(f"FluxConfig.axes_dim={self.axes_dim} must be even and sum to head_dim="
                       f"{self.head_dim}")

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def mlp_hidden(self) -> int:
    return int(self.hidden_size * self.mlp_ratio)

  @classmethod
  def from_diffusers(cls, cfg: Mapping[str, Any]) -> "FluxConfig":
    """From a diffusers `FluxTransformer2DModel` `config.json` dict."""
    if cfg.get("patch_size", 1) != 1:
      raise ValueError(f"from_diffusers: patch_size={cfg['patch_size']} is not supported (1 only)")
    return cls(in_channels=cfg["in_channels"],
               out_channels=cfg.get("out_channels") or cfg["in_channels"],
               hidden_size=cfg["num_attention_heads"] * cfg["attention_head_dim"],
               num_heads=cfg["num_attention_heads"], depth=cfg["num_layers"],
               depth_single=cfg["num_single_layers"], axes_dim=tuple(cfg["axes_dims_rope"]),
               context_in_dim=cfg["joint_attention_dim"],
               vec_in_dim=cfg["pooled_projection_dim"], guidance_embed=cfg["guidance_embeds"])


# LoRA target groups (config names) -> dense-layer names. Single blocks fuse attention and MLP
# in `linear1` (qkv | mlp_in) and `linear2` (attn_out | mlp_out), so both groups include them.
LORA_TARGET_GROUPS = {
    "attn": ("qkv", "proj", "linear1", "linear2"),
    "mlp": ("fc1", "fc2", "linear1", "linear2"),
    "modulation": ("lin", "adaLN_modulation"),
}
LORA_LAYER_NAMES = frozenset(n for group in LORA_TARGET_GROUPS.values() for n in group) | {
    "img_in", "txt_in", "in_layer", "out_layer", "linear"}


def lora_targets(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
  """Dense-layer names for config targets: group names ("attn", "mlp", "modulation") or layers."""
  out = []
  for name in names:
    if name in LORA_TARGET_GROUPS:
      out += LORA_TARGET_GROUPS[name]
    elif name in LORA_LAYER_NAMES:
      out.append(name)
    else:
      raise ValueError(f"LoRA target {name!r} is neither a group {sorted(LORA_TARGET_GROUPS)} "
                       f"nor a FLUX dense layer {sorted(LORA_LAYER_NAMES)}")
  return tuple(dict.fromkeys(out))


FLUX_PRESETS = {
    "dev": FluxConfig(),
    "schnell": FluxConfig(guidance_embed=False),
    "tiny": FluxConfig(in_channels=64, out_channels=64, hidden_size=64, num_heads=2, depth=1,
                       depth_single=1, axes_dim=(8, 12, 12), context_in_dim=32, vec_in_dim=16),
}


# ----------------------------------------------------------------------------- pure functions


def timestep_embedding(t: jnp.ndarray, dim: int = 256, time_factor: float = 1000.0,
                       max_period: float = 10_000.0) -> jnp.ndarray:
  """`[cos | sin]` features `[B, dim]` of `time_factor · t` (FLUX's convention, t in [0, 1])."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = (time_factor * t.astype(jnp.float32))[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def rope(ids: jnp.ndarray, axes_dim: tuple[int, ...], theta: float) -> tuple[jnp.ndarray, ...]:
  """(cos, sin) `[..., L, head_dim / 2]` of the rotation angles for position ids `[..., L, n]`.

  Axis `i` of the ids rotates `axes_dim[i] / 2` consecutive channel pairs with frequencies
  `theta^(-2j / axes_dim[i])`.
  """
  if ids.shape[-1] != len(axes_dim):
    raise ValueError(f"rope: ids have {ids.shape[-1]} axes, axes_dim has {len(axes_dim)}")
  omegas = [1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d) for d in axes_dim]
  angles = jnp.concatenate(
      [ids[..., i:i + 1].astype(jnp.float32) * jnp.asarray(w, jnp.float32)
       for i, w in enumerate(omegas)], axis=-1)
  return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jnp.ndarray, cos: jnp.ndarray, sin: jnp.ndarray) -> jnp.ndarray:
  """Rotates channel pairs `(x[2j], x[2j+1])` of `x` `[B, L, H, D]` by the angles, in f32."""
  pairs = x.astype(jnp.float32).reshape(*x.shape[:-1], -1, 2)
  c, s = cos[..., None, :], sin[..., None, :]  # broadcast over heads
  x0, x1 = pairs[..., 0], pairs[..., 1]
  out = jnp.stack([x0 * c - x1 * s, x0 * s + x1 * c], axis=-1)
  return out.reshape(x.shape).astype(x.dtype)


def attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray, cos: jnp.ndarray,
              sin: jnp.ndarray, chunk: int = 0) -> jnp.ndarray:
  """Softmax attention over `[B, L, H, D]` with RoPE on q, k; returns `[B, L, H·D]`.

  `chunk > 0` processes queries in blocks of `chunk` under `jax.checkpoint`, so the scores held
  at once (forward and backward) are `[B, H, chunk, L]` instead of `[B, H, L, L]`.
  """
  q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
  axes = ("batch", "length", "heads", "kv")
  q, k, v = (nn.with_logical_constraint(a, axes) for a in (q, k, v))
  return chunked_attention(q, k, v, chunk)


def chunked_attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray, chunk: int = 0
                      ) -> jnp.ndarray:
  """Softmax attention `[B, Lq, H, D] x [B, Lk, H, D] -> [B, Lq, H·D]`, queries in blocks of
  `chunk` (0: all at once) under `jax.checkpoint`, so the scores held at once (forward and
  backward) are `[B, H, chunk, Lk]`."""
  b, length, h, d = q.shape
  if not chunk or length <= chunk:
    return jax.nn.dot_product_attention(q, k, v).reshape(b, length, h * d)
  n = -(-length // chunk)
  blocks = jnp.pad(q, ((0, 0), (0, n * chunk - length), (0, 0), (0, 0)))
  blocks = blocks.reshape(b, n, chunk, h, d).swapaxes(0, 1)
  out = jax.lax.map(jax.checkpoint(lambda qc: jax.nn.dot_product_attention(qc, k, v)), blocks)
  return out.swapaxes(0, 1).reshape(b, n * chunk, h * d)[:, :length]


def _layer_norm(x: jnp.ndarray) -> jnp.ndarray:
  """LayerNorm without affine parameters, eps 1e-6, statistics in f32."""
  x32 = x.astype(jnp.float32)
  mean = x32.mean(-1, keepdims=True)
  var = jnp.square(x32 - mean).mean(-1, keepdims=True)
  return ((x32 - mean) * jax.lax.rsqrt(var + 1e-6)).astype(x.dtype)


def _modulate(x: jnp.ndarray, shift: jnp.ndarray, scale: jnp.ndarray) -> jnp.ndarray:
  return (1 + scale[:, None]) * _layer_norm(x) + shift[:, None]


# ----------------------------------------------------------------------------- modules


class _Base(nn.Module):
  """Shared fields and a dense-layer factory that attaches LoRA by module name."""
  config: FluxConfig
  lora: LoRAConfig | None = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  attention_chunk: int = 0  # query block size of `attention` (0 = all queries at once)

  def dense(self, features: int, axes: tuple, name: str, bias: bool = True) -> LoRADense:
    lora = self.lora if self.lora is not None and self.lora.applies_to(name) else None
    return LoRADense(features, kernel_axes=axes, use_bias=bias, lora=lora, dtype=self.dtype,
                     param_dtype=self.param_dtype, name=name)


class RMSNorm(nn.Module):
  """`x / rms(x) · scale` over the last axis, statistics in f32 (eps 1e-6)."""
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones_init(), ("kv",)),
                       (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + 1e-6)
    return x32.astype(x.dtype) * scale.astype(x.dtype)


class QKNorm(nn.Module):
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, q: jnp.ndarray, k: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    return (RMSNorm(self.param_dtype, name="query_norm")(q),
            RMSNorm(self.param_dtype, name="key_norm")(k))


class MLPEmbedder(_Base):
  """in_layer -> SiLU -> out_layer (timestep, guidance and pooled-text embedders)."""

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    h = self.dense(self.config.hidden_size, ("channels", "mlp"), "in_layer")(x)
    return self.dense(self.config.hidden_size, ("mlp", "embed"), "out_layer")(nn.silu(h))


class Modulation(_Base):
  """`lin(silu(vec))` split into (shift, scale, gate) triples: two (double) or one (single)."""
  multiplier: int = 6

  @nn.compact
  def __call__(self, vec: jnp.ndarray) -> list[jnp.ndarray]:
    out = self.dense(self.multiplier * self.config.hidden_size, ("embed", "modulation"), "lin")(
        nn.silu(vec))
    return jnp.split(out, self.multiplier, axis=-1)


class SelfAttention(_Base):
  """The projections of one stream of a double block: fused qkv (+ QK-norm) and the output."""

  def setup(self):
    self.qkv = self.dense(3 * self.config.hidden_size, ("embed", "heads"), "qkv")
    self.norm = QKNorm(self.param_dtype)
    self.proj = self.dense(self.config.hidden_size, ("heads", "embed"), "proj")

  def project(self, x: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
    c = self.config
    q, k, v = jnp.split(self.qkv(x).reshape(*x.shape[:2], 3, c.num_heads, c.head_dim), 3, axis=2)
    q, k = self.norm(q[:, :, 0], k[:, :, 0])
    return q, k, v[:, :, 0]

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return self.proj(x)


class Mlp(_Base):
  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    h = self.dense(self.config.mlp_hidden, ("embed", "mlp"), "fc1")(x)
    h = nn.with_logical_constraint(nn.gelu(h, approximate=True), ("batch", "length", "mlp"))
    return self.dense(self.config.hidden_size, ("mlp", "embed"), "fc2")(h)


class DoubleStreamBlock(_Base):
  """Text and image streams with their own weights, one joint attention over [txt | img]."""

  @nn.compact
  def __call__(self, carry: tuple[jnp.ndarray, jnp.ndarray], vec: jnp.ndarray, cos: jnp.ndarray,
               sin: jnp.ndarray) -> tuple[tuple[jnp.ndarray, jnp.ndarray], None]:
    img, txt = carry
    kw = dict(config=self.config, lora=self.lora, dtype=self.dtype, param_dtype=self.param_dtype,
              attention_chunk=self.attention_chunk)
    i_shift1, i_scale1, i_gate1, i_shift2, i_scale2, i_gate2 = Modulation(name="img_mod", **kw)(vec)
    t_shift1, t_scale1, t_gate1, t_shift2, t_scale2, t_gate2 = Modulation(name="txt_mod", **kw)(vec)
    img_attn, txt_attn = SelfAttention(name="img_attn", **kw), SelfAttention(name="txt_attn", **kw)

    iq, ik, iv = img_attn.project(_modulate(img, i_shift1, i_scale1))
    tq, tk, tv = txt_attn.project(_modulate(txt, t_shift1, t_scale1))
    cat = lambda a, b: jnp.concatenate([a, b], axis=1)
    out = attention(cat(tq, iq), cat(tk, ik), cat(tv, iv), cos, sin, self.attention_chunk)
    txt_out, img_out = out[:, :txt.shape[1]], out[:, txt.shape[1]:]

    img = img + i_gate1[:, None] * img_attn(img_out)
    img = img + i_gate2[:, None] * Mlp(name="img_mlp", **kw)(_modulate(img, i_shift2, i_scale2))
    txt = txt + t_gate1[:, None] * txt_attn(txt_out)
    txt = txt + t_gate2[:, None] * Mlp(name="txt_mlp", **kw)(_modulate(txt, t_shift2, t_scale2))
    axes = ("batch", "length", "embed")
    return (nn.with_logical_constraint(img, axes), nn.with_logical_constraint(txt, axes)), None


class SingleStreamBlock(_Base):
  """Parallel attention + MLP on the joint sequence: linear1 = [qkv | mlp_in], linear2 = out."""

  @nn.compact
  def __call__(self, x: jnp.ndarray, vec: jnp.ndarray, cos: jnp.ndarray,
               sin: jnp.ndarray) -> tuple[jnp.ndarray, None]:
    c = self.config
    kw = dict(config=c, lora=self.lora, dtype=self.dtype, param_dtype=self.param_dtype,
              attention_chunk=self.attention_chunk)
    shift, scale, gate = Modulation(multiplier=3, name="modulation", **kw)(vec)
    h = self.dense(3 * c.hidden_size + c.mlp_hidden, ("embed", "mlp"), "linear1")(
        _modulate(x, shift, scale))
    qkv, mlp = h[..., :3 * c.hidden_size], h[..., 3 * c.hidden_size:]
    q, k, v = jnp.split(qkv.reshape(*x.shape[:2], 3, c.num_heads, c.head_dim), 3, axis=2)
    q, k = QKNorm(self.param_dtype, name="norm")(q[:, :, 0], k[:, :, 0])
    attn = attention(q, k, v[:, :, 0], cos, sin, self.attention_chunk)
    out = self.dense(c.hidden_size, ("mlp", "embed"), "linear2")(
        jnp.concatenate([attn, nn.gelu(mlp, approximate=True)], axis=-1))
    return nn.with_logical_constraint(x + gate[:, None] * out, ("batch", "length", "embed")), None


class LastLayer(_Base):
  """adaLN (shift, scale — in this order, as in the original layout) and the output projection."""

  @nn.compact
  def __call__(self, x: jnp.ndarray, vec: jnp.ndarray) -> jnp.ndarray:
    mod = self.dense(2 * self.config.hidden_size, ("embed", "modulation"), "adaLN_modulation")(
        nn.silu(vec))
    shift, scale = jnp.split(mod, 2, axis=-1)
    return self.dense(self.config.out_channels, ("embed", "channels"), "linear")(
        _modulate(x, shift, scale))


def _blocks(cls: type, n: int, name: str, scan: bool, remat: str, carry, args: tuple, **kw):
  """Applies `n` blocks of `cls` to `carry`, looped or under `nn.scan`, optionally rematted."""
  if remat != "none":
    if remat not in REMAT_POLICIES:
      raise ValueError(f"remat={remat!r}; expected 'none' or one of {sorted(REMAT_POLICIES)}")
    cls = nn.remat(cls, policy=REMAT_POLICIES[remat], prevent_cse=not scan)
  if scan:
    stack = nn.scan(cls, variable_axes={"params": 0}, split_rngs={"params": True},
                    in_axes=(nn.broadcast,) * len(args), length=n,
                    metadata_params={nn.PARTITION_NAME: "layers"})
    return stack(name=name, **kw)(carry, *args)[0]
  for i in range(n):
    carry, _ = cls(name=f"{name}_{i}", **kw)(carry, *args)
  return carry


class FluxTransformer(_Base):
  """FLUX.1 transformer: `(img, img_ids, txt, txt_ids, t, y, guidance) -> velocity [B, L, C]`.

  img `[B, L, in_channels]` packed latent tokens; img_ids `[L, 3]` or `[B, L, 3]`; txt
  `[B, Lt, context_in_dim]` with txt_ids likewise; t `[B]` in [0, 1] (1 = noise); y `[B,
  vec_in_dim]` pooled text; guidance `[B]` (guidance-distilled models only). Optional `extra`
  `[B, Le, hidden_size]` tokens, already embedded (e.g. conditions), join the image stream after
  `img_in` with their own `extra_ids`; the output covers the `img` tokens only.
  """
  scan_layers: bool = False
  remat: str = "none"  # "none" | "full" | "dots"

  @nn.compact
  def __call__(self, img: jnp.ndarray, img_ids: jnp.ndarray, txt: jnp.ndarray,
               txt_ids: jnp.ndarray, timesteps: jnp.ndarray, y: jnp.ndarray,
               guidance: jnp.ndarray | None = None, extra: jnp.ndarray | None = None,
               extra_ids: jnp.ndarray | None = None) -> jnp.ndarray:
    c = self.config
    if img.shape[-1] != c.in_channels or txt.shape[-1] != c.context_in_dim:
      raise ValueError(f"FluxTransformer: img channels {img.shape[-1]} (expected "
                       f"{c.in_channels}), txt channels {txt.shape[-1]} (expected "
                       f"{c.context_in_dim})")
    if c.guidance_embed and guidance is None:
      raise ValueError("FluxTransformer: `guidance` is required by a guidance-distilled config")
    kw = dict(config=c, lora=self.lora, dtype=self.dtype, param_dtype=self.param_dtype,
              attention_chunk=self.attention_chunk)

    img = self.dense(c.hidden_size, ("channels", "embed"), "img_in")(img)
    vec = MLPEmbedder(name="time_in", **kw)(timestep_embedding(timesteps).astype(self.dtype))
    if c.guidance_embed:
      vec = vec + MLPEmbedder(name="guidance_in", **kw)(
          timestep_embedding(guidance).astype(self.dtype))
    vec = vec + MLPEmbedder(name="vector_in", **kw)(y.astype(self.dtype))
    txt = self.dense(c.hidden_size, ("channels", "embed"), "txt_in")(txt)

    batch, num_img = img.shape[:2]
    streams = [txt_ids, img_ids]
    if extra is not None:
      if extra_ids is None or extra.shape[-1] != c.hidden_size:
        raise ValueError(f"FluxTransformer: `extra` must be [B, Le, {c.hidden_size}] and come "
                         f"with `extra_ids`; got {extra.shape}, ids {extra_ids is not None}")
      img = jnp.concatenate([img, extra.astype(img.dtype)], axis=1)
      streams.append(extra_ids)
    ids = jnp.concatenate([jnp.broadcast_to(i, (batch, *i.shape[-2:])) for i in streams],
                          axis=1)
    cos, sin = rope(ids, c.axes_dim, c.theta)

    stack = dict(scan=self.scan_layers, remat=self.remat, args=(vec, cos, sin), **kw)
    img, txt = _blocks(DoubleStreamBlock, c.depth, "double_blocks", carry=(img, txt), **stack)
    x = _blocks(SingleStreamBlock, c.depth_single, "single_blocks",
                carry=jnp.concatenate([txt, img], axis=1), **stack)
    img_out = x[:, txt.shape[1]:txt.shape[1] + num_img]
    return LastLayer(name="final_layer", **kw)(img_out, vec)
