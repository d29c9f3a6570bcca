"""Loss terms of the refocusing objective (docs/model.md, "Objective").

`flow_loss`: mean squared error between predicted and true velocity (or clean latent), or the
per-example log error (`log_error`).
`stacking_loss`: two denoised estimates of one scene focused at two depths, blended by the depth
mask, must equal the multi-focus image (all in the model's latent space):
`|| M_l * x0_hat_1 + (1 - M_l) * x0_hat_2 - enc(F) ||^2`, `M_l` the mask average-pooled to the
latent grid.
"""
import jax.numpy as jnp


def flow_loss(v_hat: jnp.ndarray, v: jnp.ndarray, mse_floor: float = 0.0,
              typical_mse: float = 4e-3) -> jnp.ndarray:
  """Mean of `(v_hat - v)^2` over all elements, or with `mse_floor` > 0 the per-example log
  error `log_error(...)` of the same squared errors."""
  if v_hat.shape != v.shape:
    raise ValueError(f"flow_loss: v_hat {v_hat.shape} and v {v.shape} differ in shape")
  sq = jnp.square(v_hat.astype(jnp.float32) - v.astype(jnp.float32))
  if mse_floor > 0:
    return log_error(jnp.mean(sq, axis=tuple(range(1, sq.ndim))), mse_floor, typical_mse)
  return jnp.mean(sq)


def log_error(per_example_mse: jnp.ndarray, mse_floor: float, typical_mse: float) -> jnp.ndarray:
  """`typical_mse · mean_i log(MSE_i + mse_floor)`: the mean per-example PSNR (up to sign and
  scale), the quantity evaluation averages per scene.

  An example with a tiny error (a nearly sharp photo) is weighed by its own scale rather than
  drowned by examples with large ones; at `MSE_i = typical_mse` the gradient equals plain MSE's,
  and the floor bounds the weight of an exact one.
  """
  return typical_mse * jnp.mean(jnp.log(per_example_mse + mse_floor))


def pool_mask(mask: jnp.ndarray, latent_hw: tuple[int, int]) -> jnp.ndarray:
  """Average-pools an image-resolution mask `[B, H, W]` to the latent grid: `[B, h, w]`."""
  b, hh, ww = mask.shape
  h, w = latent_hw
  if hh % h or ww % w or hh // h != ww // w:
    raise ValueError(f"pool_mask: mask size {hh}x{ww} is not an integer multiple of the latent "
                     f"grid {h}x{w}")
  f = hh // h
  return mask.astype(jnp.float32).reshape(b, h, f, w, f).mean(axis=(2, 4))


def stack_blend(first: jnp.ndarray, second: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
  """`M * first + (1 - M) * second`: the multi-focus image two estimates `[..., H, W, C]` imply,
  `mask` `[..., H, W]` being 1 where the first one's focal plane is the nearer (images or
  latents; the one definition of the blend in training and evaluation)."""
  if first.shape != second.shape:
    raise ValueError(f"stack_blend: first {first.shape} and second {second.shape} differ in shape")
  if mask.shape != first.shape[:-1]:
    raise ValueError(f"stack_blend: mask must have shape {first.shape[:-1]}, got {mask.shape}")
  m = mask[..., None]
  return m * first + (1.0 - m) * second


def stacking_loss(x0_first: jnp.ndarray, x0_second: jnp.ndarray, mask: jnp.ndarray,
                  multifocus_latent: jnp.ndarray) -> jnp.ndarray:
  """Mean squared error between the mask blend of two denoised latents and the multi-focus latent.

  x0_first, x0_second, multifocus_latent: `[B, h, w, C]`; mask: `[B, H, W]` at image resolution,
  1 where the first focal plane is the nearer one in disparity.
  """
  if x0_first.shape != x0_second.shape or x0_first.shape != multifocus_latent.shape:
    raise ValueError(f"stacking_loss: x0_first {x0_first.shape}, x0_second {x0_second.shape} and "
                     f"multifocus_latent {multifocus_latent.shape} must have one shape")
  if mask.ndim != 3 or mask.shape[0] != x0_first.shape[0]:
    raise ValueError(f"stacking_loss: mask must be [B, H, W] with B = {x0_first.shape[0]}, got "
                     f"{mask.shape}")
  blend = stack_blend(x0_first, x0_second, pool_mask(mask, x0_first.shape[1:3]))
  return jnp.mean(jnp.square(blend.astype(jnp.float32) - multifocus_latent.astype(jnp.float32)))
