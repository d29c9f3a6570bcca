"""Image-quality and depth-of-field metrics for refocusing (pure JAX; images `[..., H, W, 3]` in [0, 1]).

- `psnr`, `ssim`: fidelity to ground truth (dm-pix's implementations; SSIM with the usual 11x11
  Gaussian window, sigma 1.5).
- `laplacian_variance`, `lvcorr`: does the blur *grow with the requested blur level*? Over a blur
  sweep of one scene (same focus, blur levels K_1..K_n), sharpness is measured as the variance of
  the Laplacian of luma. LVCorr is the rank (Spearman) correlation between K and -(Laplacian
  variance): +1 when sharpness falls with every step up in K, about 0 when K is ignored, -1 when
  the blur *shrinks* as K rises. Ranks measure the monotone trend alone, so the exact renderer
  scores ~1 (0.998 on the built-in benchmark; the light-field benchmark of arXiv 2512.16923 gives
  the classical BokehMe renderer 0.99). `method="pearson_log"` is the linear correlation between K
  and -log(Laplacian variance), which also rewards a sweep whose log-sharpness is linear in K: the
  exact renderer scores only 0.94 on it, because sharpness falls fastest at the first blur steps.
- `relative_sharpness`, `focus_accuracy`: is the sharpest region at the requested depth? Squared
  Laplacian energy of the output is divided by that of the all-in-focus reference (so texture-poor
  depths are not penalised) over the pixels near the focal plane and over those far from it; the
  focus is hit when the near group is the sharper one. (Measured on exact renders of the benchmark
  scenes at 64^2 and 128^2 this scores 1.0, while a render focused elsewhere and the unchanged input
  score 0; an argmax over disparity bins scored only 0.56-0.94 on the same exact renders, because
  at small blur neighbouring bins are nearly as sharp as the focal one.)
- `stack_blend`, `stacking_consistency`: refocused outputs at two focal planes, blended by the
  nearer-plane mask, must match the multi-focus image (the paper's stacking constraint) -> PSNR.
"""
from __future__ import annotations

import dm_pix
import jax
import jax.numpy as jnp

from diffcamera_jax.objective.losses import stack_blend
from diffcamera_jax.optics.sharpness import laplacian

def _check_pair(a: jax.Array, b: jax.Array, names: tuple[str, str] = ("a", "b")) -> None:
  if a.shape != b.shape:
    raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {a.shape} vs {b.shape}")
  if a.ndim < 3 or a.shape[-1] != 3:
    raise ValueError(f"{names[0]}: expected [..., H, W, 3] images, got shape {a.shape}")


def mse(a: jax.Array, b: jax.Array) -> jax.Array:
  """Mean squared error over the last three axes: `[..., H, W, 3]` x 2 -> `[...]`."""
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  _check_pair(a, b)
  return jnp.mean((a - b) ** 2, axis=(-3, -2, -1))


def psnr(a: jax.Array, b: jax.Array) -> jax.Array:
  """PSNR in dB for images in [0, 1] (peak 1): `-10 log10(MSE)`; identical images give +inf."""
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  _check_pair(a, b)
  return dm_pix.psnr(a, b)


def ssim(a: jax.Array, b: jax.Array) -> jax.Array:
  """Mean SSIM (Wang et al. 2004; 11x11 Gaussian window, sigma 1.5) over the last three axes."""
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  _check_pair(a, b)
  if min(a.shape[-3:-1]) < 11:
    raise ValueError(f"ssim needs images of at least 11x11 pixels, got {a.shape[-3:-1]}")
  return dm_pix.ssim(a, b, max_val=1.0)


def laplacian_variance(image: jax.Array) -> jax.Array:
  """Variance of the luma Laplacian (a standard no-reference sharpness measure): `[...]`."""
  return jnp.var(laplacian(image), axis=(-2, -1))


def pearson(x: jax.Array, y: jax.Array) -> jax.Array:
  """Pearson correlation of two 1-D series along the last axis; 0 where either is constant."""
  x = jnp.asarray(x, jnp.float32)
  y = jnp.asarray(y, jnp.float32)
  xc = x - x.mean(-1, keepdims=True)
  yc = y - y.mean(-1, keepdims=True)
  def varies(v):  # a spread within float32 rounding of the values counts as constant
    spread = v.max(-1) - v.min(-1)
    return spread > 1e-6 * jnp.maximum(jnp.abs(v).max(-1), 1e-30)
  ok = varies(x) & varies(y)
  denom = jnp.sqrt((xc ** 2).sum(-1) * (yc ** 2).sum(-1))
  return jnp.where(ok, (xc * yc).sum(-1) / jnp.where(ok, denom, 1.0), 0.0)


def ranks(x: jax.Array) -> jax.Array:
  """1-based ranks along the last axis, ties sharing their average rank (as Spearman's rho needs)."""
  x = jnp.asarray(x, jnp.float32)
  less = (x[..., None, :] < x[..., :, None]).sum(-1)
  equal = (x[..., None, :] == x[..., :, None]).sum(-1)
  return less + (equal + 1) / 2.0


def lvcorr(blur_levels: jax.Array, sweep: jax.Array, *, method: str = "spearman",
           eps: float = 1e-10) -> jax.Array:
  """LVCorr of one blur sweep; +1 = sharpness falls as K rises (see the module docstring).

  `blur_levels` `[N]` (N >= 2, not all equal), `sweep` `[..., N, H, W, 3]` (frame i rendered or
  generated at blur K_i). `method`: "spearman" (rank correlation of K and -LV) or "pearson_log"
  (Pearson of K and -log(LV + eps)). Returns `[...]`; 0 when the sharpness does not vary at all.
  """
  if method not in ("spearman", "pearson_log"):
    raise ValueError(f"method must be 'spearman' or 'pearson_log', got {method!r}")
  k = jnp.asarray(blur_levels, jnp.float32)
  sweep = jnp.asarray(sweep, jnp.float32)
  if k.ndim != 1 or k.shape[0] < 2:
    raise ValueError(f"blur_levels: expected a 1-D series of >= 2 levels, got shape {k.shape}")
  if sweep.ndim < 4 or sweep.shape[-4] != k.shape[0]:
    raise ValueError(f"sweep: expected [..., {k.shape[0]}, H, W, 3] to match blur_levels, "
                     f"got shape {sweep.shape}")
  lv = laplacian_variance(sweep)
  k = jnp.broadcast_to(k, lv.shape)
  if method == "pearson_log":
    return pearson(k, -jnp.log(lv + eps))
  constant = ~(lv.max(-1) - lv.min(-1) > 1e-6 * jnp.maximum(jnp.abs(lv).max(-1), 1e-30))
  return jnp.where(constant, 0.0, pearson(ranks(k), ranks(-lv)))


def relative_sharpness(image: jax.Array, reference: jax.Array, mask: jax.Array) -> jax.Array:
  """Squared luma Laplacian of `image` over that of `reference`, summed where `mask` `[H, W]` is set.

  1 = as sharp as the reference there, -> 0 = blurred flat; NaN where the mask (or the reference's
  texture under it) is empty. Dividing by the reference cancels how textured each region is.
  """
  m = jnp.asarray(mask, jnp.float32)[..., 1:-1, 1:-1]
  num = (laplacian(image) ** 2 * m).sum((-2, -1))
  den = (laplacian(reference) ** 2 * m).sum((-2, -1))
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), jnp.nan)


def focus_accuracy(image: jax.Array, reference: jax.Array, disparity: jax.Array,
                   focus_disparity: jax.Array, *, near: float = 0.05,
                   far: float = 0.25) -> jax.Array:
  """1.0 when the region at the requested depth is the sharp one, else 0.0 (NaN: undefined).

  `image` and `reference` (the all-in-focus image of the same scene) `[H, W, 3]`, `disparity`
  `[H, W]`, `focus_disparity` scalar. The relative sharpness of pixels within `near` (disparity) of
  the focal plane must exceed that of pixels more than `far` from it. An image that ignores the
  request (e.g. the input returned unchanged) ties and scores 0. NaN when the scene has no pixels
  in one of the two groups (e.g. a flat wall), so callers average with `nanmean`.
  """
  image, reference = jnp.asarray(image, jnp.float32), jnp.asarray(reference, jnp.float32)
  _check_pair(image, reference, ("image", "reference"))
  if image.ndim != 3 or jnp.shape(disparity) != image.shape[:2]:
    raise ValueError(f"focus_accuracy takes one image [H, W, 3] and disparity [H, W], got "
                     f"{image.shape} and {jnp.shape(disparity)}")
  if not 0 < near < far:
    raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
  distance = jnp.abs(jnp.asarray(disparity, jnp.float32) - focus_disparity)
  in_focus = relative_sharpness(image, reference, distance <= near)
  off_focus = relative_sharpness(image, reference, distance > far)
  defined = jnp.isfinite(in_focus) & jnp.isfinite(off_focus)
  return jnp.where(defined, (in_focus > off_focus).astype(jnp.float32), jnp.nan)


def stacking_consistency(out_1: jax.Array, out_2: jax.Array, mask: jax.Array,
                         multifocus: jax.Array) -> jax.Array:
  """PSNR (dB) between the mask-blend (`losses.stack_blend`; mask `[..., H, W]`, 1 where plane 1
  is nearer) of two refocused outputs and the multi-focus image."""
  out_1, out_2 = jnp.asarray(out_1, jnp.float32), jnp.asarray(out_2, jnp.float32)
  _check_pair(out_1, out_2, ("out_1", "out_2"))
  return psnr(stack_blend(out_1, out_2, jnp.asarray(mask, jnp.float32)), multifocus)
