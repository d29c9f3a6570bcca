"""The in-context diffusion transformer (DiT) that denoises the refocused target latent.

One token sequence per example: `[camera | depth | reference | noisy target]` (or, with
`depth_mode="fold"`, the depth projection added to the reference tokens:
`[camera | reference+depth | noisy target]`, a third shorter). The reference, depth and target
grids are spatially aligned and share their 2-D RoPE positions; camera tokens sit at position
(0, 0). A learned per-stream embedding tells the aligned grids apart. The timestep (and with
`camera_adaln` the camera) drives adaLN-zero; the output is read from the target tokens only. With
`pixel_widths`, a convolutional stem and head at full latent resolution (`pixel_path.py`) add to
the target tokens and to the output.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffcamera_jax.models.camera import CameraEmbedder
from diffcamera_jax.models.layers import (MLP_ACTIVATIONS, DiTBlock, FinalLayer, TimestepEmbedder,
                                          constrain, dense, partitioned)
from diffcamera_jax.models.pixel_path import (PixelHead, PixelStem, camera_maps, disparity_at,
                                              num_levels)
from diffcamera_jax.models.restorer import Restorer
from diffcamera_jax.models.rope import grid_positions, rope_tables
from diffcamera_jax.models.sizes import ModelSize
from diffcamera_jax.optics.focus import focus_disparity, signed_coc

DEPTH_MODES = ("fold", "tokens")
REMAT_POLICIES = {
    "full": None,  # save nothing; recompute the block in the backward pass
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def patchify(x: jnp.ndarray, patch: int) -> jnp.ndarray:
  """`[B, H, W, C] -> [B, (H/p)*(W/p), p*p*C]`, patches in raster order."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(tokens: jnp.ndarray, grid_hw: tuple[int, int], patch: int) -> jnp.ndarray:
  """Inverse of `patchify`: `[B, gh*gw, p*p*C] -> [B, gh*p, gw*p, C]`."""
  (b, _, d), (gh, gw) = tokens.shape, grid_hw
  c = d // (patch * patch)
  x = tokens.reshape(b, gh, gw, patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, gh * patch, gw * patch, c)


class DiT(nn.Module):
  """`apply(x_t, t, reference, disparity, camera, depth_keep, train, prior) -> output` on latents.

  The output is the clean-latent estimate x0_hat (`config.objective.prediction="x0"`, the
  default) or the velocity v_hat ("velocity"); `objective.Objective.velocity` reads it.

  x_t, reference: `[B, h, w, C]` latents; t: `[B]` in [0, 1]; disparity: `[B, H, W]` at image
  resolution (an integer multiple of the latent grid) or None; camera: `[B, F]` from
  `camera_features`; depth_keep: `[B]` bool, False replaces the depth by a learned null embedding;
  prior: `[B, h, w, C]` latent of the physics prior (`diffcamera_jax.objective.prior`), projected and added
  to the reference tokens when `use_prior` (None there means the prior is the reference itself).
  """
  size: ModelSize
  patch_size: int = 2
  latent_channels: int = 3
  depth_mode: str = "fold"
  camera_frequencies: int = 8
  rope_theta: float = 10_000.0
  mlp_activation: str = "relu2"
  dropout_rate: float = 0.0
  remat: str = "none"
  scan_layers: bool = False
  attention_chunk: int = 0  # query block size of attention (bounds score memory; 0 = off)
  use_prior: bool = False  # take the physics prior as a further input (objective.prior != "none")
  # Channels of a convolutional stem and head at the latent grid's resolution, one per stride
  # 1, 2, ..., patch_size / 2 (`models/pixel_path.py`); () = tokens alone.
  pixel_widths: tuple[int, ...] = ()
  # Also condition every block's adaLN on the camera (its Fourier features through an MLP, added
  # to the timestep's vector), as DiT conditions on a class, beside the in-context camera tokens.
  camera_adaln: bool = False
  # Give the pixel stem the requested camera's signed circle of confusion K (D - d_f) at every
  # pixel (`optics.signed_coc` with the focus point's disparity, in latent pixels / patch_size;
  # zero where depth is dropped): the blur each pixel is to get, as the learned baseline sees it.
  defocus_map: bool = False
  # The restoration stage (`models/restorer.py`, objective.prior="restore"), run by `restore`;
  # None: no restoration stage.
  restorer: Restorer | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def sequence_length(self, grid_tokens: int) -> int:
    """Tokens per example when the latent grid has `grid_tokens` patches: camera tokens plus
    target, reference (and depth, unless folded into the reference's) streams."""
    streams = 2 if self.depth_mode == "fold" else 3
    return self.size.num_camera_tokens + streams * grid_tokens

  @property
  def attention_heads(self) -> int:
    return self.size.num_heads

  def restore(self, image: jnp.ndarray, disparity: jnp.ndarray | None,
              depth_keep: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """The restoration stage on images: (sharp estimate `[B, H, W, 3]`, disparity estimate
    `[B, H, W]`, blur map `[B, H, W]`); see `Restorer`. Call as `model.apply(variables, ..., method="restore")`."""
    if self.restorer is None:
      raise ValueError("DiT.restore: the model was built without a restoration stage")
    return self.restorer(image, disparity, depth_keep)

  def _check(self, x_t, t, reference, disparity, camera, depth_keep, prior):
    if self.depth_mode not in DEPTH_MODES:
      raise ValueError(f"DiT: depth_mode must be one of {DEPTH_MODES}, got {self.depth_mode!r}")
    if self.mlp_activation not in MLP_ACTIVATIONS:
      raise ValueError(f"DiT: mlp_activation must be one of {sorted(MLP_ACTIVATIONS)}, "
                       f"got {self.mlp_activation!r}")
    if self.remat != "none" and self.remat not in REMAT_POLICIES:
      raise ValueError(f"DiT: remat must be 'none' or one of {sorted(REMAT_POLICIES)}, "
                       f"got {self.remat!r}")
    if x_t.ndim != 4 or x_t.shape[-1] != self.latent_channels:
      raise ValueError(f"DiT: x_t must be [B, h, w, {self.latent_channels}], got {x_t.shape}")
    b, h, w, _ = x_t.shape
    if h % self.patch_size or w % self.patch_size:
      raise ValueError(f"DiT: latent size {h}x{w} of x_t is not divisible by patch_size "
                       f"{self.patch_size}")
    if reference.shape != x_t.shape:
      raise ValueError(f"DiT: reference must have x_t's shape {x_t.shape}, got {reference.shape}")
    if self.pixel_widths and len(self.pixel_widths) != num_levels(self.patch_size):
      raise ValueError(f"DiT: pixel_widths needs {num_levels(self.patch_size)} entries (one per "
                       f"stride-2 step of patch {self.patch_size}), got {self.pixel_widths}")
    if prior is not None and not self.use_prior:
      raise ValueError("DiT: a prior was given but the model was built with use_prior=False")
    if prior is not None and prior.shape != x_t.shape:
      raise ValueError(f"DiT: prior must have x_t's shape {x_t.shape}, got {prior.shape}")
    if t.shape != (b,):
      raise ValueError(f"DiT: t must be [{b}], got {t.shape}")
    if camera.ndim != 2 or camera.shape[0] != b:
      raise ValueError(f"DiT: camera must be [{b}, F], got {camera.shape}")
    if depth_keep.shape != (b,):
      raise ValueError(f"DiT: depth_keep must be [{b}], got {depth_keep.shape}")
    if disparity is not None:
      if (disparity.ndim != 3 or disparity.shape[0] != b or disparity.shape[1] % h
          or disparity.shape[2] % w or disparity.shape[1] // h != disparity.shape[2] // w):
        raise ValueError(f"DiT: disparity must be [{b}, H, W] with H/h = W/w an integer for "
                         f"latents {h}x{w}, got {disparity.shape}")

  def _depth_tokens(self, disparity, depth_keep, latent_hw, batch, kw) -> jnp.ndarray:
    """Depth tokens `[B, N, width]`: projected disparity patches, or the null embedding."""
    if disparity is None:  # no depth: every example takes the null embedding
      disparity = jnp.zeros((batch, *latent_hw), jnp.float32)
      depth_keep = jnp.zeros((batch,), bool)
    factor = disparity.shape[1] // latent_hw[0]
    patches = patchify(2.0 * disparity[..., None] - 1.0, self.patch_size * factor)
    tokens = dense(self.size.width, ("channels", "embed"), ("embed",), name="depth_embed",
                   **kw)(patches)
    null = self.param("null_depth", partitioned(nn.initializers.normal(0.02), ("embed",)),
                      (self.size.width,), self.param_dtype)
    return jnp.where(depth_keep[:, None, None], tokens, null.astype(tokens.dtype))

  def _blocks(self, x, c, cos, sin, train: bool) -> jnp.ndarray:
    block = DiTBlock
    if self.remat != "none":
      block = nn.remat(DiTBlock, policy=REMAT_POLICIES[self.remat],
                       prevent_cse=not self.scan_layers)
    kw = dict(size=self.size, mlp_activation=self.mlp_activation,
              dropout_rate=self.dropout_rate, deterministic=not train,
              attention_chunk=self.attention_chunk, dtype=self.dtype, param_dtype=self.param_dtype)
    if self.scan_layers:
      scanned = nn.scan(block, variable_axes={"params": 0},
                        split_rngs={"params": True, "dropout": True},
                        in_axes=(nn.broadcast, nn.broadcast, nn.broadcast),
                        length=self.size.depth, metadata_params={nn.PARTITION_NAME: "layers"})
      x, _ = scanned(name="blocks", **kw)(x, c, cos, sin)
      return x
    for i in range(self.size.depth):
      x, _ = block(name=f"block_{i}", **kw)(x, c, cos, sin)
    return x

  @nn.compact
  def __call__(self, x_t: jnp.ndarray, t: jnp.ndarray, reference: jnp.ndarray,
               disparity: jnp.ndarray | None, camera: jnp.ndarray, depth_keep: jnp.ndarray,
               train: bool = False, prior: jnp.ndarray | None = None) -> jnp.ndarray:
    self._check(x_t, t, reference, disparity, camera, depth_keep, prior)
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    b, h, w, _ = x_t.shape
    if self.restorer is not None and self.is_initializing():  # create the stage's params too
      image_hw = (h, w) if disparity is None else disparity.shape[1:3]
      self.restore(jnp.zeros((b, *image_hw, 3), jnp.float32), disparity, depth_keep)
    grid_hw = (h // self.patch_size, w // self.patch_size)
    n = grid_hw[0] * grid_hw[1]
    width = self.size.width

    embed = lambda x, name: dense(width, ("channels", "embed"), ("embed",), name=name, **kw)(
        patchify(x, self.patch_size))
    target = embed(x_t, "target_embed")
    reference_tokens = embed(reference, "reference_embed")
    if self.use_prior:
      prior = reference if prior is None else prior
      reference_tokens = reference_tokens + embed(prior, "prior_embed")
    depth = self._depth_tokens(disparity, depth_keep, (h, w), b, kw)
    c = TimestepEmbedder(width, name="t_embed", **kw)(t)
    if self.camera_adaln:
      c = c + CameraEmbedder(1, width, self.camera_frequencies, name="camera_adaln",
                             **kw)(camera)[:, 0].astype(c.dtype)
    skips = None
    if self.pixel_widths:
      stem_tokens, skips = PixelStem(self.pixel_widths, width, name="pixel_stem", **kw)(
          self._pixel_inputs(x_t, reference, prior, disparity, depth_keep, camera), c)
      target = target + stem_tokens
    if self.depth_mode == "fold":
      streams = [reference_tokens + depth, target]
    else:
      streams = [depth, reference_tokens, target]
    stream_embed = self.param("stream_embed",
                              partitioned(nn.initializers.normal(0.02), (None, "embed")),
                              (len(streams), width), self.param_dtype).astype(target.dtype)
    streams = [s + e for s, e in zip(streams, stream_embed)]
    camera_tokens = CameraEmbedder(self.size.num_camera_tokens, width, self.camera_frequencies,
                                   name="camera_embed", **kw)(camera)

    grid = grid_positions(*grid_hw)
    x = jnp.concatenate([camera_tokens.astype(target.dtype)] + streams, axis=1)
    positions = jnp.concatenate(
        [jnp.zeros((self.size.num_camera_tokens, 2), jnp.float32)] + [grid] * len(streams))
    cos, sin = rope_tables(positions, self.size.head_dim, self.rope_theta)
    x = constrain(x, ("batch", "length", "embed"))

    x = self._blocks(x, c, cos, sin, train)
    out = FinalLayer(self.patch_size ** 2 * self.latent_channels, name="final", **kw)(x[:, -n:], c)
    out = unpatchify(out, grid_hw, self.patch_size)
    if skips is not None:
      out = out + PixelHead(self.pixel_widths, self.latent_channels, name="pixel_head", **kw)(
          x[:, -n:], grid_hw, skips, c)
    return out.astype(jnp.float32)

  def _pixel_inputs(self, x_t, reference, prior, disparity, depth_keep, camera) -> jnp.ndarray:
    """The stem's per-pixel input: noisy target, reference, prior (when used), disparity at the
    latent grid on [-1, 1] (zero where dropped or absent), a flag saying it is present, with
    `defocus_map` the signed circle of confusion, and the camera as maps
    (`pixel_path.camera_maps`)."""
    b, h, w, _ = x_t.shape
    if disparity is None:
      disparity, depth_keep = jnp.zeros((b, h, w), jnp.float32), jnp.zeros((b,), bool)
    keep = depth_keep.astype(jnp.float32)[:, None, None]
    channels = [(2.0 * disparity_at(disparity, (h, w)) - 1.0) * keep,
                jnp.broadcast_to(keep, (b, h, w))]
    if self.defocus_map:
      image_hw = disparity.shape[1:]
      blur = camera[:, 2] * max(image_hw)  # camera_features: K / max(H, W)
      coc = signed_coc(disparity, focus_disparity(disparity, camera[:, :2]), blur)
      channels.append(disparity_at(coc, (h, w)) * (h / image_hw[0]) / self.patch_size * keep)
    depth = jnp.stack(channels, axis=-1)
    parts = [x_t, reference, *([prior] if self.use_prior else []), depth,
             camera_maps(camera, (h, w))]
    return jnp.concatenate([p.astype(self.dtype) for p in parts], axis=-1)
