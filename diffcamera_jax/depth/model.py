"""Depth Anything V2 in Flax Linen: a DINOv2 ViT encoder and the DPT decoder (Yang et al. 2024).

The network follows `transformers`' `DepthAnythingForDepthEstimation` operation for operation, so
the released weights load unchanged (`diffcamera_jax.depth.layout`):

- **Encoder** (DINOv2): 14 x 14 patch embedding, class token, learned positions (bicubically
  resized to the patch grid when it differs from the trained one, as PyTorch's `bicubic` with
  `align_corners=False` does), pre-norm blocks with LayerScale, exact-erf GELU MLP. The hidden
  states after the blocks in `out_indices` pass through the final LayerNorm.
- **Neck**: each of the four states, class token dropped, is projected (1 x 1 conv) and resized by
  4, 2, 1 and 1/2 (stride-k transposed conv, identity, stride-2 conv), mapped to the fusion width
  by a 3 x 3 conv, then fused coarse to fine by residual conv units and 2x bilinear upsampling
  (`align_corners=True`).
- **Head**: 3 x 3 conv, bilinear upsampling to 14 x the patch grid, 3 x 3 conv, ReLU, 1 x 1 conv,
  ReLU (relative inverse depth) or sigmoid x max_depth (metric depth).

Input: normalised pixels `[B, H, W, 3]` with H, W multiples of 14. Output `[B, H, W]` in float32.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from diffcamera_jax.models.layers import dot_product_attention


@dataclasses.dataclass(frozen=True)
class DepthAnythingConfig:
  """Sizes of one Depth Anything model; the released V2 variants are in `VARIANTS`."""
  hidden_size: int = 384
  num_layers: int = 12
  num_heads: int = 6
  out_indices: tuple[int, ...] = (3, 6, 9, 12)  # hidden states after these blocks (1-based)
  neck_hidden_sizes: tuple[int, ...] = (48, 96, 192, 384)
  fusion_hidden_size: int = 64
  head_hidden_size: int = 32
  reassemble_factors: tuple[float, ...] = (4, 2, 1, 0.5)
  patch_size: int = 14
  position_grid: int = 37  # the learned positions cover a grid x grid patch image (518 px)
  mlp_ratio: float = 4.0
  layer_norm_eps: float = 1e-6
  depth_estimation_type: str = "relative"  # "relative" (inverse depth) or "metric" (depth)
  max_depth: float = 1.0

  def __post_init__(self):
    if self.hidden_size % self.num_heads:
      raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads "
                       f"{self.num_heads}")
    if len(self.out_indices) != len(self.neck_hidden_sizes) or len(self.neck_hidden_sizes) != len(
        self.reassemble_factors):
      raise ValueError("out_indices, neck_hidden_sizes and reassemble_factors must have one entry "
                       "per neck stage")
    if not all(1 <= i <= self.num_layers for i in self.out_indices):
      raise ValueError(f"out_indices {self.out_indices} must lie in [1, {self.num_layers}]")
    if self.depth_estimation_type not in ("relative", "metric"):
      raise ValueError(f"depth_estimation_type must be 'relative' or 'metric', got "
                       f"{self.depth_estimation_type!r}")


VARIANTS: dict[str, DepthAnythingConfig] = {
    "small": DepthAnythingConfig(),
    "base": DepthAnythingConfig(hidden_size=768, num_heads=12,
                                neck_hidden_sizes=(96, 192, 384, 768), fusion_hidden_size=128),
    "large": DepthAnythingConfig(hidden_size=1024, num_layers=24, num_heads=16,
                                 out_indices=(5, 12, 18, 24),
                                 neck_hidden_sizes=(256, 512, 1024, 1024), fusion_hidden_size=256),
}


# ------------------------------------------------------------------------- PyTorch resampling


@functools.lru_cache(maxsize=64)
def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
  """`[out, in]` weights of PyTorch's 1-D `bicubic` resize (A = -0.75, align_corners=False,
  indices clamped at the borders)."""
  a = -0.75

  def near(t):  # |t| <= 1
    return ((a + 2) * t - (a + 3)) * t * t + 1

  def far(t):  # 1 < |t| < 2
    return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a

  m = np.zeros((out_size, in_size), np.float64)
  scale = in_size / out_size
  for i in range(out_size):
    src = scale * (i + 0.5) - 0.5
    base = math.floor(src)
    t = src - base
    for offset, w in zip((-1, 0, 1, 2), (far(t + 1), near(t), near(1 - t), far(2 - t))):
      m[i, min(max(base + offset, 0), in_size - 1)] += w
  return m.astype(np.float32)


@functools.lru_cache(maxsize=64)
def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
  """`[out, in]` weights of PyTorch's 1-D `bilinear` resize with `align_corners=True`."""
  m = np.zeros((out_size, in_size), np.float64)
  scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
  for i in range(out_size):
    src = i * scale
    lo = min(int(math.floor(src)), in_size - 1)
    hi = min(lo + 1, in_size - 1)
    frac = src - lo
    m[i, lo] += 1.0 - frac
    m[i, hi] += frac
  return m.astype(np.float32)


def resize_separable(x: jnp.ndarray, rows: np.ndarray, cols: np.ndarray) -> jnp.ndarray:
  """`[B, H, W, C]` -> `[B, h, w, C]` with `[h, H]` row and `[w, W]` column weights."""
  x = jnp.einsum("hH,bHWc->bhWc", jnp.asarray(rows, x.dtype), x,
                 precision=jax.lax.Precision.HIGHEST)
  return jnp.einsum("wW,bhWc->bhwc", jnp.asarray(cols, x.dtype), x,
                    precision=jax.lax.Precision.HIGHEST)


def resize_aligned(x: jnp.ndarray, size: tuple[int, int]) -> jnp.ndarray:
  """Bilinear resize with `align_corners=True` (the DPT decoder's upsampling)."""
  return resize_separable(x, bilinear_matrix(x.shape[1], size[0]),
                          bilinear_matrix(x.shape[2], size[1]))


# ---------------------------------------------------------------------------------- encoder


class LayerScale(nn.Module):
  """Per-channel scale of a residual branch (DINOv2's LayerScale)."""

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return x * self.param("lambda1", nn.initializers.ones, (x.shape[-1],)).astype(x.dtype)


class EncoderLayer(nn.Module):
  """One pre-norm ViT block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""
  config: DepthAnythingConfig
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    c = self.config
    heads, head_dim = c.num_heads, c.hidden_size // c.num_heads
    norm = functools.partial(nn.LayerNorm, epsilon=c.layer_norm_eps, dtype=self.dtype)
    dense = functools.partial(nn.Dense, dtype=self.dtype)
    h = norm(name="norm1")(x)
    qkv = dense(3 * c.hidden_size, name="qkv")(h).reshape(*h.shape[:2], 3, heads, head_dim)
    attended = dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
    h = dense(c.hidden_size, name="attention_out")(attended.reshape(*h.shape[:2], -1))
    x = x + LayerScale(name="layer_scale1")(h)
    h = norm(name="norm2")(x)
    h = dense(int(c.hidden_size * c.mlp_ratio), name="fc1")(h)
    h = dense(c.hidden_size, name="fc2")(nn.gelu(h, approximate=False))
    return x + LayerScale(name="layer_scale2")(h)


class Encoder(nn.Module):
  """DINOv2: returns the normalised hidden states `[B, 1 + h * w, D]` after `out_indices`."""
  config: DepthAnythingConfig
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, pixels: jnp.ndarray) -> list[jnp.ndarray]:
    c = self.config
    x = nn.Conv(c.hidden_size, (c.patch_size, c.patch_size), strides=c.patch_size,
                padding="VALID", dtype=self.dtype, name="patch_embed")(pixels)
    b, gh, gw, d = x.shape
    x = x.reshape(b, gh * gw, d)
    cls = self.param("cls_token", nn.initializers.normal(0.02), (1, 1, d))
    positions = self.param("position_embeddings", nn.initializers.normal(0.02),
                           (1, 1 + c.position_grid ** 2, d))
    grid = positions[:, 1:].reshape(1, c.position_grid, c.position_grid, d)
    if (gh, gw) != (c.position_grid, c.position_grid):
      grid = resize_separable(grid.astype(jnp.float32), bicubic_matrix(c.position_grid, gh),
                              bicubic_matrix(c.position_grid, gw))
    positions = jnp.concatenate([positions[:, :1], grid.reshape(1, gh * gw, d)], axis=1)
    x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)).astype(x.dtype), x], axis=1)
    x = x + positions.astype(x.dtype)
    final_norm = nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=self.dtype, name="layernorm")
    states = []
    for i in range(c.num_layers):
      x = EncoderLayer(c, self.dtype, name=f"layer_{i}")(x)
      if i + 1 in c.out_indices:
        states.append(final_norm(x))
    return states


# ------------------------------------------------------------------------------------ decoder


class Upsample(nn.Module):
  """Transposed conv with kernel = stride = `factor`, no padding: each input pixel paints one
  factor x factor block. Kernel `[k, k, out, in]` (PyTorch's `[in, out, k, k]` transposed)."""
  features: int
  factor: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    k = self.factor
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (k, k, self.features, x.shape[-1])).astype(self.dtype)
    bias = self.param("bias", nn.initializers.zeros, (self.features,)).astype(self.dtype)
    y = jnp.einsum("bijc,uvoc->biujvo", x.astype(self.dtype), kernel)
    b, h, _, w, _, o = y.shape
    return y.reshape(b, h * k, w * k, o) + bias


def _conv3(features: int, name: str, dtype, *, bias: bool = True, stride: int = 1) -> nn.Conv:
  return nn.Conv(features, (3, 3), strides=stride, padding=((1, 1), (1, 1)), use_bias=bias,
                 dtype=dtype, name=name)


class ResidualUnit(nn.Module):
  """Pre-activation residual conv unit: x + conv2(relu(conv1(relu(x))))."""
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    c = x.shape[-1]
    h = _conv3(c, "convolution1", self.dtype)(nn.relu(x))
    return x + _conv3(c, "convolution2", self.dtype)(nn.relu(h))


class FusionLayer(nn.Module):
  """Adds the refined lateral feature (if any), refines, upsamples (2x or to `size`), projects."""
  first: bool = False  # the coarsest stage has no lateral input (its residual_layer1 is unused)
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, lateral: jnp.ndarray | None,
               size: tuple[int, int] | None) -> jnp.ndarray:
    if not self.first:
      x = x + ResidualUnit(self.dtype, name="residual_layer1")(lateral)
    x = ResidualUnit(self.dtype, name="residual_layer2")(x)
    x = resize_aligned(x, size or (2 * x.shape[1], 2 * x.shape[2]))
    return nn.Conv(x.shape[-1], (1, 1), dtype=self.dtype, name="projection")(x)


class Neck(nn.Module):
  """Reassembles the token states into a feature pyramid and fuses it coarse to fine."""
  config: DepthAnythingConfig
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, states: list[jnp.ndarray], grid: tuple[int, int]) -> jnp.ndarray:
    c = self.config
    features = []
    for i, (state, width, factor) in enumerate(zip(states, c.neck_hidden_sizes,
                                                   c.reassemble_factors)):
      x = state[:, 1:].reshape(state.shape[0], *grid, state.shape[-1])
      x = nn.Conv(width, (1, 1), dtype=self.dtype, name=f"reassemble_{i}_projection")(x)
      if factor > 1:
        x = Upsample(width, int(factor), self.dtype, name=f"reassemble_{i}_resize")(x)
      elif factor < 1:
        x = _conv3(width, f"reassemble_{i}_resize", self.dtype, stride=int(round(1 / factor)))(x)
      features.append(_conv3(c.fusion_hidden_size, f"conv_{i}", self.dtype, bias=False)(x))
    features = features[::-1]
    fused = None
    for i, feature in enumerate(features):
      size = features[i + 1].shape[1:3] if i + 1 < len(features) else None
      layer = FusionLayer(first=i == 0, dtype=self.dtype, name=f"fusion_{i}")
      fused = layer(feature, None, size) if fused is None else layer(fused, feature, size)
    return fused


class Head(nn.Module):
  """Fused features -> depth `[B, H, W]` at 14 x the patch grid."""
  config: DepthAnythingConfig
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, grid: tuple[int, int]) -> jnp.ndarray:
    c = self.config
    x = _conv3(c.fusion_hidden_size // 2, "conv1", self.dtype)(x)
    x = resize_aligned(x, (grid[0] * c.patch_size, grid[1] * c.patch_size))
    x = nn.relu(_conv3(c.head_hidden_size, "conv2", self.dtype)(x))
    x = nn.Conv(1, (1, 1), dtype=self.dtype, name="conv3")(x)[..., 0].astype(jnp.float32)
    if c.depth_estimation_type == "metric":
      return jax.nn.sigmoid(x) * c.max_depth
    return nn.relu(x) * c.max_depth


class DepthAnything(nn.Module):
  """Normalised pixels `[B, H, W, 3]` (H, W multiples of the patch size) -> depth `[B, H, W]`.

  Relative models predict inverse depth up to scale and shift (larger = nearer); metric models
  predict depth in the units of `max_depth`. `dtype` is the compute dtype (bfloat16 halves memory
  and time on accelerators; parameters stay float32)."""
  config: DepthAnythingConfig
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, pixels: jnp.ndarray) -> jnp.ndarray:
    c = self.config
    if pixels.shape[1] % c.patch_size or pixels.shape[2] % c.patch_size:
      raise ValueError(f"pixels must be a multiple of {c.patch_size} on both sides, got "
                       f"{pixels.shape[1]}x{pixels.shape[2]}")
    grid = (pixels.shape[1] // c.patch_size, pixels.shape[2] // c.patch_size)
    states = Encoder(c, self.dtype, name="backbone")(pixels.astype(self.dtype))
    fused = Neck(c, self.dtype, name="neck")(states, grid)
    return Head(c, self.dtype, name="head")(fused, grid)
