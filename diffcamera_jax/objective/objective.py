"""The refocusing objective: one object, built from the config, that the train step and the sampler
both read (docs/design.md, "Objective").

It fixes, in one place:
- the flow's data end: `enc(target)`, or with `residual` the change `enc(target) - anchor`, the
  anchor being the reference, or with a physics `prior` the prior image the network also sees
  (`prior.py`: "render" re-renders the reference with the given depth, "restore" renders the
  restoration stage's sharp estimate with the given or estimated depth);
- what the network outputs: the velocity, or with `prediction="x0"` the clean latent
  (`v = (x_t - x0_hat) / t`);
- the loss terms: the flow term (squared or per-example log error), the stacking term on the pair
  of targets and, with the restoration stage, its image, disparity and blur-map terms;
- the timestep shift for a latent size, and the final latent the sampler decodes.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from diffcamera_jax import optics
from diffcamera_jax.models.camera import camera_features
from diffcamera_jax.models.latents import LatentCodec
from diffcamera_jax.objective import depth_errors, flow, prior
from diffcamera_jax.objective.example import Example
from diffcamera_jax.objective.losses import flow_loss, log_error, stacking_loss

TYPICAL_MSE = 1e-3  # a blurred training reference's squared error, [0, 1] scale


def pair(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """`[B, ...]`, `[B, ...]` -> `[2B, ...]` with each example's pair adjacent."""
  return jnp.stack([a, b], axis=1).reshape(-1, *a.shape[1:])


def unpair(x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Inverse of `pair`."""
  x = x.reshape(-1, 2, *x.shape[1:])
  return x[:, 0], x[:, 1]


def restoration_losses(sharp: jnp.ndarray, disparity_hat: jnp.ndarray, blur_hat: jnp.ndarray,
                       image: jnp.ndarray, disparity: jnp.ndarray, source_coc: jnp.ndarray,
                       mse_floor: float = 0.0, depth_error: str = "abs") -> dict[str, jnp.ndarray]:
  """The restoration stage's terms: the error of the sharp estimate to the all-in-focus image,
  the mean error of the disparity estimate (absolute, or squared with `depth_error="squared"`)
  and the mean absolute error of the blur map (CoC radius, pixels) of the reference.

  A stage that corrects given maps (`refine_depth`) is scored by `refine_loss`, the squared
  error of its corrected maps: trained on a mix of exact and wrong maps, an absolute error's
  optimum is the median correction, which is 0 wherever most maps are right.

  The image term is `4 · MSE` on the [-1, 1] scale of the pixel latents (so it weighs like the
  flow term) when `mse_floor` is 0. With `mse_floor` > 0 it is the per-example log error
  `4 · TYPICAL_MSE · mean_i log(MSE_i + mse_floor)`: each example's PSNR, the quantity evaluation
  averages per scene, so a nearly sharp photo (MSE ~1e-5) is weighed by its own scale rather than
  drowned by blurred ones (MSE ~1e-3, whose gradients keep about their plain-MSE size); the floor
  bounds the weight of an exactly sharp one.
  """
  per_example = jnp.mean(jnp.square(sharp - image), axis=tuple(range(1, sharp.ndim)))
  if mse_floor > 0:
    image_term = 4.0 * log_error(per_example, mse_floor, TYPICAL_MSE)
  else:
    image_term = 4.0 * jnp.mean(per_example)
  return {"restore_loss": image_term,
          "depth_loss": jnp.mean((jnp.square if depth_error == "squared" else jnp.abs)(
              disparity_hat - disparity)),
          "blur_map_loss": jnp.mean(jnp.abs(blur_hat - source_coc))}


@dataclasses.dataclass(frozen=True)
class Objective:
  """What `config.objective` (with the data's camera ranges) asks of training and sampling."""
  prior: str = "none"  # "none" | "render" | "restore" (prior.PRIORS)
  residual: bool = False
  prediction: str = "velocity"  # "velocity" | "x0"
  stack_weight: float = 1.0
  p_depth_drop: float = 0.0
  p_depth_corrupt: float = 0.0
  refine_depth: bool = False
  timestep_mean: float = 0.0
  timestep_std: float = 1.0
  shift_base: float = 0.5
  shift_max: float = 1.15
  flow_mse_floor: float = 0.0
  restore_weight: float = 1.0
  restore_mse_floor: float = 0.0
  depth_weight: float = 1.0
  depth_error: str = "abs"
  refine_weight: float = 10.0
  blur_map_weight: float = 0.1
  sample_steps: int = 1
  gamma: float = 2.2
  blur_range_high: float = 40.0
  blur_reference_size: int = 512

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> "Objective":
    """The objective of a training config (`config.objective`, `config.data`)."""
    o, d = config.objective, config.data
    return cls(
        prior=o.prior, residual=bool(o.residual), prediction=o.prediction,
        stack_weight=o.stack_weight,
        p_depth_drop=o.p_depth_drop, p_depth_corrupt=float(o.p_depth_corrupt),
        refine_depth=bool(config.model.restorer.refine_depth), timestep_mean=o.timestep_mean,
        timestep_std=o.timestep_std, shift_base=o.shift_base, shift_max=o.shift_max,
        flow_mse_floor=float(o.flow_mse_floor), restore_weight=float(o.restore_weight),
        restore_mse_floor=float(o.restore_mse_floor), depth_weight=float(o.depth_weight),
        depth_error=str(o.depth_error), refine_weight=float(o.refine_weight),
        blur_map_weight=float(o.blur_map_weight),
        sample_steps=int(o.sample_steps), gamma=float(d.gamma),
        blur_range_high=float(d.blur_range[1]), blur_reference_size=int(d.blur_reference_size))

  # ------------------------------------------------------------------ shared by train and sample

  @property
  def x0_prediction(self) -> bool:
    return self.prediction == "x0"

  def prior_max_radius(self, image_hw: tuple[int, int]) -> float:
    """The renderer's radius bound for the prior at this image size (`prior.prior_max_radius`)."""
    return prior.prior_max_radius(tuple(image_hw), self.blur_range_high, self.blur_reference_size)

  def timestep_shift(self, latent_hw: tuple[int, int], patch_size: int) -> float:
    """The resolution shift `mu` for a target latent of this size."""
    num_tokens = (latent_hw[0] // patch_size) * (latent_hw[1] // patch_size)
    return flow.resolution_shift(num_tokens, self.shift_base, self.shift_max)

  def prior_image(self, image: jax.Array, disparity: jax.Array | None, camera: jax.Array,
                  keep: jax.Array, disparity_hat: jax.Array | None = None) -> jax.Array:
    """The prior image towards `camera`: "render" renders the reference `image` with
    `disparity` where `keep` (the reference elsewhere); "restore" renders the restoration stage's
    sharp estimate `image` with `disparity` where `keep`, its estimate `disparity_hat` elsewhere
    (everywhere when the stage refines the given map, `refine_depth`)."""
    radius = self.prior_max_radius(image.shape[1:3])
    if self.prior == "restore":
      if self.refine_depth:
        disparity = None
      return prior.restored_prior(image, disparity, disparity_hat, camera, keep,
                                  gamma=self.gamma, max_radius=radius)
    return prior.render_prior(image, disparity, camera, keep, gamma=self.gamma,
                              max_radius=radius)

  def velocity(self, x_t: jax.Array, t: jax.Array, out: jax.Array) -> jax.Array:
    """The velocity of a network output at `(x_t, t)`; the Euler grid never evaluates t = 0."""
    if self.x0_prediction:
      return (x_t - out) / t[:, None, None, None]
    return out

  def final_latent(self, x0: jax.Array, anchor: jax.Array) -> jax.Array:
    """The latent to decode from the flow's data end (the anchor added back when residual)."""
    return x0 + anchor if self.residual else x0

  # ------------------------------------------------------------------ training

  def losses(self, apply_fn: Callable, params: Any, codec: LatentCodec, example: Example,
             rng: jax.Array, patch_size: int) -> tuple[jnp.ndarray, dict]:
    """`L = L_flow + stack_weight * L_stack (+ restore_weight * (L_restore + L_depth + ...))` on
    one device batch, and the loss terms.

    Both targets of the stacking pair run through the model as a `[2B, ...]` batch (pairs
    adjacent), sharing the timestep, the noise, the reference, the depth and its dropout, so the
    mask blend of their denoised estimates compares like with like. `apply_fn` is the model's
    `apply`; `patch_size` sets the token count for the timestep shift.
    """
    b, h_img, w_img, _ = example.reference.shape
    given = example.disparity  # the map the model is given; the targets use the true one
    if self.p_depth_corrupt > 0:
      rng, rng_corrupt = jax.random.split(rng)
      given, _ = depth_errors.corrupt(rng_corrupt, example.disparity, self.p_depth_corrupt)
    rng_t, rng_noise, rng_drop, rng_dropout = jax.random.split(rng, 4)

    x0 = codec.encode(pair(example.target, example.target_2))
    reference = codec.encode(example.reference)
    multifocus = codec.encode(example.multifocus)
    blades, rotation = example.aperture_blades, example.aperture_rotation
    camera = pair(
        camera_features(example.target_focus, example.target_blur, (h_img, w_img), blades,
                        rotation),
        camera_features(example.target_focus_2, example.target_blur, (h_img, w_img), blades,
                        rotation))
    keep = jax.random.uniform(rng_drop, (b,)) >= self.p_depth_drop
    reference2, disparity2, keep2 = (pair(reference, reference), pair(given, given),
                                     pair(keep, keep))

    extra, restore_terms = {}, {}
    anchor = jnp.zeros_like(x0)
    if self.prior == "restore":  # the restoration stage, once per reference, supervised directly
      if self.refine_depth:
        (sharp, disparity_hat, blur_hat), sown = apply_fn(
            {"params": params}, example.reference, given, keep, method="restore",
            mutable=["intermediates"])
        monocular = sown["intermediates"]["restorer"]["monocular_disparity"][0]
      else:
        sharp, disparity_hat, blur_hat = apply_fn({"params": params}, example.reference, given,
                                                  keep, method="restore")
        monocular = disparity_hat
      source_coc = jnp.abs(optics.signed_coc(
          example.disparity, optics.focus_disparity(example.disparity, example.source_focus),
          example.source_blur))
      restore_terms = restoration_losses(sharp, monocular, blur_hat, example.image,
                                         example.disparity, source_coc,
                                         mse_floor=self.restore_mse_floor,
                                         depth_error=self.depth_error)
      if self.refine_depth:  # the corrected maps, where a map was given
        kept = keep.astype(jnp.float32)[:, None, None]
        restore_terms["refine_loss"] = (
            jnp.sum(kept * jnp.square(disparity_hat - example.disparity))
            / jnp.maximum(jnp.sum(kept) * disparity_hat.shape[1] * disparity_hat.shape[2], 1.0))
      sg = jax.lax.stop_gradient
      prior_image = self.prior_image(pair(sg(sharp), sg(sharp)), disparity2, camera, keep2,
                                     pair(sg(disparity_hat), sg(disparity_hat)))
      extra["prior"] = anchor = codec.encode(prior_image)
    elif self.prior == "render":  # the physics prior: seen by the network and the residual's anchor
      prior_image = self.prior_image(pair(example.reference, example.reference), disparity2,
                                     camera, keep2)
      extra["prior"] = anchor = codec.encode(prior_image)
    elif self.residual:
      anchor = reference2
    if self.residual:
      # The flow generates the change `enc(target) - anchor`; the stacking blend is formed on
      # `x0_hat + anchor`, back in the latent of the images.
      x0 = x0 - anchor

    mu = self.timestep_shift(x0.shape[1:3], patch_size)
    t = flow.sample_timesteps(rng_t, b, mu, self.timestep_mean, self.timestep_std)
    noise = jax.random.normal(rng_noise, reference.shape, jnp.float32)

    t2, noise2 = pair(t, t), pair(noise, noise)
    x_t = flow.interpolate(x0, noise2, t2)
    out = apply_fn({"params": params}, x_t, t2, reference2, disparity2, camera, keep2,
                   train=True, rngs={"dropout": rng_dropout}, **extra)
    if self.x0_prediction:
      # The network outputs x0_hat itself; the loss is on x0, or its per-example log error with
      # the floor given on the [0, 1] image scale (x4 on the [-1, 1] latents).
      x0_hat = out
      l_flow = flow_loss(x0_hat, x0, mse_floor=4.0 * self.flow_mse_floor,
                         typical_mse=4.0 * TYPICAL_MSE)
    else:
      l_flow = flow_loss(out, flow.velocity_target(x0, noise2))
      x0_hat = flow.denoised_estimate(x_t, t2, out)
    x0_first, x0_second = unpair(x0_hat + anchor)
    l_stack = stacking_loss(x0_first, x0_second, example.stack_mask, multifocus)
    loss = l_flow + self.stack_weight * l_stack
    if restore_terms:
      loss = loss + self.restore_weight * (
          restore_terms["restore_loss"] + self.depth_weight * restore_terms["depth_loss"]
          + self.blur_map_weight * restore_terms["blur_map_loss"]
          + self.refine_weight * restore_terms.get("refine_loss", 0.0))
    return loss, {"loss": loss, "flow_loss": l_flow, "stack_loss": l_stack, **restore_terms,
                  "t_mean": jnp.mean(t), "depth_keep_rate": jnp.mean(keep.astype(jnp.float32))}
