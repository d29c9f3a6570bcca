"""Transformer building blocks of the in-context DiT, every parameter named by logical axes.

Logical axis names (mapped to mesh axes by `config.mesh.logical_axis_rules`): `embed` (token
width), `mlp` (MLP hidden), `heads`, `kv` (head dim), `modulation` (adaLN outputs), `channels`
(patch / feature inputs), `layers` (stacked blocks under scan); activations use `batch`, `length`.
"""
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffcamera_jax.models.rope import apply_rope
from diffcamera_jax.models.sizes import ModelSize

Dtype = Any

_zeros = nn.initializers.zeros_init()
_ones = nn.initializers.ones_init()


def partitioned(init: nn.initializers.Initializer, axes: tuple) -> nn.initializers.Initializer:
  """`init` whose parameter carries the logical axis names `axes`."""
  return nn.with_logical_partitioning(init, axes)


class Linear(nn.Module):
  """Affine map contracting the last `in_dims` input axes into an output of shape `features`.

  Unlike `nn.DenseGeneral` the kernel is created at its full rank, so its logical axis names
  (`kernel_axes`, one per kernel dimension) hold from initialisation on.
  """
  features: tuple[int, ...]
  kernel_axes: tuple
  bias_axes: tuple
  in_dims: int = 1
  zero_init: bool = False
  kernel_init: nn.initializers.Initializer | None = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    shape = x.shape[x.ndim - self.in_dims:] + tuple(self.features)
    if len(self.kernel_axes) != len(shape) or len(self.bias_axes) != len(self.features):
      raise ValueError(f"Linear {self.name}: kernel_axes {self.kernel_axes} / bias_axes "
                       f"{self.bias_axes} do not match kernel shape {shape}")
    init = self.kernel_init or nn.initializers.xavier_uniform(
        in_axis=tuple(range(self.in_dims)), out_axis=tuple(range(self.in_dims, len(shape))))
    kernel = self.param("kernel", partitioned(_zeros if self.zero_init else init,
                                              self.kernel_axes), shape, self.param_dtype)
    bias = self.param("bias", partitioned(_zeros, self.bias_axes), tuple(self.features),
                      self.param_dtype)
    x, kernel, bias = x.astype(self.dtype), kernel.astype(self.dtype), bias.astype(self.dtype)
    contract = tuple(range(x.ndim - self.in_dims, x.ndim))
    y = jax.lax.dot_general(x, kernel, ((contract, tuple(range(self.in_dims))), ((), ())))
    return y + bias


def dense(features, kernel_axes: tuple, bias_axes: tuple, *, name: str, dtype: Dtype,
          param_dtype: Dtype, in_dims: int = 1, zero_init: bool = False,
          kernel_init: nn.initializers.Initializer | None = None) -> Linear:
  """A `Linear` with logically partitioned kernel and bias (zero kernel for adaLN-zero)."""
  features = (features,) if isinstance(features, int) else tuple(features)
  return Linear(features, tuple(kernel_axes), tuple(bias_axes), in_dims=in_dims,
                zero_init=zero_init, kernel_init=kernel_init, dtype=dtype,
                param_dtype=param_dtype, name=name)


def constrain(x: jnp.ndarray, axes: tuple) -> jnp.ndarray:
  """Sharding constraint on an activation by logical names (no-op without rules and a mesh)."""
  return nn.with_logical_constraint(x, axes)


def modulate(x: jnp.ndarray, shift: jnp.ndarray, scale: jnp.ndarray) -> jnp.ndarray:
  """adaLN: `x * (1 + scale) + shift`, with per-example `shift`, `scale` `[B, D]`."""
  return x * (1 + scale[:, None, :]) + shift[:, None, :]


def timestep_embedding(t: jnp.ndarray, dim: int, max_period: float = 10_000.0) -> jnp.ndarray:
  """Sinusoidal embedding `[B, dim]` of `t` in [0, 1] (scaled by 1000 as in DiT)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = (1000.0 * t.astype(jnp.float32))[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class TimestepEmbedder(nn.Module):
  """t -> sinusoidal features -> 2-layer MLP: the adaLN conditioning vector `[B, width]`."""
  width: int
  frequency_dim: int = 256
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, t: jnp.ndarray) -> jnp.ndarray:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype,
              kernel_init=nn.initializers.normal(0.02))
    # Both kernels carry `embed` so FSDP shards them (the 256-wide input has no mesh axis).
    h = dense(self.width, ("channels", "embed"), ("embed",), name="fc1", **kw)(
        timestep_embedding(t, self.frequency_dim))
    return dense(self.width, ("mlp", "embed"), ("embed",), name="fc2", **kw)(nn.silu(h))


MLP_ACTIVATIONS = {
    # Squared ReLU (So et al., 2021, "Primer"): as good as GELU for transformers and, on CPU, about
    # 3x cheaper in a fwd+bwd MLP at our sizes (XLA's tanh/erf dominate there).
    "relu2": lambda x: jnp.square(jax.nn.relu(x)),
    "gelu": lambda x: jax.nn.gelu(x, approximate=True),
    "silu": jax.nn.silu,
}


def _attend(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
  scores = jnp.einsum("blhd,bmhd->bhlm", q * (q.shape[-1] ** -0.5), k,
                      preferred_element_type=jnp.float32)
  weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
  return jnp.einsum("bhlm,bmhd->blhd", weights, v)


def dot_product_attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray,
                          chunk: int = 0) -> jnp.ndarray:
  """Softmax attention on `[B, L, heads, head_dim]`; the scale is folded into q, and the
  scores and softmax are computed in float32 whatever the compute dtype.

  `chunk > 0` processes queries in blocks of `chunk` (each under `jax.checkpoint`), so the scores
  alive at once, forward and backward, are `[B, heads, chunk, L]` rather than `[B, heads, L, L]`:
  what makes 2k-token sequences at pod batch sizes fit in HBM. Same result either way.
  """
  length = q.shape[1]
  if not chunk or length <= chunk:
    return _attend(q, k, v)
  n = -(-length // chunk)
  blocks = jnp.pad(q, ((0, 0), (0, n * chunk - length), (0, 0), (0, 0)))
  blocks = jnp.moveaxis(blocks.reshape(q.shape[0], n, chunk, *q.shape[2:]), 1, 0)
  out = jax.lax.map(jax.checkpoint(lambda block: _attend(block, k, v)), blocks)
  return jnp.moveaxis(out, 0, 1).reshape(q.shape[0], n * chunk, *q.shape[2:])[:, :length]


class Attention(nn.Module):
  """Multi-head self-attention with fused QKV, QK RMS-norm and 2-D RoPE."""
  num_heads: int
  head_dim: int
  chunk: int = 0  # query block size (see `dot_product_attention`); 0 = all queries at once
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, cos: jnp.ndarray, sin: jnp.ndarray) -> jnp.ndarray:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    qkv = dense((3, self.num_heads, self.head_dim), ("embed", None, "heads", "kv"),
                (None, "heads", "kv"), name="qkv", **kw)(x)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    norm_kw = dict(dtype=self.dtype, param_dtype=self.param_dtype,
                   scale_init=partitioned(_ones, ("kv",)))
    q = apply_rope(nn.RMSNorm(name="q_norm", **norm_kw)(q), cos, sin)
    k = apply_rope(nn.RMSNorm(name="k_norm", **norm_kw)(k), cos, sin)
    axes = ("batch", "length", "heads", "kv")
    q, k, v = constrain(q, axes), constrain(k, axes), constrain(v, axes)
    out = dot_product_attention(q, k, v, self.chunk)
    return dense(x.shape[-1], ("heads", "kv", "embed"), ("embed",), in_dims=2, name="out",
                 **kw)(out)


class Mlp(nn.Module):
  """Two-layer MLP with the activation `MLP_ACTIVATIONS[activation]`."""
  hidden: int
  activation: str = "relu2"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = dense(self.hidden, ("embed", "mlp"), ("mlp",), name="fc1", **kw)(x)
    h = constrain(MLP_ACTIVATIONS[self.activation](h), ("batch", "length", "mlp"))
    return dense(x.shape[-1], ("mlp", "embed"), ("embed",), name="fc2", **kw)(h)


class DiTBlock(nn.Module):
  """Pre-norm transformer block with adaLN-zero modulation from the conditioning vector `c`.

  The gates start at zero, so every block is the identity at initialisation. Returns
  `(x, None)`, the carry/output pair of `nn.scan`, so the same block runs scanned or looped.
  """
  size: ModelSize
  mlp_activation: str = "relu2"
  dropout_rate: float = 0.0
  deterministic: bool = True
  attention_chunk: int = 0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, c: jnp.ndarray, cos: jnp.ndarray,
               sin: jnp.ndarray) -> tuple[jnp.ndarray, None]:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    width = self.size.width
    mod = dense((6, width), ("embed", None, "modulation"), (None, "modulation"),
                name="adaln", zero_init=True, **kw)(nn.silu(c))
    shift1, scale1, gate1, shift2, scale2, gate2 = (mod[:, i] for i in range(6))
    norm = lambda name: nn.LayerNorm(use_bias=False, use_scale=False, name=name, **kw)

    h = modulate(norm("norm1")(x), shift1, scale1)
    h = Attention(self.size.num_heads, self.size.head_dim, self.attention_chunk, name="attn",
                  **kw)(h, cos, sin)
    h = nn.Dropout(self.dropout_rate)(h, deterministic=self.deterministic)
    x = constrain(x + gate1[:, None, :] * h, ("batch", "length", "embed"))

    h = modulate(norm("norm2")(x), shift2, scale2)
    h = Mlp(width * self.size.mlp_ratio, self.mlp_activation, name="mlp", **kw)(h)
    h = nn.Dropout(self.dropout_rate)(h, deterministic=self.deterministic)
    return constrain(x + gate2[:, None, :] * h, ("batch", "length", "embed")), None


class FinalLayer(nn.Module):
  """adaLN-modulated LayerNorm and a zero-initialised projection to patch values."""
  out_features: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, c: jnp.ndarray) -> jnp.ndarray:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    mod = dense((2, x.shape[-1]), ("embed", None, "modulation"), (None, "modulation"),
                name="adaln", zero_init=True, **kw)(nn.silu(c))
    h = modulate(nn.LayerNorm(use_bias=False, use_scale=False, name="norm", **kw)(x),
                 mod[:, 0], mod[:, 1])
    return dense(self.out_features, ("embed", "channels"), ("channels",), name="proj",
                 zero_init=True, **kw)(h)


class Conv(nn.Module):
  """3x3 (or 1x1) convolution with logically named parameters (replicated over the mesh)."""
  features: int
  kernel: int = 3
  stride: int = 1
  zero_init: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    init = nn.initializers.zeros_init() if self.zero_init else nn.initializers.lecun_normal()
    return nn.Conv(self.features, (self.kernel, self.kernel), strides=self.stride, padding="SAME",
                   kernel_init=partitioned(init, (None, None, "channels", None)),
                   bias_init=partitioned(nn.initializers.zeros_init(), (None,)), dtype=self.dtype,
                   param_dtype=self.param_dtype)(x)


class ResBlock(nn.Module):
  """Pre-activation residual block of two 3x3 convolutions; with a conditioning vector `cond`
  `[B, D]`, its hidden features are scaled and shifted by a zero-initialised projection of it
  (FiLM, as diffusion U-Nets take their time embedding), so the block starts unconditioned."""
  features: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, cond: jnp.ndarray | None = None) -> jnp.ndarray:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    conv = self.conv_class()
    h = conv(self.features, **kw)(nn.silu(x))
    if cond is not None:
      film = dense((2, self.features), ("embed", None, "channels"), (None, "channels"),
                   name="film", zero_init=True, **kw)(nn.silu(cond))
      h = h * (1 + film[:, None, None, 0]) + film[:, None, None, 1]
    h = conv(self.features, **kw)(nn.silu(h))
    return x + h

  def conv_class(self) -> type:
    """The convolution module (a subclass may rename it, and so its parameters)."""
    return Conv
